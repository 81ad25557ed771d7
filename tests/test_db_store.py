"""MedUI's one database on SQLite (always) and a real PostgreSQL (tests/postgres.py, skipped with the
reason where it cannot be installed): Alembic migrations, the audit trail, jobs and study results,
concurrent writers."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, text

from medui import db
from medui.accounts import audit
from medui.accounts.actor import Actor
from medui.db import worklist as store
from medui.db.worklist import FAILED, SCORED, Outcome, StudyKey
from tests import postgres

ADA = Actor("ada-sub", "Ada", frozenset({"admin"}))


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory):
    yield from postgres.served(tmp_path_factory.mktemp("pg"))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, isolated, monkeypatch):
    if request.param == "sqlite":
        value = db.db_url()
    else:
        value = request.getfixturevalue("pg_url")
        eng = db.engine(value)
        with eng.begin() as conn:  # each test starts from an empty database (audit rows cannot be deleted)
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        db.migrate(eng)
    monkeypatch.setenv("MEDUI_DB_URL", value)
    return value


def test_migrations_make_every_table_and_stop_at_the_newest(url):
    eng = db.engine(url)
    assert {"audit_events", "jobs", "study_results", "alembic_version"} <= set(inspect(eng).get_table_names())
    with eng.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    db.migrate(eng)  # again: nothing to do, nothing fails


def test_the_audit_trail_lives_in_the_same_database_and_stays_append_only(url):
    first = audit.record(audit.START_JOB, ADA, "batch-1", details={"kind": "batch"})
    assert audit.events() == [first]
    with db.engine(url).connect() as conn:
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text("UPDATE audit_events SET outcome = 'ok'"))
        conn.rollback()
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text("DELETE FROM audit_events"))


def _outcome(uid: str, value: float) -> Outcome:
    return Outcome(StudyKey(uid, f"{uid}.1", "ACC1", "CR", "20260101"), "m-v1", SCORED, "", value, "abnormal",
                   value >= 0.5, 0.5, {"normal": 1 - value, "abnormal": value}, None)


def test_jobs_and_results_round_trip_and_each_write_is_whole(url):
    store.save_job("batch-x", "batch", state="running", model_id="m-v1", source="folder /data")
    keys = [StudyKey(f"1.2.{k}", modality="CT" if k % 2 else "CR") for k in range(5)]
    assert store.queue("batch-x", "m-v1", keys) == 5
    assert store.queue("batch-x", "m-v1", keys[:2] + [StudyKey("1.2.9")]) == 6  # known ones kept
    store.write("batch-x", _outcome("1.2.0", 0.9))
    store.write("batch-x", Outcome(StudyKey("1.2.1"), "m-v1", FAILED, "pixel data truncated"))
    assert store.scored_uids("batch-x") == {"1.2.0"}
    assert store.counts("batch-x") == {"queued": 4, "scored": 1, "failed": 1}
    rows = {r.study_uid: r for r in store.studies(["batch-x"])}
    assert rows["1.2.0"].probabilities == {"normal": pytest.approx(0.1), "abnormal": 0.9}
    assert rows["1.2.0"].flagged and rows["1.2.0"].writes == 1 and rows["1.2.0"].series_uid == "1.2.0.1"
    assert rows["1.2.1"].reason == "pixel data truncated" and rows["1.2.1"].modality == "CT"  # kept from the queue
    store.save_job("batch-x", "batch", state="done", done=1, failed=1)
    job = store.get_job("batch-x")
    assert job is not None and (job.state, job.done, job.failed, job.source) == ("done", 1, 1, "folder /data")
    assert [j.id for j in store.list_jobs("batch")] == ["batch-x"]


def test_concurrent_writers_lose_nothing(url):
    store.save_job("batch-c", "batch", state="running")
    store.queue("batch-c", "m-v1", [StudyKey(f"2.{k}") for k in range(40)])
    errors: list[BaseException] = []

    def writer(part: int) -> None:
        try:
            for k in range(part, 40, 4):
                store.write("batch-c", _outcome(f"2.{k}", k / 40))
                store.save_job("batch-c", "batch", done=k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.counts("batch-c")["scored"] == 40
    assert all(r.writes == 1 for r in store.studies(["batch-c"]))


def test_a_training_jobs_status_is_recorded_in_the_database(isolated):
    from medui.training import jobs

    job = jobs.create({"out": "chest-model", "data": []})
    row = store.get_job(job.id)
    assert row is not None and (row.kind, row.state) == ("train", "queued")
    jobs.write_json(job.path / "status.json", {"state": "running", "message": "epoch 1/3", "eta_s": 12.5})
    row = store.get_job(job.id)
    assert row is not None and (row.state, row.message, row.eta_s) == ("running", "epoch 1/3", 12.5)


def test_a_database_made_before_migrations_is_adopted_with_its_audit_rows(tmp_path, monkeypatch):
    import sqlite3

    path = tmp_path / "old" / "medui.db"
    path.parent.mkdir()
    con = sqlite3.connect(path)  # the audit table as MedUI made it before Alembic (create_all + triggers)
    con.executescript(
        "CREATE TABLE audit_events (id INTEGER PRIMARY KEY AUTOINCREMENT, time DATETIME, subject VARCHAR(255), "
        "display_name VARCHAR(255), via VARCHAR(16), action VARCHAR(32), target TEXT, outcome VARCHAR(16), "
        "details TEXT); CREATE INDEX ix_audit_events_time ON audit_events (time);"
        "INSERT INTO audit_events (time, subject, display_name, via, action, target, outcome, details) VALUES "
        "('2026-01-01 00:00:00', 'old-sub', 'Old', 'app', 'sign-in', 'default', 'ok', '{}');")
    con.close()
    monkeypatch.setenv("MEDUI_DB_URL", f"sqlite:///{path}")
    audit.record(audit.SIGN_IN, ADA, "default")
    assert [e.subject for e in audit.events()] == ["ada-sub", "old-sub"]
    with db.engine(f"sqlite:///{path}").connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text("DELETE FROM audit_events"))
