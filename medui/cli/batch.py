"""Command line, Worklist: `batch` (score many studies as a background job), `batch-job` (the job's
process) and `worklist` (the scored studies, highest score first)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from typing import Any

from medui.errors import MedUIError


def _request(args: argparse.Namespace) -> Any:
    from medui.usecases.batch import BatchRequest

    source: str = args.source
    common = {"model": args.model, "limit": args.limit, "send": args.send}
    if source == "pacs" or source.startswith("pacs:"):
        return BatchRequest(node=source.partition(":")[2], modality=args.modality or "", accession=args.accession or "",
                            date_from=date.fromisoformat(args.date_from) if args.date_from else None,
                            date_to=date.fromisoformat(args.date_to) if args.date_to else None, **common)
    return BatchRequest(folder=source, **common)


def _progress(st: dict[str, Any]) -> str:
    eta = f", about {st['eta_s']:.0f} s left" if st.get("eta_s") else ""
    return (f"{st.get('state')}: {st.get('done') or 0} scored, {st.get('failed') or 0} failed of "
            f"{st.get('total') if st.get('total') is not None else '?'}{eta}")


def _cmd_batch(args: argparse.Namespace) -> int:
    from medui.training.jobs import TERMINAL
    from medui.usecases import batch

    try:
        if args.list:
            found = [{"id": j.id, **batch.state_of(j)} for j in batch.list_batch_jobs()]
            print(json.dumps(found, indent=2, default=str) if args.json else
                  "\n".join(f"{j['id']}  {j.get('source', '')}  {_progress(j)}" for j in found) or "no batch jobs")
            return 0
        if args.cancel:
            batch.cancel(batch.find_job(args.cancel))
            print(f"asked job {args.cancel} to stop after its current study")
            return 0
        if args.resume:
            job = batch.resume(batch.find_job(args.resume))
        elif not args.source or not args.model:
            print("error: batch needs SOURCE and --model (or --list, --cancel ID, --resume ID)", file=sys.stderr)
            return 2
        else:
            job = batch.start(_request(args))
    except (MedUIError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print(f"job {job.id} started (log: {job.path / 'log.txt'})", flush=True)
    if args.detach:
        if args.json:
            print(json.dumps({"job": job.id}))
        return 0
    last = ""
    while (st := batch.state_of(job))["state"] not in TERMINAL:
        if not args.json and (line := _progress(st)) != last:
            print(line, flush=True)
            last = line
        time.sleep(0.5)
    rows = batch.worklist([job.id])
    if args.json:
        print(json.dumps({"job": job.id, **{k: st.get(k) for k in ("state", "total", "done", "failed", "message")},
                          "studies": [_row_json(r) for r in rows]}, indent=2, default=str))
    else:
        print(_progress(st))
        _print_rows(rows)
    return 0 if st["state"] == "done" else 1


def _row_json(r: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(r)


def _print_rows(rows: list[Any]) -> None:
    for r in rows:
        score = f"{r.score:.3f}" if r.score is not None else "  -  "
        flag = "FLAG" if r.flagged else "    "
        extra = f"  {r.reason[:120]}" if r.status == "failed" else ""
        print(f"  {flag} {score}  {r.modality:<3} {r.study_date or '-':<8} {r.accession or '-':<12} {r.status:<7} "
              f"{r.study_uid}{extra}")
    print("Decision support only, not a medical device.")


def _cmd_batch_job(args: argparse.Namespace) -> int:
    from medui.usecases.batch_run import run

    return run(args.job_dir)


def _cmd_worklist(args: argparse.Namespace) -> int:
    from medui.usecases import batch

    try:
        rows = batch.worklist(args.job or None, flagged_only=args.flagged, modality=args.modality or "")
    except MedUIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.csv:
        sys.stdout.write(batch.to_csv(rows))
    elif args.json:
        print(json.dumps([_row_json(r) for r in rows], indent=2, default=str))
    else:
        _print_rows(rows)
    return 0


def add_commands(sub: Any) -> None:
    """This module's subcommands on the `python -m medui` parser."""
    b = sub.add_parser("batch", help="score many studies (a server folder/zip or a PACS query) as a background job")
    b.add_argument("source", nargs="?", help="a folder or zip within MEDUI_DATA_ROOTS, or 'pacs[:NODE]'")
    b.add_argument("--model", help="registered model name or id")
    b.add_argument("--limit", type=int, default=200, help="at most this many studies (default 200)")
    b.add_argument("--modality", help="PACS: CR, DX, CT, ...")
    b.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="PACS: studies from this date")
    b.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="PACS: studies until this date")
    b.add_argument("--accession", help="PACS: accession number (wildcards * ?)")
    b.add_argument("--send", action="store_true", help="PACS: send the SR/SEG/SC/PDF of flagged studies back")
    b.add_argument("--detach", action="store_true", help="return once the job has started")
    b.add_argument("--list", action="store_true", help="list batch jobs")
    b.add_argument("--cancel", metavar="JOB", help="stop a running job after its current study")
    b.add_argument("--resume", metavar="JOB", help="start a cancelled or killed job again (skips what is scored)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_batch)
    bj = sub.add_parser("batch-job", help="run a prepared batch job folder (what the Worklist page starts)")
    bj.add_argument("job_dir")
    bj.set_defaults(func=_cmd_batch_job)
    w = sub.add_parser("worklist", help="scored studies, highest score first")
    w.add_argument("--flagged", action="store_true", help="only studies above the model's threshold")
    w.add_argument("--modality")
    w.add_argument("--job", action="append", help="only this job (repeatable)")
    w.add_argument("--csv", action="store_true", help="as CSV (each model's score a column)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=_cmd_worklist)
