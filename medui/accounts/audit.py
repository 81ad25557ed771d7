"""The audit trail: who did what, when, to which ids, with what outcome. Append-only rows in MedUI's
database (SQLAlchemy 2; `MEDUI_DB_URL`, by default SQLite at `<jobs folder>/medui.db`).

Append-only is kept twice: this module has no update or delete function, and on SQLite the table has
triggers that abort every UPDATE and DELETE (`audit rows are append-only`), so neither a bug nor a
hand-typed `sqlite3` statement changes a row. Rows hold identifiers only: the identity provider's
subject and display name of the user, Study/Series Instance UIDs, model and job ids, a page name.
Never a patient's name, ID or birth date, and never pixel data (`record` refuses detail keys that
name patient attributes, and values longer than `MAX_VALUE`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, Integer, String, Text, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medui import db
from medui.accounts.actions import (
    ACTIONS,
    CANCEL_JOB,
    DELETE_MODEL,
    EXPLAIN,
    EXPORT_AUDIT,
    EXPORT_RESULT,
    FAILED,
    OK,
    OPEN_PAGE,
    OPEN_SERIES,
    OUTCOMES,
    PROMOTE_MODEL,
    REFUSED,
    REGISTER_MODEL,
    SCORE,
    SEND_RESULT,
    SETTINGS_CHANGE,
    SIGN_IN,
    SIGN_OUT,
    START_JOB,
)
from medui.accounts.actor import UNATTRIBUTED, Actor
from medui.errors import AuditStoreError, DatabaseError

__all__ = [  # the action names are re-exported: audit.SCORE, audit.OK, ...
    "ACTIONS",
    "CANCEL_JOB",
    "DELETE_MODEL",
    "EXPLAIN",
    "EXPORT_AUDIT",
    "EXPORT_RESULT",
    "FAILED",
    "OK",
    "OPEN_PAGE",
    "OPEN_SERIES",
    "OUTCOMES",
    "PROMOTE_MODEL",
    "REFUSED",
    "REGISTER_MODEL",
    "SCORE",
    "SEND_RESULT",
    "SETTINGS_CHANGE",
    "SIGN_IN",
    "SIGN_OUT",
    "START_JOB",
    "AuditEvent",
    "AuditRow",
    "Query",
    "attempt",
    "db_url",
    "events",
    "record",
    "to_csv",
    "CSV_COLUMNS",
    "DB_VARIABLE",
    "MAX_VALUE",
]

DB_VARIABLE = db.DB_VARIABLE

MAX_VALUE = 512  # characters of one detail value: ids fit, pixel data and free text do not
MAX_TARGET = 8192  # characters of the target ids; a longer list keeps its start and says how many more
# Detail keys that would hold patient data; `record` refuses them (ids go in `target`).
PATIENT_KEYS = ("patient", "patientname", "patientid", "patient_name", "patient_id", "birth", "birthdate",
                "birth_date", "pixels", "pixel_data", "image")


class Base(DeclarativeBase):
    pass


class AuditRow(Base):
    """One audit event (never updated, never deleted)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    display_name: Mapped[str] = mapped_column(String(255))
    via: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[str] = mapped_column(Text)  # JSON object of short values


@dataclass(frozen=True)
class AuditEvent:
    """A row as read back."""

    id: int
    time: datetime
    subject: str
    display_name: str
    via: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time.isoformat(timespec="seconds"), "subject": self.subject,
                "display_name": self.display_name, "via": self.via, "action": self.action, "target": self.target,
                "outcome": self.outcome, "details": self.details}


def db_url() -> str:
    """MEDUI_DB_URL, else SQLite in the jobs folder (MEDUI_JOBS, default ./jobs): MedUI's one database."""
    return db.db_url()


def _engine(url: str) -> Engine:
    """The database's one engine for the process (`medui.db.engine`: migrated, the audit table and its
    SQLite triggers made by migration 0001)."""
    try:
        return db.engine(url)
    except DatabaseError as exc:
        raise AuditStoreError(_where(url, exc.__cause__ or exc, "opened")) from exc


def _where(url: str, exc: BaseException, verb: str) -> str:
    shown = db.shown(url)  # never a password of the URL
    return (f"the audit trail ({shown}) could not be {verb} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            f"expected a writable database. Set {DB_VARIABLE} to a database the server and the command line "
            "can write (default: medui.db in the jobs folder, MEDUI_JOBS), then try again")


def _clean(value: Any, key: str) -> Any:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = str(value)
    if len(text) > MAX_VALUE:
        raise AuditStoreError(f"audit detail {key!r} is {len(text)} characters; at most {MAX_VALUE} (identifiers "
                              "only: never pixel data or free text)")
    return text


def _target(target: str | Sequence[str]) -> str:
    """The ids acted on as one text: joined with ', ', at most MAX_TARGET characters ('… and N more')."""
    ids = [target] if isinstance(target, str) else [str(t) for t in target]
    text, kept = "", 0
    for i, one in enumerate(ids):
        more = f" … and {len(ids) - i} more"
        if len(text) + len(one) + 2 + len(more) > MAX_TARGET:
            return text + more if kept else one[:MAX_TARGET - 2] + " …"
        text, kept = (f"{text}, {one}" if kept else one), kept + 1
    return text


def record(action: str, actor: Actor | None, target: str | Sequence[str] = "", outcome: str = OK,
           details: Mapping[str, Any] | None = None, url: str | None = None) -> AuditEvent:
    """Append one event. `target`: the ids acted on (joined with ', '); `details`: short values only."""
    if action not in ACTIONS or outcome not in OUTCOMES:
        raise AuditStoreError(f"unknown audit action {action!r} or outcome {outcome!r}; actions: "
                              f"{', '.join(ACTIONS)}; outcomes: {', '.join(OUTCOMES)}")
    details = dict(details or {})
    bad = [k for k in details if k.lower().replace(" ", "_") in PATIENT_KEYS]
    if bad:
        raise AuditStoreError(f"audit details {bad} would hold patient data; record Study/Series UIDs in the "
                              "target instead")
    who = actor or UNATTRIBUTED
    target_text = _target(target)
    row = AuditRow(time=datetime.now(UTC), subject=who.subject[:255], display_name=who.name[:255], via=who.via,
                   action=action, target=target_text, outcome=outcome,
                   details=json.dumps({k: _clean(v, k) for k, v in details.items()}, sort_keys=True))
    url = url or db_url()
    try:
        with Session(_engine(url)) as session, session.begin():
            session.add(row)
            session.flush()
            event_ = _event(row)
    except SQLAlchemyError as exc:
        raise AuditStoreError(_where(url, exc, "written")) from exc
    return event_


def _event(row: AuditRow) -> AuditEvent:
    when = row.time if row.time.tzinfo else row.time.replace(tzinfo=UTC)  # SQLite gives naive UTC back
    return AuditEvent(row.id, when, row.subject, row.display_name, row.via, row.action, row.target, row.outcome,
                      json.loads(row.details or "{}"))


@dataclass(frozen=True)
class Query:
    """Filters of `events` (every one optional): a time range, a user (subject or name contains),
    actions, outcome, a target id (contains), and how many rows at most (newest first)."""

    since: datetime | None = None
    until: datetime | None = None
    user: str = ""
    actions: tuple[str, ...] = ()
    outcome: str = ""
    target: str = ""
    limit: int = 10000


def events(query: Query = Query(), url: str | None = None) -> list[AuditEvent]:
    """The events matching `query`, newest first."""
    stmt = select(AuditRow).order_by(AuditRow.id.desc()).limit(max(1, query.limit))
    if query.since is not None:
        stmt = stmt.where(AuditRow.time >= _utc(query.since))
    if query.until is not None:
        stmt = stmt.where(AuditRow.time <= _utc(query.until))
    if query.user.strip():
        like = f"%{query.user.strip()}%"
        stmt = stmt.where(AuditRow.subject.ilike(like) | AuditRow.display_name.ilike(like))
    if query.actions:
        stmt = stmt.where(AuditRow.action.in_(query.actions))
    if query.outcome:
        stmt = stmt.where(AuditRow.outcome == query.outcome)
    if query.target.strip():
        stmt = stmt.where(AuditRow.target.contains(query.target.strip()))
    url = url or db_url()
    try:
        with Session(_engine(url)) as session:
            return [_event(r) for r in session.scalars(stmt)]
    except SQLAlchemyError as exc:
        raise AuditStoreError(_where(url, exc, "read")) from exc


def _utc(when: datetime) -> datetime:
    """Aware UTC (a naive time is taken as UTC), stored naive as SQLite keeps it."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC)


CSV_COLUMNS = ("id", "time", "subject", "display_name", "via", "action", "target", "outcome", "details")


def to_csv(rows: Iterable[AuditEvent]) -> str:
    """The events as CSV (details as a JSON object in one column)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in rows:
        d = e.to_json()
        writer.writerow([d[c] if c != "details" else json.dumps(d[c], sort_keys=True) for c in CSV_COLUMNS])
    return out.getvalue()


def attempt(action: str, actor: Actor | None, target: str | Sequence[str] = "",
            details: Mapping[str, Any] | None = None) -> _Attempt:
    """`with attempt(...)`: the block's action is recorded once it ends: ok, refused (NotAllowedError)
    or failed (any other exception, which is re-raised; an audit failure then never hides it)."""
    return _Attempt(action, actor, target, dict(details or {}))


class _Attempt:
    def __init__(self, action: str, actor: Actor | None, target: str | Sequence[str], details: dict[str, Any]):
        self.action, self.actor, self.target, self.details = action, actor, target, details

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        from medui.errors import NotAllowedError

        if kind is None:
            record(self.action, self.actor, self.target, OK, self.details)
            return
        if not isinstance(exc, Exception):
            return  # KeyboardInterrupt, a script rerun: nothing was decided
        outcome = REFUSED if isinstance(exc, NotAllowedError) else FAILED
        with contextlib.suppress(AuditStoreError):  # the action's own error is the one to report
            record(self.action, self.actor, self.target, outcome, {**self.details, "error": type(exc).__name__})
