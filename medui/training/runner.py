"""Where a job's process runs: the one small interface behind `jobs.launch` and `Job.status`.

Two back ends, chosen when a job is launched and recorded in its folder (runner.json), so a job is always
asked about on the back end that ran it:
  - `local` (the default, no extra service): `python -m medui COMMAND FOLDER` as a process of this
    machine in its own session, its pid in the folder's `pid` file (a dead process is a failed job);
  - `ray` (MEDUI_RAY_ADDRESS set): the same command as a Ray Job (`medui.training.ray_jobs`); its state
    comes from Ray's Jobs API, never from a pid (the process runs on another node).
Either way the job's own process writes status.json, log.txt and MedUI's database, so the pages show
the same whichever back end ran it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from medui.errors import RayClusterError
from medui.training import ray_jobs

RUNNER_FILE = "runner.json"
LOCAL, RAY = "local", "ray"
LABELS = {LOCAL: "local", RAY: "on Ray"}
GRACE_VARIABLE = "MEDUI_RAY_CANCEL_GRACE_S"  # seconds a cancelled Ray job has to stop by itself (default 30)
ROOT = Path(__file__).resolve().parents[2]
MISSING_GRACE_S = 60.0  # a submission the cluster does not know is lost only after this long


def backend() -> str:
    """The back end new jobs run on: `ray` when MEDUI_RAY_ADDRESS is set, else `local`."""
    return RAY if ray_jobs.address() else LOCAL


def record(folder: Path) -> dict[str, Any]:
    """The job's runner record ({"backend", ...}); a job from before the record is local."""
    try:
        data = json.loads((Path(folder) / RUNNER_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {"backend": LOCAL}
    return data if isinstance(data, dict) and data.get("backend") in LABELS else {"backend": LOCAL}


def label(folder: Path) -> str:
    """'on Ray' or 'local', for job lists."""
    return LABELS[str(record(folder)["backend"])]


def _save(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / f".{RUNNER_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, folder / RUNNER_FILE)


def training_gpus(params: dict[str, Any]) -> float:
    """GPUs a training job asks Ray for: MEDUI_RAY_GPUS, at least 1 when the job asked for float16
    (mixed_precision "on", which only a GPU runs)."""
    try:
        wanted = float(os.environ.get(ray_jobs.GPUS_VARIABLE, "0") or 0)
    except ValueError:
        wanted = 0.0
    return max(wanted, 1.0 if params.get("mixed_precision") == "on" else 0.0)


def launch(folder: Path, command: str, gpus: float = 0) -> dict[str, Any]:
    """Start `python -m medui COMMAND FOLDER` on the current back end and record where it runs.
    OSError when the folder cannot be written; RayClusterError when the cluster cannot take it."""
    folder = Path(folder)
    if backend() == LOCAL:  # no record: a job without one is local (as every job before the record)
        (folder / RUNNER_FILE).unlink(missing_ok=True)
        return {"backend": LOCAL, "pid": _local(folder, command)}
    (folder / "log.txt").touch()  # the job appends to it on its node; the pages read it here
    rec = ray_jobs.submit(folder.resolve(), command, gpus)
    _save(folder, rec)
    return rec


def _local(folder: Path, command: str) -> int:
    from medui.ai.device import job_env
    from medui.training.jobs import process_start

    env = job_env(os.environ)  # no GPU: no CUDA probing, no 'failed call to cuInit' in the log
    with open(folder / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "medui", command, str(folder)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    # the process writes its own status; never race it
    (folder / "pid").write_text(f"{proc.pid}\n{process_start(proc.pid) or ''}")
    return proc.pid


def _grace() -> float:
    try:
        return float(os.environ.get(GRACE_VARIABLE, "30"))
    except ValueError:
        return 30.0


def ray_state(folder: Path, rec: dict[str, Any], st: dict[str, Any], cancel_since: float | None) -> dict[str, Any]:
    """A Ray job's state, `st` (status.json, not terminal) checked against Ray's: a job Ray ended without
    a final status is failed (or cancelled, when stopped); a cancelled job still running after the grace
    time is stopped on Ray. Unchanged while Ray has it pending or running, or cannot be asked."""
    try:
        ray_status, message = ray_jobs.status(rec)
        if ray_status == "RUNNING" and cancel_since is not None and time.time() - cancel_since >= _grace():
            ray_jobs.stop(rec)  # it did not stop by itself in time
            ray_status, message = ray_jobs.status(rec)
    except RayClusterError:
        return st  # the cluster cannot be asked now: the job's own record stands
    if ray_status in ("PENDING", "RUNNING"):
        return st
    if ray_status == MISSING_STATUS and time.time() - float(rec.get("submitted") or 0) < MISSING_GRACE_S:
        return st  # just submitted: the cluster may not list it yet
    with contextlib.suppress(OSError, json.JSONDecodeError):  # it may have finished while Ray was asked
        now = json.loads((folder / "status.json").read_text())
        if now.get("state") in ("done", "failed", "cancelled"):
            return dict(now)
    sid = rec.get("submission_id")
    if ray_status == "STOPPED":
        return {**st, "state": "cancelled" if cancel_since is not None else "failed",
                "error": "" if cancel_since is not None else f"Ray job {sid} was stopped on the cluster",
                "message": f"stopped on the Ray cluster (Ray job {sid})"}
    if ray_status == MISSING_STATUS:
        why = f"the Ray cluster at {rec.get('address')} no longer knows Ray job {sid} (was it restarted?)"
    elif ray_status == "SUCCEEDED":
        why = f"Ray job {sid} ended without recording a result"
    else:
        tail = ray_jobs.logs_tail(rec)
        why = f"Ray job {sid} failed ({message[:300]})" + (f": {tail}" if tail else "")
    return {**st, "state": "failed", "error": f"the job's process on the Ray cluster ended unexpectedly: {why}; "
                                             "see the log. Registered models are untouched."}


MISSING_STATUS = ray_jobs.MISSING
