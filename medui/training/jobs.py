"""Training jobs: each run is its own process with a folder on disk, so it survives page refreshes,
closed tabs and server restarts, and frees GPU memory when it ends.

jobs/<id>/params.json   what to do          status.json  state, progress, ETA, result
jobs/<id>/metrics.jsonl one line per epoch  log.txt      everything the process printed
jobs/<id>/index.json    the checked data    split.json   the data split (sample numbers and files per split)
jobs/<id>/result.json   evaluation          cancel       present = please stop
jobs/<id>/started_by.json  who started it: {"subject", "name"} from the identity provider (no roles, no tokens)

File names in job files are pseudonymous: below the class folder every folder and file name is replaced
by a salted hash (`installation_salt`, jobs/.pseudonym-salt); the patient folders' names never appear.

One job trains at a time per machine (an exclusive lock on jobs/.train.lock); others wait queued.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from medui.accounts.actor import current as current_actor
from medui.errors import CardError, JobFolderError, MedUIError, TrainingError

if TYPE_CHECKING:
    from medui.training.data import DatasetIndex

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("done", "failed", "cancelled")
NEVER_STARTED_S = 300.0  # a queued job with no process after this long was never launched (the server stopped)
_PREFIX = re.compile(r"[A-Za-z0-9_-]{0,32}")


def _unwritable(root: Path, exc: OSError) -> JobFolderError:
    return JobFolderError(f"the jobs folder {root} cannot take a new job ({exc.strerror or exc}); expected a "
                          "writable folder with free space. Make it writable, free space, or set MEDUI_JOBS to "
                          "another folder, then start again")


def jobs_dir() -> Path:
    """MEDUI_JOBS (default ./jobs), created when missing; JobFolderError when it cannot be."""
    path = Path(os.environ.get("MEDUI_JOBS", ROOT / "jobs"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    return path


SALT_FILE = ".pseudonym-salt"


def installation_salt(root: Path | None = None) -> bytes:
    """This installation's secret salt for pseudonyms of patients and their folders (`jobs/.pseudonym-salt`,
    mode 0600, made once): the same folder gets the same pseudonym in every run, and pseudonyms cannot be
    reversed with a list of likely IDs by anyone who cannot read the salt."""
    root = Path(root or jobs_dir())
    path = root / SALT_FILE
    try:
        if not path.exists():
            tmp = root / f".{SALT_FILE}.{uuid.uuid4().hex[:8]}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(FileExistsError):  # another process made it first: theirs is kept
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        salt = bytes.fromhex(path.read_text().strip())
    except OSError as exc:
        raise _unwritable(root, exc) from exc
    except ValueError:
        salt = b""
    if len(salt) < 16:
        raise JobFolderError(f"{path} does not hold a pseudonym salt (64 hex digits); expected the file MedUI "
                             "wrote. Restore it from a backup (pseudonyms change without it) or delete it")
    return salt


def write_json(path: Path, data: Any) -> None:
    """Atomic write: a reader never sees half a file. A training job's status.json is also recorded in
    MedUI's database (`record_status`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    if path.name == "status.json" and isinstance(data, dict):
        record_status(path.parent, data)


BATCH_PREFIX = "batch-"  # batch scoring jobs (medui.usecases.batch) record their own, fuller rows


def record_status(job_dir: Path, st: dict[str, Any]) -> None:
    """A training job's state, message and ETA in MedUI's database (table `jobs`), so every page and
    server process sees the same state; the job folder stays the job's own record. A database that cannot
    be written does not stop or fail the job."""
    if job_dir.name.startswith(BATCH_PREFIX):
        return
    from medui.db import worklist as store
    from medui.errors import MedUIError

    eta = st.get("eta_s")
    with contextlib.suppress(MedUIError):
        store.save_job(job_dir.name, "train", state=str(st.get("state", "queued"))[:16],
                       message=str(st.get("error") or st.get("message") or "")[:2000],
                       eta_s=float(eta) if isinstance(eta, (int, float)) else None)


def process_start(pid: int) -> str | None:
    """When process `pid` started (boot id and clock ticks since boot, from /proc): another process given
    the same pid later, also after a reboot, has another value. None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            ticks = fh.read().split(")")[-1].split()[19]
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        return None
    return f"{boot}:{ticks}"


def _alive(pid: int, start: str | None = None) -> bool:
    """Whether `pid` runs and, given its recorded `start`, is still that process (not a reused pid)."""
    if start and process_start(pid) not in (None, start):
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class Job:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def created(self) -> float:
        """When the job was created (time.time()): status.json's 'created', else params.json's mtime.
        Orders jobs whatever their id looks like (page jobs, 'cli-' jobs, older formats)."""
        try:
            value = json.loads((self.path / "status.json").read_text()).get("created")
            if isinstance(value, (int, float)):
                return float(value)
        except (OSError, json.JSONDecodeError, AttributeError):
            pass
        try:
            return (self.path / "params.json").stat().st_mtime
        except OSError:
            return 0.0

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = json.loads((self.path / "params.json").read_text())
        return params

    def status(self) -> dict[str, Any]:
        """The job's state; a running job whose process died is reported failed, with its log."""
        try:
            st: dict[str, Any] = json.loads((self.path / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            st = {"state": "queued"}
        from medui.training import runner

        rec = runner.record(self.path)
        if rec["backend"] != runner.LOCAL:  # its process runs on another node: ask the runner, not a pid
            if st.get("state") not in TERMINAL:
                found = runner.ray_state(self.path, rec, st, self.cancel_requested_at)
                if found is not st:
                    st = found
                    self._save_status(st)
            return st
        pid, start = (st.get("pid"), st.get("pid_start")) if st.get("pid") else self._launcher_pid()
        if st.get("state") not in TERMINAL and pid and not _alive(int(pid), start):
            st = {**st, "state": "failed", "error": "the job's process ended unexpectedly (killed or crashed); "
                                                   "see the log. Registered models are untouched."}
            self._save_status(st)
        elif st.get("state") == "queued" and not pid and time.time() - self.created > NEVER_STARTED_S:
            st = {**st, "state": "failed", "error": "the job was created but its process never started (the "
                                                   "server stopped?); start it again"}
            self._save_status(st)
        return st

    def _save_status(self, st: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # a read-only jobs folder: the state is still reported, not kept
            write_json(self.path / "status.json", st)

    def _launcher_pid(self) -> tuple[int | None, str | None]:
        """(pid, start) from the launcher's `pid` file: the pid, then its `process_start` on a second line."""
        try:
            lines = (self.path / "pid").read_text().splitlines()
            return int(lines[0]), (lines[1] if len(lines) > 1 else None)
        except (FileNotFoundError, ValueError, IndexError):
            return None, None

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written
        return rows

    def log_tail(self, lines: int = 30) -> str:
        path = self.path / "log.txt"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def cancel(self) -> None:
        (self.path / "cancel").touch()

    @property
    def cancel_requested(self) -> bool:
        return (self.path / "cancel").exists()

    @property
    def cancel_requested_at(self) -> float | None:
        """When cancelling was asked (time.time()), or None."""
        try:
            return (self.path / "cancel").stat().st_mtime
        except OSError:
            return None

    @property
    def backend(self) -> str:
        """Where the job's process runs: 'local' or 'on Ray' (medui.training.runner)."""
        from medui.training import runner

        return runner.label(self.path)

    def started_by(self) -> dict[str, str]:
        """Who started the job ({"subject", "name"}; empty for jobs from before this was recorded)."""
        try:
            data = json.loads((self.path / STARTED_BY).read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return {k: str(data[k]) for k in ("subject", "name") if isinstance(data, dict) and k in data}

    def result(self) -> dict[str, Any] | None:
        path = self.path / "result.json"
        return json.loads(path.read_text()) if path.exists() else None


STARTED_BY = "started_by.json"


def create(params: dict[str, Any], root: Path | None = None, index: DatasetIndex | None = None,
           prefix: str = "", started_by: dict[str, str] | None = None) -> Job:
    """The one way to make a job folder: params.json, status.json (queued), who started it (`started_by`,
    {"subject", "name"}) and, when the caller has already checked the data, index.json (no pixels,
    pseudonymous patients) so the job need not read it again."""
    root = Path(root or jobs_dir())
    _check_names(params, prefix)
    if index is not None and [str(i) for i in index.inputs] != [str(d) for d in params.get("data", [])]:
        raise TrainingError(f"the dataset index was made from {index.inputs}, the job trains on {params.get('data')}; "
                            "check the data again before starting")
    job = Job(root / f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        job.path.mkdir()
        write_json(job.path / "params.json", params)
        if index is not None:
            write_json(job.path / "index.json", index.to_json())
        if started_by is None and (acting := current_actor()) is not None:  # the CLI's user
            started_by = acting.to_json()
        if started_by:
            write_json(job.path / STARTED_BY, {k: started_by[k] for k in ("subject", "name") if k in started_by})
        write_json(job.path / "status.json", {"state": "queued", "created": time.time()})
    except OSError as exc:
        shutil.rmtree(job.path, ignore_errors=True)  # no half job folder for the list
        raise _unwritable(root, exc) from exc
    return job


def _check_names(params: dict[str, Any], prefix: str) -> None:
    """The names a user types become file names: the model name in the registry, the prefix in the jobs
    folder. TrainingError for anything that could be a path ('/', '..', NUL) or is too long."""
    from medui.ai.registry import check_name

    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise TrainingError(f"job name prefix {prefix[:40]!r} must be at most 32 letters, digits, '_' or '-'")
    try:
        check_name(params.get("out", ""))
    except CardError as exc:
        raise TrainingError(f"the new model's name: {exc}") from exc


def launch(job: Job, command: str = "train-job") -> Job:
    """Run `python -m medui COMMAND FOLDER` (`train-job`, `batch-job`) on a created job: a process of this
    machine in its own session (survives the page), or a Ray Job when MEDUI_RAY_ADDRESS is set
    (`medui.training.runner`; a training job asks Ray for the GPUs `runner.training_gpus` gives)."""
    from medui.training import runner

    gpus = runner.training_gpus(job.params()) if command == "train-job" else 0.0
    try:
        runner.launch(job.path, command, gpus)
    except OSError as exc:
        raise _unwritable(job.path.parent, exc) from exc
    except MedUIError as exc:  # the cluster refused it: the job says why at once, not 'never started' later
        with contextlib.suppress(OSError):
            write_json(job.path / "status.json", {**job.status(), "state": "failed", "error": str(exc)})
        raise
    return job


def start(params: dict[str, Any], root: Path | None = None, index: DatasetIndex | None = None,
          started_by: dict[str, str] | None = None) -> Job:
    """Create a job folder (`create`) and launch its process (`launch`)."""
    return launch(create(params, root, index, started_by=started_by))


def list_jobs(root: Path | None = None) -> list[Job]:
    """The jobs, newest first (by creation time, not by id)."""
    root = Path(root) if root else Path(os.environ.get("MEDUI_JOBS", ROOT / "jobs"))  # listing creates nothing
    if not root.is_dir():
        return []
    found = [Job(p) for p in root.iterdir() if p.is_dir() and (p / "params.json").exists()]
    return sorted(found, key=lambda j: (j.created, j.id), reverse=True)


class TrainLock:
    """Exclusive machine-wide training lock; released by the OS if the process dies."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / ".train.lock"
        self.fh: IO[str] | None = None

    def acquire(self, job: Job, poll: float = 2.0) -> bool:
        import fcntl

        self.fh = open(self.path, "w")  # noqa: SIM115 - held until release()
        while True:
            try:
                fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if job.cancel_requested:
                    return False
                time.sleep(poll)

    def release(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
