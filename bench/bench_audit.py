"""Benchmark: what the audit trail costs. Prints JSON.

    .venv/bin/python bench/bench_audit.py [--rows 10000] [--slices 60]

In a temporary folder (its own SQLite database): the time of one `audit.record` (median and 95th
percentile), of listing the newest 5000 of `--rows` rows filtered by user and action (the Audit page's
query), of the CSV export, and of opening a small series through `open_inputs` with and without its
audit row (the row's share of what a user waits for), interleaved so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ms(f, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--slices", type=int, default=60)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="medui-bench-audit-"))
    os.environ["MEDUI_JOBS"] = str(tmp / "jobs")
    from medui.accounts import audit
    from medui.accounts.actor import Actor
    from medui.io.store import SeriesStore, StoreConfig
    from medui.usecases.reading import open_inputs
    from tests.synth import phantom_volume, write_series

    clara = Actor("clara@hospital.test", "Clara Clinician", frozenset({"clinician"}))
    record = _ms(lambda: audit.record(audit.OPEN_SERIES, clara, "study 1.2.3 series 1.2.3.4", details={"n": 1}),
                 500)
    with audit._engine(audit.db_url()).begin() as conn:  # the rest of the rows in one transaction
        conn.execute(audit.AuditRow.__table__.insert(), [
            {"time": audit.datetime.now(audit.UTC), "subject": f"user{i % 47}", "display_name": f"User {i % 47}",
             "via": "app", "action": audit.ACTIONS[i % len(audit.ACTIONS)], "target": f"study 1.2.{i} series 1.2.{i}.1",
             "outcome": "ok", "details": "{}"} for i in range(args.rows - 500)])
    query = audit.Query(user="user7", actions=(audit.OPEN_SERIES, audit.SCORE), limit=5000)
    listing = _ms(lambda: audit.events(query), 20)
    everything = audit.events(audit.Query(limit=5000))
    export = _ms(lambda: audit.to_csv(everything), 5)

    write_series(tmp / "series", phantom_volume(args.slices, rows=256, cols=256))
    with_row, without = [], []
    for i in range(10):  # a fresh store each time: every open reads the files
        for actor, sink in ((clara, with_row), (None, without)) if i % 2 else ((None, without), (clara, with_row)):
            store = SeriesStore(StoreConfig(2**30, 900, tmp / f"spill{i}"))
            if actor is None:  # the same work without the audit: the store's open, as before this feature
                from medui.io.content import content_key, input_bytes
                from medui.io.loader import load
                from medui.io.sources import Limits

                inputs = [str(tmp / "series")]
                t = time.perf_counter()
                store.open(content_key(inputs), lambda b, inputs=inputs: load(inputs, Limits(budget=b)),
                           2 * input_bytes(inputs))
            else:
                t = time.perf_counter()
                open_inputs([str(tmp / "series")], store, actor=actor)
            sink.append((time.perf_counter() - t) * 1000)
            store.close()
    med = statistics.median
    print(json.dumps({
        "record_ms": {"median": round(med(record), 3), "p95": round(sorted(record)[int(0.95 * len(record))], 3)},
        "rows": len(audit.events(audit.Query(limit=10**9))),
        "list_5000_filtered_ms": round(med(listing), 2), "rows_listed": len(audit.events(query)),
        "csv_5000_rows_ms": round(med(export), 2),
        "open_series_ms": {"with_audit": round(med(with_row), 1), "without_audit": round(med(without), 1),
                           "ratio": round(med(with_row) / med(without), 3), "slices": args.slices},
    }, indent=2))


if __name__ == "__main__":
    main()
