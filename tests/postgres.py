"""A real PostgreSQL (Debian `postgresql`) for the storage tests: a throw-away data directory, a free
port on 127.0.0.1, a socket folder of its own; started with `pg_ctl`, stopped by its pid. As root it
runs as the `postgres` user (PostgreSQL refuses root). Skipped, with the reason, where it is missing."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

HINT = "PostgreSQL tests need Debian's postgresql: run `apt-get install postgresql` (`make test` does it as root)"


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def served(folder: Path) -> Iterator[str]:
    """Yield a `postgresql+psycopg://` URL of a fresh server; stop it (SIGINT: fast shutdown, then SIGKILL)."""
    import pytest

    pg = bin_dir()
    if pg is None:
        pytest.skip(HINT)
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL refuses to run as root and there is no `postgres` user to run it as")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg: pip install -r requirements.txt")
    folder.mkdir(parents=True, exist_ok=True)
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        for path in (folder, sock):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        folder.chmod(0o700)
        for parent in folder.parents:  # the postgres user must reach the folder
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    port = _free_port()
    subprocess.run(_as_user([str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "medui", "-E", "UTF8",
                             "--no-sync"]), check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_user([str(pg / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(folder / "pg.log"),
                             "-w", "start"]), check=True, capture_output=True, timeout=120)
    pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    try:
        subprocess.run(_as_user([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "medui", "medui"]),
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://medui@127.0.0.1:{port}/medui"
    finally:
        os.kill(pid, signal.SIGINT)  # fast shutdown (a smart one waits for pooled connections); a straggler is killed
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
