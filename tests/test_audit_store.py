"""The audit trail's store: append-only rows in SQLite (SQLAlchemy), filters, CSV, and the CLI."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from medui.accounts import audit
from medui.accounts.actor import Actor
from medui.accounts.roles import ADMIN, CLINICIAN
from medui.errors import AuditStoreError, NotAllowedError

ROOT = Path(__file__).resolve().parents[1]
CLARA = Actor("clara-sub", "Clara Clinician", frozenset({CLINICIAN}))
ADA = Actor("ada-sub", "Ada Admin", frozenset({ADMIN}))


def _db(isolated) -> Path:
    return Path(isolated["jobs"]) / "medui.db"


def test_the_default_database_is_sqlite_in_the_jobs_folder_and_medui_db_url_moves_it(isolated, tmp_path, monkeypatch):
    audit.record(audit.SIGN_IN, CLARA, "default")
    assert _db(isolated).is_file()
    monkeypatch.setenv("MEDUI_DB_URL", f"sqlite:///{tmp_path / 'other' / 'trail.db'}")
    audit.record(audit.SIGN_IN, ADA, "default")
    assert [e.subject for e in audit.events()] == ["ada-sub"]
    monkeypatch.delenv("MEDUI_DB_URL")
    assert [e.subject for e in audit.events()] == ["clara-sub"]


def test_rows_cannot_be_updated_or_deleted_by_sqlalchemy_or_by_hand(isolated):
    first = audit.record(audit.OPEN_SERIES, CLARA, "study 1.2.3 series 1.2.3.4")
    with Session(audit._engine(audit.db_url())) as session:
        for stmt in (update(audit.AuditRow).values(subject="someone-else"), delete(audit.AuditRow)):
            with pytest.raises(DatabaseError, match="audit rows are append-only"):
                session.execute(stmt)
            session.rollback()
    con = sqlite3.connect(_db(isolated))
    for sql in ("UPDATE audit_events SET outcome = 'ok'", "DELETE FROM audit_events"):
        with pytest.raises(sqlite3.DatabaseError, match="audit rows are append-only"):
            con.execute(sql)
    con.close()
    assert audit.events() == [first]
    assert not [n for n in dir(audit) if n.startswith(("update", "delete", "remove", "purge"))]


def test_filters_and_order(isolated):
    audit.record(audit.SIGN_IN, CLARA, "default")
    audit.record(audit.OPEN_SERIES, CLARA, "study 1.2.840.1 series 1.2.840.1.7", details={"series": 1})
    audit.record(audit.OPEN_PAGE, CLARA, "audit", audit.REFUSED, {"needs": "admin"})
    audit.record(audit.DELETE_MODEL, ADA, "m-v1")
    everything = audit.events()
    assert [e.action for e in everything] == ["delete-model", "open-page", "open-series", "sign-in"]  # newest first
    assert [e.action for e in audit.events(audit.Query(user="ada"))] == ["delete-model"]
    assert [e.action for e in audit.events(audit.Query(user="Clara Clin", outcome="refused"))] == ["open-page"]
    assert [e.target for e in audit.events(audit.Query(target="1.2.840.1.7"))] == ["study 1.2.840.1 series 1.2.840.1.7"]
    assert len(audit.events(audit.Query(actions=(audit.SIGN_IN, audit.DELETE_MODEL)))) == 2
    now = datetime.now(UTC)
    assert len(audit.events(audit.Query(since=now - timedelta(minutes=5)))) == 4
    assert audit.events(audit.Query(since=now + timedelta(minutes=5))) == []
    assert audit.events(audit.Query(until=now - timedelta(minutes=5))) == []
    assert len(audit.events(audit.Query(limit=2))) == 2
    assert everything[1].details == {"needs": "admin"} and everything[0].time.tzinfo is not None


def test_patient_data_and_long_values_are_refused(isolated):
    for key in ("PatientName", "patient_id", "BirthDate", "pixels"):
        with pytest.raises(AuditStoreError, match="would hold patient data"):
            audit.record(audit.SCORE, CLARA, "x", details={key: "Doe^Jane"})
    with pytest.raises(AuditStoreError, match="at most 512"):
        audit.record(audit.SCORE, CLARA, "x", details={"note": "x" * 600})
    with pytest.raises(AuditStoreError, match="unknown audit action"):
        audit.record("look", CLARA)
    assert audit.events() == []


def test_csv_has_one_row_per_event_with_the_details_as_json(isolated):
    audit.record(audit.SCORE, CLARA, "study 1 series 2", details={"model": "demo-v1"})
    audit.record(audit.SIGN_OUT, CLARA, "default")
    rows = list(csv.DictReader(io.StringIO(audit.to_csv(audit.events()))))
    assert [r["action"] for r in rows] == ["sign-out", "score"]
    assert tuple(rows[0]) == audit.CSV_COLUMNS
    assert json.loads(rows[1]["details"]) == {"model": "demo-v1"} and rows[1]["display_name"] == "Clara Clinician"


def test_attempt_records_ok_refused_and_failed_and_keeps_the_actions_error(isolated, monkeypatch):
    with audit.attempt(audit.START_JOB, CLARA, "job-1") as step:
        step.details["model"] = "m"
    with pytest.raises(NotAllowedError), audit.attempt(audit.DELETE_MODEL, CLARA, "m-v1"):
        raise NotAllowedError("not allowed")
    with pytest.raises(ZeroDivisionError), audit.attempt(audit.SCORE, CLARA, "s"):
        1 / 0  # noqa: B018
    got = [(e.action, e.outcome, e.details.get("error")) for e in audit.events()]
    assert got == [("score", "failed", "ZeroDivisionError"), ("delete-model", "refused", "NotAllowedError"),
                   ("start-job", "ok", None)]
    monkeypatch.setenv("MEDUI_DB_URL", "sqlite:////proc/no/such/medui.db")  # the trail cannot be written
    with pytest.raises(KeyError), audit.attempt(audit.SCORE, CLARA, "s"):
        raise KeyError("the action's own error")
    with pytest.raises(AuditStoreError, match=r"could not be opened .* Set MEDUI_DB_URL"):
        audit.record(audit.SCORE, CLARA, "s")


def test_writers_in_several_threads_lose_no_row(isolated):
    def write(k: int) -> None:
        for i in range(25):
            audit.record(audit.EXPLAIN, CLARA, f"t{k}-{i}")

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(audit.events()) == 100
    assert len({e.id for e in audit.events()}) == 100


def test_the_command_line_lists_filters_and_exports(isolated):
    from medui.cli.audit import parse_time

    audit.record(audit.SIGN_IN, CLARA, "default")
    audit.record(audit.DELETE_MODEL, ADA, "m-v1", audit.REFUSED)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "medui", "audit", *args], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)

    listed = cli("--since", "1h", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["action"] for r in json.loads(listed.stdout)] == ["delete-model", "sign-in"]
    assert [r["subject"] for r in json.loads(cli("--user", "ada", "--json").stdout)] == ["ada-sub"]
    assert json.loads(cli("--since", "2099-01-01", "--json").stdout) == []
    text = cli("--outcome", "refused")
    assert "ada-sub" in text.stdout and "delete-model" in text.stdout and "clara-sub" not in text.stdout
    exported = cli("--csv")
    assert exported.stdout.startswith("id,time,subject") and len(exported.stdout.splitlines()) == 3
    assert audit.events(audit.Query(actions=(audit.EXPORT_AUDIT,)))[0].subject.startswith("cli:")  # recorded
    bad = cli("--since", "last tuesday")
    assert bad.returncode == 2 and "is not a time" in bad.stderr and "Traceback" not in bad.stderr
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert parse_time("24h", now) == now - timedelta(hours=24) and parse_time("2w", now) == now - timedelta(weeks=2)
    assert parse_time("2026-11-30T08:00+01:00") == datetime(2026, 11, 30, 7, tzinfo=UTC)
    assert parse_time("2026-11-30") == datetime(2026, 11, 30, tzinfo=UTC)


def test_a_long_list_of_targets_keeps_its_start_and_says_how_many_more(isolated):
    ids = [f"study 1.2.840.{i} series 1.2.840.{i}.1" for i in range(400)]  # a big zip of many series
    row = audit.record(audit.OPEN_SERIES, CLARA, ids)
    assert len(row.target) <= audit.MAX_TARGET and row.target.startswith(ids[0] + ", " + ids[1])
    kept = row.target.count("study ")
    assert row.target.endswith(f" … and {400 - kept} more") and kept > 100
