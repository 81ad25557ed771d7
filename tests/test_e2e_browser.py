"""End to end in a real browser: upload a generated series, scroll slices, see the image change."""

from __future__ import annotations

import pytest

from tests.synth import phantom_volume, write_series

pytestmark = pytest.mark.browser


def _image_href(page) -> str:
    return page.locator(".js-plotly-plot image").first.get_attribute("href") or ""


def test_upload_series_and_scroll(app_url, page, tmp_path, artifacts):
    vol = phantom_volume(12, rows=128, cols=128, seed=5)
    files = write_series(tmp_path / "series", vol, order=list(reversed(range(12))))
    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    assert page.get_by_text("not a medical device").count() >= 1
    page.locator("input[type=file]").first.set_input_files([str(p) for p in files])
    page.locator(".js-plotly-plot image").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "e2e-viewer-loaded.png"), full_page=True)
    assert "12 x 128x128" in page.content()
    before = _image_href(page)
    assert before.startswith("data:image/png;base64,")
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("Home")
    changed = ("prev => { const i = document.querySelector('.js-plotly-plot image'); "
               "return i && i.getAttribute('href') !== prev; }")
    page.wait_for_function(changed, arg=before, timeout=30_000)
    after = _image_href(page)
    assert after != before
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
    page.locator(".js-plotly-plot image").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "e2e-viewer-compressed.png"), full_page=True)
    if len(os.sched_getaffinity(0)) >= 2:  # the server decoded in worker processes (not app.py re-run in them)
        assert "worker processes" in summary.inner_text()
    assert "48 x 512x512" in page.content() and "Traceback" not in page.content()
