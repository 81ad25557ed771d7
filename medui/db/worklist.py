"""Jobs and scored studies in MedUI's database (tables made by migration 0002).

A job row mirrors a job folder's state (batch scoring or training) so every page and server process sees
the same progress. A study row is one study of a batch job: queued, scored (score, label at the model's
threshold, probabilities, per-slice scores) or failed (with the reason). Identifiers only: Study/Series
Instance UIDs, accession number, modality, study date; never a patient's name or ID. Each row is written
in its own transaction, so a job killed at any moment leaves every row either before or after a write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Boolean, CursorResult, DateTime, Float, ForeignKey, Integer, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medui import db
from medui.errors import DatabaseError

QUEUED, SCORED, FAILED = "queued", "scored", "failed"
T = TypeVar("T")


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str] = mapped_column(String(128), default="")
    source: Mapped[str] = mapped_column(Text, default="")
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    started_by: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StudyRow(Base):
    __tablename__ = "study_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(96), ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    study_uid: Mapped[str] = mapped_column(String(128))
    series_uid: Mapped[str] = mapped_column(String(128), default="")
    accession: Mapped[str] = mapped_column(String(64), default="")
    modality: Mapped[str] = mapped_column(String(16), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    model_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    label: Mapped[str] = mapped_column(String(64), default="")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    probabilities: Mapped[str] = mapped_column(Text, default="{}")
    slice_scores: Mapped[str | None] = mapped_column(Text, nullable=True)
    writes: Mapped[int] = mapped_column(Integer, default=0)
    scored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class StudyKey:
    """A study to score, as a source lists it (identifiers only)."""

    study_uid: str
    series_uid: str = ""
    accession: str = ""
    modality: str = ""
    study_date: str = ""


@dataclass(frozen=True)
class Outcome:
    """What scoring one study gave: a score, or a failure with its reason."""

    key: StudyKey
    model_id: str
    status: str  # SCORED or FAILED
    reason: str = ""
    score: float | None = None
    label: str = ""
    flagged: bool = False
    threshold: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    slice_scores: list[float] | None = None


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    model_id: str
    source: str
    total: int | None
    done: int
    failed: int
    eta_s: float | None
    message: str
    started_by: str
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class Study:
    job_id: str
    position: int
    study_uid: str
    series_uid: str
    accession: str
    modality: str
    study_date: str
    model_id: str
    status: str
    reason: str
    score: float | None
    label: str
    flagged: bool
    threshold: float | None
    probabilities: dict[str, float]
    slice_scores: list[float] | None
    writes: int
    scored_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(when: datetime | None) -> datetime | None:
    return None if when is None else when if when.tzinfo else when.replace(tzinfo=UTC)


def _run(url: str | None, verb: str, fn: Callable[[Session], T]) -> T:
    """`fn(session)` in one transaction; DatabaseError (where, what to do) when the database fails."""
    url = url or db.db_url()
    try:
        with db.session(url) as session, session.begin():
            return fn(session)
    except SQLAlchemyError as exc:
        raise DatabaseError(db.where(url, exc, verb)) from exc


def save_job(job_id: str, kind: str, url: str | None = None, **values: object) -> None:
    """Create or update a job's row (state, model_id, source, total, done, failed, eta_s, message, started_by)."""
    def go(session: Session) -> None:
        row = session.get(JobRow, job_id)
        if row is None:
            row = JobRow(id=job_id, kind=kind, state=values.get("state", QUEUED), model_id="", source="", done=0,
                         failed=0, message="", started_by="", created=_now())
            session.add(row)
        for key, value in values.items():
            setattr(row, key, value)
        row.updated = _now()
    _run(url, "written", go)


def _job(row: JobRow) -> Job:
    return Job(row.id, row.kind, row.state, row.model_id, row.source, row.total, row.done, row.failed, row.eta_s,
               row.message, row.started_by, _utc(row.created) or _now(), _utc(row.updated) or _now())


def get_job(job_id: str, url: str | None = None) -> Job | None:
    def go(session: Session) -> Job | None:
        row = session.get(JobRow, job_id)
        return None if row is None else _job(row)
    return _run(url, "read", go)


def list_jobs(kind: str | None = None, url: str | None = None) -> list[Job]:
    stmt = select(JobRow).order_by(JobRow.created.desc())
    if kind:
        stmt = stmt.where(JobRow.kind == kind)
    return _run(url, "read", lambda s: [_job(r) for r in s.scalars(stmt)])


def queue(job_id: str, model_id: str, keys: Sequence[StudyKey], url: str | None = None) -> int:
    """Add the listed studies as queued (those already there, scored or not, are kept); returns how many
    the job holds."""
    def go(session: Session) -> int:
        have = set(session.scalars(select(StudyRow.study_uid).where(StudyRow.job_id == job_id)))
        start = session.scalar(select(func.count()).select_from(StudyRow).where(StudyRow.job_id == job_id)) or 0
        for key in keys:
            if key.study_uid in have:
                continue
            have.add(key.study_uid)
            session.add(StudyRow(job_id=job_id, position=start, study_uid=key.study_uid, series_uid=key.series_uid,
                                 accession=key.accession, modality=key.modality, study_date=key.study_date,
                                 model_id=model_id, status=QUEUED, reason="", label="", flagged=False,
                                 probabilities="{}", writes=0))
            start += 1
        return len(have)
    return _run(url, "written", go)


def scored_uids(job_id: str, url: str | None = None) -> set[str]:
    """The studies of `job_id` already scored (a restarted job skips them)."""
    stmt = select(StudyRow.study_uid).where(StudyRow.job_id == job_id, StudyRow.status == SCORED)
    return _run(url, "read", lambda s: set(s.scalars(stmt)))


def _values(outcome: Outcome) -> dict[str, Any]:
    key = outcome.key
    values: dict[str, Any] = {
        "status": outcome.status, "reason": outcome.reason[:2000], "score": outcome.score, "label": outcome.label,
        "flagged": outcome.flagged, "threshold": outcome.threshold, "model_id": outcome.model_id,
        "probabilities": json.dumps(outcome.probabilities), "scored_at": _now(), "writes": StudyRow.writes + 1,
        "slice_scores": None if outcome.slice_scores is None else json.dumps(outcome.slice_scores)}
    for name in ("series_uid", "accession", "modality", "study_date"):
        if getattr(key, name):
            values[name] = getattr(key, name)
    return values


def _insert(session: Session, job_id: str, outcome: Outcome, values: dict[str, Any]) -> None:
    key = outcome.key
    count = session.scalar(select(func.count()).select_from(StudyRow).where(StudyRow.job_id == job_id)) or 0
    session.add(StudyRow(job_id=job_id, position=count, study_uid=key.study_uid,
                         **{**values, "writes": 1, "series_uid": key.series_uid, "accession": key.accession,
                            "modality": key.modality, "study_date": key.study_date}))


def write(job_id: str, outcome: Outcome, url: str | None = None) -> None:
    """Record one study's outcome at once, in its own transaction."""
    values = _values(outcome)

    def go(session: Session) -> None:
        done: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE gives a CursorResult
            update(StudyRow).where(StudyRow.job_id == job_id, StudyRow.study_uid == outcome.key.study_uid)
            .values(**values))
        if not done.rowcount:
            _insert(session, job_id, outcome, values)
    _run(url, "written", go)


def write_once(job_id: str, outcome: Outcome, url: str | None = None) -> bool:
    """Record a study's outcome unless it is already scored; whether it was written. One conditional
    UPDATE (status is not 'scored'), atomic in SQLite and PostgreSQL, on the row the unique key (job_id,
    study_uid) names: a task that runs again after its node died, or two copies of it at once, cannot
    write a study twice. A failed study may be written again (a retry may score it)."""
    values = _values(outcome)

    def go(session: Session) -> bool:
        done: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE gives a CursorResult
            update(StudyRow).where(StudyRow.job_id == job_id, StudyRow.study_uid == outcome.key.study_uid,
                                   StudyRow.status != SCORED).values(**values))
        if done.rowcount:
            return True
        there = session.scalar(select(func.count()).select_from(StudyRow).where(
            StudyRow.job_id == job_id, StudyRow.study_uid == outcome.key.study_uid))
        if there:
            return False
        _insert(session, job_id, outcome, values)
        return True
    try:
        return _run(url, "written", go)
    except DatabaseError as exc:
        if isinstance(exc.__cause__, IntegrityError):  # another copy inserted it first: that one stands
            return False
        raise


def _study(row: StudyRow) -> Study:
    return Study(row.job_id, row.position, row.study_uid, row.series_uid, row.accession, row.modality, row.study_date,
                 row.model_id, row.status, row.reason, row.score, row.label, bool(row.flagged), row.threshold,
                 json.loads(row.probabilities or "{}"),
                 None if row.slice_scores is None else json.loads(row.slice_scores), row.writes, _utc(row.scored_at))


def studies(job_ids: Iterable[str] | None = None, url: str | None = None) -> list[Study]:
    """The study rows of the given jobs (all jobs: None), in queue order."""
    stmt = select(StudyRow).order_by(StudyRow.job_id, StudyRow.position)
    if job_ids is not None:
        stmt = stmt.where(StudyRow.job_id.in_(list(job_ids)))
    return _run(url, "read", lambda s: [_study(r) for r in s.scalars(stmt)])


def counts(job_id: str, url: str | None = None) -> dict[str, int]:
    """How many studies of the job are queued, scored and failed."""
    stmt = (select(StudyRow.status, func.count()).where(StudyRow.job_id == job_id).group_by(StudyRow.status))
    found = _run(url, "read", lambda s: {k: int(v) for k, v in s.execute(stmt)})
    return {QUEUED: found.get(QUEUED, 0), SCORED: found.get(SCORED, 0), FAILED: found.get(FAILED, 0)}
