"""Benchmark: batch scoring on the local back end against a two-node Ray cluster on this machine (the tests'
cluster, tests/ray_cluster.py: head + one worker, one CPU each). Prints JSON.

    .venv/bin/python bench/bench_ray.py [--n 60] [--size 1024] [--group 0]

The same generated CR studies (bench_batch's) are scored by a real batch job on each back end, started as
the Worklist page starts one (`medui.usecases.batch.start`): locally its own process (decoding the next study
in a thread while the model scores the current one), on Ray a Ray Job whose driver fans the studies out as
Ray tasks (`medui.usecases.batch_ray`). Per back end: `wall_s` (start to 'done', process start, TensorFlow
import and model load included), `per_minute` (studies/min over the wall time) and, from the studies'
`scored_at` in the database, `steady_s_per_study` (first to last result, over n-1) and `steady_per_minute`.
The local job runs before and after the Ray one (`local`, `local_again`: the machine's own noise).
`overhead_per_study` = Ray's steady time per study / the local one's (mean of both runs) - 1; target <= 0.15.
`overhead_end_to_end` compares the wall times (cluster start not included; it is `cluster_start_s`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO = "demo-chest-phantom-v1"


def run_job(folder: Path, n: int) -> dict[str, Any]:
    """A batch job over `folder` on the back end MEDUI_RAY_ADDRESS selects, to its end."""
    from medui.db import worklist as store
    from medui.training.jobs import TERMINAL
    from medui.usecases import batch
    from medui.usecases.batch import BatchRequest

    t0 = time.perf_counter()
    job = batch.start(BatchRequest(model=DEMO, folder=str(folder), limit=n))
    while (st := batch.state_of(job))["state"] not in TERMINAL:
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    assert st["state"] == "done", (st, job.log_tail(40))
    times = sorted(r.scored_at.timestamp() for r in store.studies([job.id]) if r.scored_at is not None)
    assert len(times) == n and all(r.writes == 1 for r in store.studies([job.id])), "every study scored once"
    steady = (times[-1] - times[0]) / max(n - 1, 1)
    return {"job": job.id, "backend": st["backend"], "studies": n, "wall_s": round(wall, 2),
            "per_minute": round(60 * n / wall, 1), "steady_s_per_study": round(steady, 4),
            "steady_per_minute": round(60 / steady, 1) if steady else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--group", type=int, default=0, help="studies per Ray task (0: MedUI's default)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medui-bench-ray-"))
    from bench.bench_batch import make_studies
    from tests.conftest import demo_registry
    from tests.ray_cluster import start

    os.environ.update(MEDUI_JOBS=str(work / "jobs"), MEDUI_DATA_ROOTS=str(work), MEDUI_CACHE_DIR=str(work / "cache"),
                      MEDUI_MODELS=str(demo_registry(work / "models")))
    for name in ("MEDUI_DB_URL", "MEDUI_RAY_ADDRESS", "RAY_ADDRESS"):
        os.environ.pop(name, None)
    if args.group:
        os.environ["MEDUI_RAY_GROUP"] = str(args.group)
    out: dict[str, Any] = {"studies": args.n, "size": args.size, "cpus": os.cpu_count()}
    cluster = None
    try:
        make_studies(work, args.n, args.size)
        out["local"] = run_job(work / "studies", args.n)
        t = time.perf_counter()
        cluster = start(work / "ray")
        out["cluster_start_s"] = round(time.perf_counter() - t, 1)
        out["cluster_isolated"] = cluster.isolated
        os.environ["MEDUI_RAY_ADDRESS"] = cluster.dashboard
        out["ray"] = run_job(work / "studies", args.n)
        os.environ.pop("MEDUI_RAY_ADDRESS")
        cluster.stop()
        cluster = None
        out["local_again"] = run_job(work / "studies", args.n)
        local = (out["local"]["steady_s_per_study"] + out["local_again"]["steady_s_per_study"]) / 2
        local_wall = (out["local"]["wall_s"] + out["local_again"]["wall_s"]) / 2
        out["overhead_per_study"] = round(out["ray"]["steady_s_per_study"] / local - 1, 3)
        out["overhead_end_to_end"] = round(out["ray"]["wall_s"] / local_wall - 1, 3)
        out["target_met"] = out["overhead_per_study"] <= 0.15
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
