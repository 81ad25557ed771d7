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


def test_train_one_epoch_then_diagnose_with_the_new_model(app_url, page, tmp_path, artifacts):
    from medui.synthetic.phantoms import write_labeled_folder

    root = write_labeled_folder(tmp_path / "cxr", 40, seed=4000, size=96, patients=20)
    page.goto(app_url + "/train", wait_until="networkidle")
    page.get_by_text("1. Data").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(root))
    page.get_by_text("Classes:").wait_for(timeout=120_000)
    page.screenshot(path=str(artifacts / "e2e-train-data.png"), full_page=True)
    # "Start from" stays on the recommended default: what a user gets without choosing
    epochs = page.get_by_label("Epochs")
    epochs.fill("1")
    page.get_by_label("New model name").fill("e2e-model")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Registered").first.wait_for(timeout=300_000)
    page.screenshot(path=str(artifacts / "e2e-train.png"), full_page=True)
    page.goto(app_url + "/diagnose", wait_until="networkidle")
    page.get_by_text("Add scans").wait_for(timeout=60_000)
    try:
        sample_tab = page.get_by_role("tab", name="Try a sample")
        sample_tab.wait_for(timeout=120_000)
        sample_tab.click()
        load = page.get_by_role("button", name="Load sample")
        load.wait_for(timeout=60_000)
        load.click()
    except Exception:
        page.screenshot(path=str(artifacts / "e2e-diagnose-failed.png"), full_page=True)
        raise
    page.get_by_text("Model (newest first)").wait_for(timeout=120_000)
    # newest first: the new model is the default choice, not the demo (whose card shows a banner)
    page.get_by_text("Held-out AUC").first.wait_for(timeout=120_000)
    page.get_by_text("Score is").first.wait_for(timeout=120_000)
    assert page.get_by_text("Demonstration model trained on synthetic phantoms").count() == 0
    page.screenshot(path=str(artifacts / "e2e-diagnose.png"), full_page=True)
