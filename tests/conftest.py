"""Shared fixtures: a real MedUI server on a free local port, and a real browser (Debian chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The one model the repository ships. Tests copy it into a registry of their own and never read
# models/ otherwise: a model someone registered in the working tree must not change a test.
DEMO_MODEL = "demo-chest-phantom-v1"


# The longest test files (30-75 s each), started first: `make test` runs two test processes (pytest-xdist,
# --dist loadfile, files handed out in collection order), and a long file left to the end keeps one busy alone.
FIRST = ("test_e2e_clinical.py", "test_e2e_auth.py", "test_viewer_browser.py", "test_faults.py", "test_ray_jobs.py",
         "test_e2e_sessions.py", "test_batch.py", "test_training.py", "test_training_runs.py", "test_privacy.py",
         "test_slices.py", "test_pacs_browser.py", "test_diagnose.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: the others keep their order


def demo_registry(folder: Path) -> Path:
    """A fresh model registry holding only the shipped demo model."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".keras", ".json"):
        shutil.copy2(ROOT / "models" / f"{DEMO_MODEL}{suffix}", folder / f"{DEMO_MODEL}{suffix}")
    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path, tmp_path_factory, monkeypatch):
    """Every test gets its own model registry (the demo model only), jobs folder and data roots,
    outside `tmp_path` (which tests fill with scans of their own)."""
    own = tmp_path_factory.mktemp("medui")
    folders = {"models": demo_registry(own / "models"), "jobs": own / "jobs", "data": own / "data"}
    folders["data"].mkdir()
    monkeypatch.setenv("MEDUI_MODELS", str(folders["models"]))
    monkeypatch.setenv("MEDUI_JOBS", str(folders["jobs"]))
    monkeypatch.setenv("MEDUI_DATA_ROOTS", f"{folders['data']}:{tmp_path}")
    monkeypatch.setenv("MEDUI_CACHE_DIR", str(own / "cache"))
    for name in ("MEDUI_DB_URL", "MEDUI_REQUIRE_AUTH"):  # the audit trail in this jobs folder; single-user mode
        monkeypatch.delenv(name, raising=False)
    yield folders
    resources = sys.modules.get("medui.ui.resources")
    clear = getattr(getattr(resources, "store", None), "clear", None)
    if clear is not None:  # a page test made the server-wide series store: each test gets its own
        clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(medui_server) -> str:
    return str(medui_server["url"])


def launch_server(folder: Path, **env: str):
    """Start `streamlit run app.py` headless on a free port with its own registry and jobs folder
    under `folder` and `env` added; returns (process, {"url", "models", "jobs", "log"})."""
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "streamlit.log"
    models = demo_registry(folder / "models")  # the server registers models: never in the repository's
    full = dict(os.environ, PYTHONUNBUFFERED="1", MEDUI_MODELS=str(models), MEDUI_JOBS=str(folder / "jobs"),
                MEDUI_CACHE_DIR=str(folder / "cache"), **env)
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=full, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()}")
    else:
        proc.kill()
        raise RuntimeError(f"streamlit did not start in 90 s:\n{log.read_text()}")
    return proc, {"url": url, "models": models, "jobs": folder / "jobs", "log": log}


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def medui_server(tmp_path_factory):
    """The app server the browser tests share ({"url", "models", "jobs"}); stopped after the session."""
    proc, info = launch_server(tmp_path_factory.mktemp("server"),
                               MEDUI_DATA_ROOTS=str(tmp_path_factory.getbasetemp()))
    yield info
    stop_server(proc)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright; skipped with a hint when it is not installed."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("browser tests need Debian's chromium: run `apt-get install chromium` (make test does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need playwright: pip install -r requirements-test.txt")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Where browser tests keep screenshots: MEDUI_TEST_ARTIFACTS if set (e.g. artifacts/), else a temp folder."""
    wanted = os.environ.get("MEDUI_TEST_ARTIFACTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
