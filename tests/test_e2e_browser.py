"""End to end in a real browser: upload a generated series, scroll slices in the reader, see the image change."""

from __future__ import annotations

import pytest

from tests.synth import phantom_volume, write_series

pytestmark = pytest.mark.browser


DIGEST = ("c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let h = 0;"
          " for (let i = 0; i < d.length; i += 4) h = (Math.imul(h, 31) + d[i]) | 0; return h }")


def _picture(page) -> int:
    """A digest of the reader's canvas (the picture the browser draws from the voxels it holds)."""
    return int(page.get_by_test_id("reader-canvas").first.evaluate(DIGEST))


def test_upload_series_and_scroll(app_url, page, tmp_path, artifacts):
    vol = phantom_volume(12, rows=128, cols=128, seed=5)
    files = write_series(tmp_path / "series", vol, order=list(reversed(range(12))))
    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    assert page.get_by_text("not a medical device").count() >= 1
    page.locator("input[type=file]").first.set_input_files([str(p) for p in files])
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "e2e-viewer-loaded.png"), full_page=True)
    assert "12 x 128x128" in page.content()
    before = _picture(page)
    assert page.get_by_test_id("reader-slice").first.inner_text() == "slice 7/12"
    stage = page.locator("[data-testid=reader] .stage").first
    stage.focus()
    stage.press("Home")
    page.get_by_test_id("reader-slice").filter(has_text="slice 1/12").wait_for(timeout=30_000)
    assert _picture(page) != before
    page.screenshot(path=str(artifacts / "e2e-viewer.png"), full_page=True)
    assert "Traceback" not in page.content()


def test_big_compressed_upload_is_decoded_by_workers(app_url, page, tmp_path, artifacts):
    """A compressed series big enough for the worker pool, through the real server's uploader."""
    import os

    from tests.synth import jpeg_lossless_copy

    vol = phantom_volume(48, rows=512, cols=512, seed=9)  # noise: ~350 KB per slice compressed
    raw = write_series(tmp_path / "raw", vol)
    (tmp_path / "jpeg").mkdir()
    files = [jpeg_lossless_copy(p, tmp_path / "jpeg" / p.name) for p in raw]
    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files([str(p) for p in files])
    summary = page.get_by_test_id("stMainBlockContainer").get_by_text("Loaded 1 series from 48 file(s)")
    summary.wait_for(timeout=120_000)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "e2e-viewer-compressed.png"), full_page=True)
    if len(os.sched_getaffinity(0)) >= 2:  # the server decoded in worker processes (not app.py re-run in them)
        assert "worker processes" in summary.inner_text()
    assert "48 x 512x512" in page.content() and "Traceback" not in page.content()
