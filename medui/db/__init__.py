"""MedUI's one relational database (core: no Streamlit).

SQLAlchemy 2 with Alembic migrations. `MEDUI_DB_URL` (e.g. `postgresql+psycopg://user:pw@host/medui`)
points every server process, job and command at one shared database; unset, it is an embedded SQLite
file `medui.db` in the jobs folder (MEDUI_JOBS) in WAL mode, zero set-up. `engine(url)` is the one place
an engine is made: the schema is brought to the newest migration once per process and URL (concurrent
processes wait for each other: a file lock on SQLite, an advisory lock on PostgreSQL).

Tables: `audit_events` (medui.accounts.audit), `jobs` and `study_results` (medui.db.worklist).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from medui.errors import DatabaseError

DB_VARIABLE = "MEDUI_DB_URL"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK = 0x4D45_4455  # 'MEDU': the advisory lock migrations hold on PostgreSQL


def db_url() -> str:
    """MEDUI_DB_URL, else SQLite in the jobs folder (MEDUI_JOBS, default ./jobs)."""
    url = os.environ.get(DB_VARIABLE, "").strip()
    if url:
        return url
    root = Path(__file__).resolve().parents[2]
    return f"sqlite:///{Path(os.environ.get('MEDUI_JOBS', root / 'jobs')).resolve() / 'medui.db'}"


def shown(url: str) -> str:
    """The URL for messages: never its password."""
    return url.split("@")[-1]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # the server, jobs and the CLI write at once
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing committed; no fsync per commit
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@lru_cache(maxsize=8)
def engine(url: str) -> Engine:
    """One engine (a thread-safe connection pool) per URL for the process, its schema migrated to the
    newest revision. DatabaseError (what, where, what to do) when it cannot be opened or migrated."""
    try:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {},
                            pool_pre_ping=not url.startswith("sqlite"))
        if eng.dialect.name == "sqlite":
            event.listen(eng, "connect", _sqlite_pragmas)
        migrate(eng)
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseError(where(url, exc, "opened")) from exc
    return eng


def where(url: str, exc: Exception, verb: str) -> str:
    return (f"MedUI's database ({shown(url)}) could not be {verb} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); expected a writable database. Set {DB_VARIABLE} to a "
            "database the server, its jobs and the command line can write (default: medui.db in the jobs folder, "
            "MEDUI_JOBS), then try again")


@contextlib.contextmanager
def _migration_lock(eng: Engine) -> Iterator[None]:
    if eng.dialect.name == "sqlite" and eng.url.database:
        import fcntl

        with open(f"{eng.url.database}.migrate.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
    else:
        yield


def migrate(eng: Engine, revision: str = "head") -> None:
    """Upgrade the database to `revision` with Alembic (the scripts in medui/db/migrations)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(eng), eng.begin() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def session(url: str | None = None) -> Session:
    """A new ORM session on MedUI's database (`with db.session() as s, s.begin(): ...`)."""
    return Session(engine(url or db_url()))
