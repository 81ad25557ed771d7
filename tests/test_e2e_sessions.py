"""Several users on one server (one browser, a context each): a study opened twice is decoded once,
and after every session has closed the server's memory comes back without another visitor."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.conftest import launch_server, stop_server
from tests.synth import phantom_volume, write_series

pytestmark = pytest.mark.browser

IDLE_S = 4  # the store drops series unused this long (MEDUI_CACHE_IDLE_S)
LOADED = re.compile(r"Loaded \d+ series from \d+ file")


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    proc, info = launch_server(tmp_path_factory.mktemp("sessions"), MEDUI_CACHE_IDLE_S=str(IDLE_S),
                               MEDUI_CACHE_MB="600", MEDUI_DATA_ROOTS=str(tmp_path_factory.getbasetemp()))
    yield proc, info
    stop_server(proc)


def _upload(ctx, url: str, files: list[Path]):
    page = ctx.new_page()
    page.goto(url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files([str(p) for p in files])
    return page


def _summary(page) -> str:
    loc = page.get_by_test_id("stMainBlockContainer").get_by_text(LOADED).first
    loc.wait_for(timeout=180_000)
    return loc.inner_text()


def test_sessions_share_a_study_and_memory_comes_back_after_they_close(small_server, browser, tmp_path):
    proc, info = small_server
    warm = write_series(tmp_path / "warm", phantom_volume(4, 64, 64, seed=1))
    study = write_series(tmp_path / "study", phantom_volume(96, 512, 512, seed=2))  # 96 MiB as float32
    other = write_series(tmp_path / "other", phantom_volume(64, 512, 512, seed=3))

    first = browser.new_context()  # a first visitor: imports and caches of the server process warm up
    _summary(_upload(first, info["url"], warm))
    first.close()
    time.sleep(IDLE_S + 3)
    before = rss_mb(proc.pid)

    contexts = [browser.new_context() for _ in range(3)]
    pages = [_upload(contexts[0], info["url"], study)]
    first_text = _summary(pages[0])
    pages += [_upload(contexts[1], info["url"], study), _upload(contexts[2], info["url"], other)]
    texts = [_summary(p) for p in pages[1:]]
    peak = rss_mb(proc.pid)
    assert "not read again" not in first_text
    assert "already open on this server: not read again" in texts[0]  # the same study: decoded once
    assert "not read again" not in texts[1]
    assert peak - before > 120, (before, peak)  # the two studies are in memory while open

    for ctx in contexts:
        ctx.close()
    deadline = time.time() + IDLE_S + 60
    after = rss_mb(proc.pid)
    while after > before * 1.10 + 20 and time.time() < deadline:  # no visitor comes meanwhile
        time.sleep(1)
        after = rss_mb(proc.pid)
    assert after <= before * 1.10 + 20, {"before": before, "peak": peak, "after": after}
