"""MedUI's jobs as Ray Jobs: submit, ask, stop, through Ray's Jobs API (`ray.job_submission`).

`MEDUI_RAY_ADDRESS` names the cluster, in any form Ray's JobSubmissionClient takes:
  - `http://HEAD:8265` (the head's dashboard, which serves the Jobs API): recommended for the server, a
    plain HTTP call and nothing else;
  - `ray://HEAD:10001` (Ray Client): resolved to the dashboard once per process by a short Ray Client
    connection;
  - `auto` (or `HEAD:6379`, the GCS): the cluster this machine is a node of, resolved through the GCS.
Unset, empty or `local`: jobs run as processes of this machine. Ray's own RAY_ADDRESS (or
RAY_API_SERVER_ADDRESS), when set in the server's environment, wins over it (Ray's rule).

A job's process is the entrypoint `PYTHON -m medui COMMAND FOLDER`, run from MedUI's checkout, its output
appended to FOLDER/log.txt as for a local job: the checkout, the virtualenv (MEDUI_RAY_PYTHON, default this
one), the jobs folder (MEDUI_JOBS) and the registry (MEDUI_MODELS) must be at the same absolute paths on
every node (shared storage for the last two). The MEDUI_* settings travel in the job's runtime_env.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from medui.errors import RayClusterError, SharedStorageError

ADDRESS_VARIABLE = "MEDUI_RAY_ADDRESS"
PYTHON_VARIABLE = "MEDUI_RAY_PYTHON"
GPUS_VARIABLE = "MEDUI_RAY_GPUS"  # GPUs a training job asks Ray for (default 0; 1 when mixed precision is "on")
ROOT = Path(__file__).resolve().parents[2]
NOT_SHARED_EXIT = 3  # the entrypoint's exit code when the job folder is not on the node
_FORM = re.compile(r"(auto|ray://[^\s/]+|https?://[^\s]+|[A-Za-z0-9_.\-\[\]:]+:\d+)")
_KEPT = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")  # besides every MEDUI_* setting


def address() -> str | None:
    """The cluster MEDUI_RAY_ADDRESS names, or None: jobs run on this machine."""
    value = os.environ.get(ADDRESS_VARIABLE, "").strip()
    return None if value.lower() in ("", "local", "none", "off") else value


def _advice(addr: str) -> str:
    return (f"expected the address of a running Ray cluster: its dashboard (http://HEAD:8265), a Ray Client "
            f"address (ray://HEAD:10001) or 'auto' on a node of the cluster. Start the cluster (`ray start --head`), "
            f"correct {ADDRESS_VARIABLE} (now {addr!r}), or unset it to run jobs on this machine")


def check_address(addr: str) -> str:
    """The address when it has one of the forms above; RayClusterError (naming it) otherwise."""
    if not _FORM.fullmatch(addr):
        raise RayClusterError(f"{ADDRESS_VARIABLE}={addr!r} is not a Ray cluster address; " + _advice(addr))
    return addr


@lru_cache(maxsize=8)
def _dashboard(addr: str) -> str:
    """The Jobs API's HTTP address for `addr` (a Ray Client or GCS address is resolved once per process)."""
    if addr.startswith(("http://", "https://")):
        return addr.rstrip("/")
    from ray.dashboard.utils import get_address_for_submission_client

    return str(get_address_for_submission_client(addr))


def client(addr: str | None = None) -> Any:
    """A JobSubmissionClient for the cluster (default: MEDUI_RAY_ADDRESS); RayClusterError, naming the
    address and what to do, when Ray is missing or the cluster does not answer."""
    addr = check_address(addr or address() or "")
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise RayClusterError(f"{ADDRESS_VARIABLE} is set ({addr}) but Ray is not installed here ({exc}); "
                              "install it (`pip install -r requirements.txt`) or unset the variable") from exc
    try:
        return JobSubmissionClient(_dashboard(addr))
    except Exception as exc:  # requests' ConnectionError, Ray's ConnectionError/ValueError/RuntimeError
        _dashboard.cache_clear()
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise RayClusterError(f"the Ray cluster at {addr} cannot be reached ({first}); " + _advice(addr)) from exc


def shared_path(variable: str, default: Path) -> str:
    """The absolute folder a setting names, for every node; SharedStorageError for a relative one."""
    value = os.environ.get(variable, "").strip()
    if value and not os.path.isabs(value):
        example = f"/shared/medui/{variable.split('_')[-1].lower()}"
        raise SharedStorageError(f"{variable}={value!r} is a relative path; a job on the Ray cluster runs on "
                                 "another node, in another folder, so expected an absolute path on storage every "
                                 f"node mounts at the same place (e.g. {example})")
    return str(Path(value or default).resolve())


def job_env(folder: Path, gpus: float = 0) -> dict[str, str]:
    """The job's environment on the cluster: every MEDUI_* setting (not the address), the jobs folder and the
    registry as absolute paths, MedUI's checkout on the Python path. A job (and its tasks) that asked Ray for
    no GPU sees none, as a local job on a machine without one: no CUDA probing, no cuInit noise in its log."""
    from medui.ai.registry import DEFAULT_DIR

    env = {k: v for k, v in os.environ.items() if k.startswith("MEDUI_") or k in _KEPT}
    env.pop(ADDRESS_VARIABLE, None)
    env["MEDUI_JOBS"] = shared_path("MEDUI_JOBS", folder.parent)
    env["MEDUI_MODELS"] = shared_path("MEDUI_MODELS", Path(DEFAULT_DIR))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(PYTHONUNBUFFERED="1", RAY_COLOR_PREFIX="0", RAY_DEDUP_LOGS="0")  # every line of the tasks, at once
    if gpus:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    else:
        env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    return env


def entrypoint(folder: Path, command: str) -> str:
    """The shell line Ray runs: refuse a job folder the node cannot see, else run the command into log.txt."""
    python = os.environ.get(PYTHON_VARIABLE, "").strip() or sys.executable
    f, q = shlex.quote(str(folder)), shlex.quote
    missing = (f"MedUI: the job folder {folder} is not visible on this Ray node; MEDUI_JOBS must be on storage "
               "every node mounts at the same path")
    return (f"cd {q(str(ROOT))} && if [ ! -d {f} ]; then echo {q(missing)} >&2; exit {NOT_SHARED_EXIT}; fi; "
            f"exec {q(python)} -m medui {q(command)} {f} >> {q(str(folder / 'log.txt'))} 2>&1")


def submit(folder: Path, command: str, gpus: float = 0) -> dict[str, Any]:
    """Submit the job in `folder` as a Ray Job; its record for runner.json."""
    if not folder.is_absolute():
        raise SharedStorageError(f"the job folder {folder} is relative; expected an absolute path on shared storage")
    addr = address() or ""
    env = job_env(folder, gpus)
    api = client(addr)
    sid = f"medui-{folder.name}-{uuid.uuid4().hex[:6]}"
    try:
        api.submit_job(entrypoint=entrypoint(folder, command), submission_id=sid, runtime_env={"env_vars": env},
                       entrypoint_num_gpus=gpus or None, metadata={"medui_job": folder.name, "command": command})
    except Exception as exc:
        raise RayClusterError(f"the Ray cluster at {addr} refused job {folder.name} ({str(exc)[:300]}); check the "
                              "cluster's dashboard and that it runs Ray " + _ray_version()) from exc
    return {"backend": "ray", "address": addr, "submission_id": sid, "gpus": gpus, "submitted": time.time()}


def _ray_version() -> str:
    try:
        import ray

        return str(ray.__version__)
    except ImportError:
        return "(not installed here)"


MISSING = "MISSING"


def status(record: dict[str, Any]) -> tuple[str, str]:
    """(Ray's status of the submission: PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED, or MISSING when the
    cluster does not know it, and Ray's message). RayClusterError when the cluster cannot be asked."""
    api = client(str(record.get("address") or ""))
    try:
        info = api.get_job_info(str(record["submission_id"]))
    except RuntimeError as exc:  # Ray answers 404 as RuntimeError "... does not exist"
        if "does not exist" in str(exc) or "404" in str(exc):
            return MISSING, str(exc)[:300]
        raise RayClusterError(f"the Ray cluster at {record.get('address')} could not tell the state of "
                              f"{record.get('submission_id')} ({str(exc)[:300]})") from exc
    return str(getattr(info.status, "value", info.status)), str(info.message or "")


def stop(record: dict[str, Any]) -> bool:
    """Ask Ray to stop the submission (SIGTERM, then SIGKILL); whether it was running."""
    try:
        return bool(client(str(record.get("address") or "")).stop_job(str(record["submission_id"])))
    except RuntimeError as exc:
        raise RayClusterError(f"the Ray cluster at {record.get('address')} could not stop "
                              f"{record.get('submission_id')} ({str(exc)[:300]})") from exc


def logs_tail(record: dict[str, Any], lines: int = 5) -> str:
    """The last lines Ray kept of the entrypoint's own output (what happened before log.txt could be written)."""
    try:
        text = client(str(record.get("address") or "")).get_job_logs(str(record["submission_id"]))
    except (RuntimeError, RayClusterError):
        return ""
    return "\n".join(str(text).strip().splitlines()[-lines:])
