"""Batch scoring use cases, shared by the Worklist page and `python -m medui batch|worklist`: start a job
over a server folder or a PACS query, cancel it, resume it, follow it, and read the worklist.

A batch job is its own process with a folder under MEDUI_JOBS (`medui.training.jobs`: params.json,
status.json, log.txt, cancel), so it survives refreshes and server restarts; its state, progress and each
study's result live in MedUI's database (`medui.db.worklist`), so every page and process sees the same.
"""

from __future__ import annotations

import csv
import io
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require, require_owner
from medui.db import worklist as store
from medui.errors import BatchError
from medui.training import jobs
from medui.usecases.batch_sources import describe

KIND = "batch"
PREFIX = jobs.BATCH_PREFIX
COMMAND = "batch-job"


@dataclass(frozen=True)
class BatchRequest:
    """What to score: a server folder/zip (`folder`) or a PACS query (`node`, dates, modality,
    accession), with which registered model, at most `limit` studies; `send`: results of flagged studies
    go back to the PACS (PACS sources)."""

    model: str
    folder: str = ""
    node: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""
    accession: str = ""
    limit: int = 200
    send: bool = False

    def source(self) -> dict[str, Any]:
        if self.folder:
            from medui.usecases.train import allowed_folder

            path = Path(self.folder).expanduser().resolve()
            if not (path.is_file() and path.suffix.lower() == ".zip"):
                path = allowed_folder(self.folder)
            else:
                allowed_folder(str(path.parent))
            return {"kind": "folder", "path": str(path), "limit": self.limit}
        return {"kind": "pacs", "node": self.node, "modality": self.modality.strip().upper(),
                "accession": self.accession.strip(), "limit": self.limit,
                "date_from": self.date_from.isoformat() if self.date_from else None,
                "date_to": self.date_to.isoformat() if self.date_to else None}


def _model_id(name: str) -> str:
    from medui.ai.registry import find

    return find(name).id


def start(request: BatchRequest, actor: Actor | None = None, launch: bool = True) -> jobs.Job:
    """Create a batch job (folder + database row) and start its process; returns at once. Needs the
    'worklist' permission; audited (start-job, the job id)."""
    who = current(actor)
    with audit.attempt(audit.START_JOB, who, request.model) as step:
        require(who, "worklist", "starting a batch scoring job")
        if request.limit < 1:
            raise BatchError(f"the study limit is {request.limit}; expected at least 1")
        if request.send:
            if request.folder:
                raise BatchError("sending results back needs a PACS source; a folder's studies have no PACS to go to")
            require(who, "send-result", "sending the results of flagged studies to the PACS")
        params = {"kind": KIND, "model": _model_id(request.model), "source": request.source(),
                  "limit": request.limit, "send": request.send}
        job = _create(params, who)
        step.target = job.id
        step.details.update({"kind": KIND, "model": params["model"]})
        if launch:
            jobs.launch(job, COMMAND)
    return job


def _create(params: dict[str, Any], who: Actor | None) -> jobs.Job:
    root = jobs.jobs_dir()
    job = jobs.Job(root / f"{PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    try:
        job.path.mkdir()
        jobs.write_json(job.path / "params.json", params)
        if who is not None:
            jobs.write_json(job.path / jobs.STARTED_BY, who.to_json())
        jobs.write_json(job.path / "status.json", {"state": "queued", "created": time.time()})
    except OSError as exc:
        raise BatchError(f"the jobs folder {root} cannot take a new job ({exc}); make it writable") from exc
    store.save_job(job.id, KIND, state="queued", model_id=params["model"], source=describe(params),
                   started_by=who.subject if who else "")
    return job


def find_job(job_id: str) -> jobs.Job:
    path = jobs.jobs_dir() / job_id
    if not job_id.startswith(PREFIX) or "/" in job_id or not (path / "params.json").is_file():
        raise BatchError(f"no batch job {job_id!r} in {jobs.jobs_dir()}; list them with `python -m medui batch --list`")
    return jobs.Job(path)


def cancel(job: jobs.Job, actor: Actor | None = None) -> None:
    """Ask a running batch job to stop after the current study. The one who started it or an
    administrator ('cancel-any-job'); audited."""
    who = current(actor)
    with audit.attempt(audit.CANCEL_JOB, who, job.id):
        require(who, "worklist", "cancelling a batch job")
        require_owner(who, f"job {job.id}", job.started_by())
        job.cancel()


def resume(job: jobs.Job, actor: Actor | None = None, launch: bool = True) -> jobs.Job:
    """Start a cancelled, failed or killed job again: what is already scored is skipped. Audited."""
    who = current(actor)
    with audit.attempt(audit.START_JOB, who, job.id, {"kind": KIND, "resume": True}):
        require(who, "worklist", "resuming a batch job")
        state = state_of(job)["state"]
        if state not in jobs.TERMINAL:
            raise BatchError(f"job {job.id} is {state}; only a cancelled, failed or finished job can be resumed")
        (job.path / "cancel").unlink(missing_ok=True)
        (job.path / "pid").unlink(missing_ok=True)
        jobs.write_json(job.path / "status.json", {"state": "queued", "created": time.time()})
        store.save_job(job.id, KIND, state="queued", message="")
        if launch:
            jobs.launch(job, COMMAND)
    return job


def state_of(job: jobs.Job) -> dict[str, Any]:
    """The job's state from its folder (a dead process, or a Ray job Ray ended, is reported failed), where it
    runs ('backend': 'local' or 'on Ray') and its progress from the database; a job whose process died is
    marked failed in the database too."""
    st = job.status()
    row = store.get_job(job.id)
    if row is not None and st.get("state") in jobs.TERMINAL and row.state not in jobs.TERMINAL:
        store.save_job(job.id, KIND, state=st["state"], message=str(st.get("error", "")), eta_s=None)
        row = store.get_job(job.id)
    out = {**st, "backend": job.backend}  # 'local' or 'on Ray'
    if row is not None:
        out.update({"total": row.total, "done": row.done, "failed": row.failed, "eta_s": row.eta_s,
                    "model": row.model_id, "source": row.source, "message": row.message or st.get("error", "")})
    return out


def study_inputs(job_id: str, study_uid: str, actor: Actor | None = None) -> list[Any]:
    """What to open a worklist study from, for the one loader: its files in the job's folder, or its
    instances retrieved from the job's PACS. Needs the 'worklist' permission."""
    from medui.usecases.batch_sources import source_from

    require(current(actor), "worklist", "opening a worklist study")
    return source_from(find_job(job_id).params()).inputs(study_uid)


def rescore(job_id: str, model: str, actor: Actor | None = None, launch: bool = True) -> jobs.Job:
    """A new job over the same source with another model: the worklist shows both scores side by side."""
    old = find_job(job_id).params()
    src = dict(old["source"])
    if src.get("kind") == "folder":
        request = BatchRequest(model=model, folder=str(src["path"]), limit=int(old.get("limit") or 200))
    else:
        request = BatchRequest(model=model, node=str(src.get("node", "")), modality=str(src.get("modality", "")),
                               accession=str(src.get("accession", "")), limit=int(old.get("limit") or 200),
                               date_from=date.fromisoformat(src["date_from"]) if src.get("date_from") else None,
                               date_to=date.fromisoformat(src["date_to"]) if src.get("date_to") else None)
    return start(request, actor, launch)


def list_batch_jobs() -> list[jobs.Job]:
    """The batch jobs, newest first."""
    return [j for j in jobs.list_jobs() if j.id.startswith(PREFIX)]


def any_running() -> bool:
    """Whether a batch job is queued or running (the Worklist page refreshes itself while one is)."""
    return any(j.status().get("state") not in jobs.TERMINAL for j in list_batch_jobs())


@dataclass(frozen=True)
class WorklistRow:
    """One study of the worklist: its identifiers, its status and each model's score."""

    study_uid: str
    series_uid: str
    accession: str
    modality: str
    study_date: str
    status: str
    reason: str
    score: float | None
    flagged: bool
    label: str
    model: str
    job_id: str
    scores: dict[str, float | None]  # model id -> score, for every model that scored the study


def worklist(job_ids: Sequence[str] | None = None, flagged_only: bool = False, modality: str = "",
             date_from: date | None = None, date_to: date | None = None, actor: Actor | None = None
             ) -> list[WorklistRow]:
    """The studies of the given batch jobs (all: None), highest score first (failed and queued last),
    one row per study: the first job's model is the row's score, every other model's score is in
    `scores` (re-scoring with another model compares the two). Needs the 'worklist' permission."""
    require(current(actor), "worklist", "reading the worklist")
    rows = store.studies(job_ids)
    by_study: dict[str, list[store.Study]] = {}
    for r in rows:
        by_study.setdefault(r.study_uid, []).append(r)
    out: list[WorklistRow] = []
    for uid, found in by_study.items():
        main = next((r for r in found if r.status == store.SCORED), found[0])
        out.append(WorklistRow(uid, main.series_uid, main.accession, main.modality, main.study_date, main.status,
                               main.reason, main.score, main.flagged, main.label, main.model_id, main.job_id,
                               {r.model_id: r.score for r in found}))
    if flagged_only:
        out = [r for r in out if r.flagged]
    if modality:
        out = [r for r in out if r.modality.upper() == modality.upper()]
    lo, hi = (d.strftime("%Y%m%d") if d else "" for d in (date_from, date_to))
    if lo:
        out = [r for r in out if r.study_date and r.study_date >= lo]
    if hi:
        out = [r for r in out if r.study_date and r.study_date <= hi]
    rank = {store.SCORED: 0, store.QUEUED: 1, store.FAILED: 2}
    return sorted(out, key=lambda r: (rank.get(r.status, 3), -(r.score if r.score is not None else -1.0),
                                      r.study_date, r.study_uid))


CSV_COLUMNS = ("study_uid", "series_uid", "accession", "modality", "study_date", "status", "reason", "score",
               "flagged", "label", "model", "job_id")


def to_csv(rows: Sequence[WorklistRow]) -> str:
    """The worklist as CSV: one line a study, each model's score in a column of its own."""
    models = sorted({m for r in rows for m in r.scores})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CSV_COLUMNS, *(f"score {m}" for m in models)])
    for r in rows:
        data = asdict(r)
        writer.writerow([*("" if data[c] is None else data[c] for c in CSV_COLUMNS),
                         *("" if r.scores.get(m) is None else f"{r.scores[m]:.6f}" for m in models)])
    return buf.getvalue()


def poll_interval() -> float:
    """Seconds between refreshes of a running job's page (MEDUI_WORKLIST_REFRESH_S, default 2)."""
    return float(os.environ.get("MEDUI_WORKLIST_REFRESH_S", "2"))
