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
    page.wait_for_function(
        "prev => { const i = document.querySelector('.js-plotly-plot image'); return i && i.getAttribute('href') !== prev; }",
        arg=before, timeout=30_000)
    after = _image_href(page)
    assert after != before
    page.screenshot(path=str(artifacts / "e2e-viewer.png"), full_page=True)
    assert "Traceback" not in page.content()
