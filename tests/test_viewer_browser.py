"""The in-browser reader in a real browser (Debian chromium): orientation and a marker voxel against
the server's geometry, wheel scrolling, window drag, hover readout against the server's value, and
the real 255-slice CT. Everything after the upload happens without a Streamlit rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medui.io.loader import load
from medui.reading.display import display_order, plane_view, slice_label
from tests.synth import phantom_volume, write_series

pytestmark = pytest.mark.browser

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-chest-covid-255"
MARKER = 3000  # stored value of the marker block (HU = stored - 1024)
DIGEST = ("c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let h = 0;"
          " for (let i = 0; i < d.length; i += 4) h = (Math.imul(h, 31) + d[i]) | 0; return h }")


def open_reader(page, app_url: str, files: list[str], timeout: float = 180_000) -> None:
    """Upload `files` on the Viewer and wait until the reader holds the whole series."""
    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(files)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=timeout)


def status(page) -> str:
    return str(page.get_by_test_id("reader-status").first.inner_text())


def digest(page) -> int:
    return int(page.get_by_test_id("reader-canvas").first.evaluate(DIGEST))


def stage_box(page) -> dict:
    return page.locator("[data-testid=reader] .stage").first.bounding_box()


def image_box(page) -> list[float]:
    """Where the image lies on the stage (CSS px): x, y, width, height."""
    return [float(v) for v in page.locator("[data-testid=reader] .stage").first.get_attribute("data-box").split(",")]


def wait_status(page, text: str) -> None:
    page.get_by_test_id("reader-status").filter(has_text=text).first.wait_for(timeout=30_000)


@pytest.fixture()
def marked(tmp_path):
    """A 16-slice CT stored feet to head with a bright block near the first row and column of slice 3."""
    vol = phantom_volume(16, rows=64, cols=80, seed=4)
    vol[3, 4:12, 6:16] = MARKER
    files = write_series(tmp_path / "marked", vol, order=list(reversed(range(16))))
    series = load([str(p) for p in files]).series[0]
    return [str(p) for p in files], series


def test_orientation_and_a_marker_voxel_match_the_server(app_url, page, marked, artifacts):
    files, s = marked
    open_reader(page, app_url, files)
    page.screenshot(path=str(artifacts / "reader-loaded.png"))
    labels = {side: page.get_by_test_id(f"reader-orient-{side}").first.inner_text()
              for side in ("left", "right", "top", "bottom")}
    assert labels == {"left": "R", "right": "L", "top": "A", "bottom": "P"}  # radiological, as plane_view
    # the marker's display slice and where the server draws it in the axial view
    native = int(np.argwhere((s.pixels == MARKER - 1024).any(axis=(1, 2)))[0][0])
    d = int(np.where(display_order(s) == native)[0][0])
    view = plane_view(s, "axial", d)
    rows, cols = np.argwhere(view.image == MARKER - 1024).mean(axis=0)
    stage = page.locator("[data-testid=reader] .stage").first
    stage.focus()
    stage.press("Home")
    for _ in range(d):
        stage.press("ArrowDown")
    wait_status(page, f"slice {d + 1}/16")
    assert slice_label(s, d) in status(page)
    ox, oy, w, h = image_box(page)
    box = stage_box(page)
    x = box["x"] + ox + (cols + 0.5) / view.image.shape[1] * w
    y = box["y"] + oy + (rows + 0.5) / view.image.shape[0] * h
    page.mouse.move(x, y)
    readout = page.get_by_test_id("reader-readout").first
    assert float(readout.get_attribute("data-value")) == MARKER - 1024
    assert x < box["x"] + box["width"] / 2 and y < box["y"] + box["height"] / 2  # patient right-anterior: top left
    page.screenshot(path=str(artifacts / "reader-marker.png"))


def test_wheel_window_drag_and_hover_readout(app_url, page, marked, artifacts):
    files, s = marked
    open_reader(page, app_url, files)
    box = stage_box(page)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    before, text = digest(page), status(page)
    assert "slice 9/16" in text  # the middle slice, as the server-rendered viewer starts
    for _ in range(5):
        page.mouse.wheel(0, 120)
    wait_status(page, "slice 14/16")
    assert digest(page) != before
    assert slice_label(s, 13) in status(page)
    for _ in range(20):  # past the end: it stops at the last slice
        page.mouse.wheel(0, 120)
    wait_status(page, "slice 16/16")
    # hover: the readout is the server's value at that voxel
    readout = page.get_by_test_id("reader-readout").first
    page.mouse.move(box["x"] + box["width"] / 2 + 13, box["y"] + box["height"] / 2 - 21)
    c, r, d = (int(v) for v in readout.get_attribute("data-voxel").split(","))
    assert float(readout.get_attribute("data-value")) == float(s.pixels[display_order(s)[d], r, c])
    assert "HU" in readout.inner_text() and " mm" in readout.inner_text()
    # window drag (left button, the default tool): the window text and the picture change
    before, text = digest(page), page.get_by_test_id("reader-window").first.inner_text()
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40, steps=8)
    page.mouse.up()
    after = page.get_by_test_id("reader-window").first.inner_text()
    assert after != text and after.startswith("W ")
    assert digest(page) != before
    # a preset puts the window back
    page.get_by_test_id("reader-preset").first.select_option("Lung")
    page.get_by_test_id("reader-window").filter(has_text="W 1500 L -600").first.wait_for(timeout=10_000)
    page.screenshot(path=str(artifacts / "reader-window.png"))


def test_planes_distance_and_no_rerun_while_reading(app_url, page, marked):
    """Plane switch, zoom and measurement happen in the browser: no message goes to the server."""
    files, s = marked
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(str(f)[:40])))
    open_reader(page, app_url, files)
    page.wait_for_timeout(1500)  # let the upload's own reruns settle
    assert sent, "the listener sees the page's messages to the server"
    sent.clear()
    page.get_by_test_id("reader-plane-coronal").first.click()
    wait_status(page, "Coronal")
    assert page.get_by_test_id("reader-orient-top").first.inner_text() == "S"
    page.get_by_test_id("reader-tool-measure").first.click()
    ox, oy, w, h = image_box(page)
    box = stage_box(page)
    page.mouse.move(box["x"] + ox + 0.2 * w, box["y"] + oy + 0.5 * h)
    page.mouse.down()
    page.mouse.move(box["x"] + ox + 0.7 * w, box["y"] + oy + 0.5 * h, steps=5)
    page.mouse.up()
    text = page.get_by_test_id("reader-measure").first.inner_text()
    assert text.startswith("Distance ") and " mm" in text
    mm = float(text.split()[1])
    assert mm == pytest.approx(0.5 * 80 * s.spacing[2], rel=0.05)  # half the width: 40 columns
    page.get_by_test_id("reader-zoom-in").first.click()
    page.wait_for_timeout(500)
    assert not sent, f"the page talked to the server while reading: {sent}"


@pytest.mark.skipif(not SHARED_CT.is_dir(), reason="the real 255-slice CT is in ../shared/data on development machines")
def test_real_ct_scrolls_twenty_slices_in_the_browser(app_url, page, artifacts):
    files = sorted(str(p) for p in SHARED_CT.iterdir())
    s = load(files).series[0]
    open_reader(page, app_url, files, timeout=300_000)
    box = stage_box(page)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert slice_label(s, 127) in status(page)
    before = digest(page)
    for _ in range(20):
        page.mouse.wheel(0, 120)
    wait_status(page, "slice 148/255")
    assert slice_label(s, 147) in status(page)
    assert digest(page) != before
    readout = page.get_by_test_id("reader-readout").first
    c, r, d = (int(v) for v in readout.get_attribute("data-voxel").split(","))
    assert float(readout.get_attribute("data-value")) == float(s.pixels[display_order(s)[d], r, c])
    page.screenshot(path=str(artifacts / "reader-real-ct.png"))


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label` (reopened if a rerun closes the list)."""
    for attempt in range(3):
        box = page.get_by_role("combobox", name=label, exact=True)
        box.scroll_into_view_if_needed(timeout=60_000)
        box.click()
        try:
            page.get_by_role("option").filter(has_text=option).first.click(timeout=10_000)
            return
        except Exception:
            if attempt == 2:
                raise


def test_diagnose_overlay_styles_in_the_browser_and_a_method_switch_sends_only_the_overlay(app_url, page, marked,
                                                                                           artifacts):
    files, s = marked
    sent: list[str] = []
    chunks: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(str(f)[:40])))
    page.on("request", lambda r: chunks.append(r.url) if "/medui/volume/" in r.url else None)
    open_reader(page, app_url, files)
    page.get_by_role("link", name="Diagnose").click()
    page.get_by_text("Study score = highest slice score").wait_for(timeout=300_000)
    page.get_by_test_id("reader-overlay-title").filter(has_text="Grad-CAM").first.wait_for(timeout=120_000)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=60_000)
    peak = page.get_by_test_id("reader-slice").first.inner_text()
    caption = page.get_by_text(" · score ").first.inner_text()
    assert caption.startswith(peak)  # the reader opens on the slider's slice (the peak)
    page.wait_for_timeout(1500)
    before, n_chunks = digest(page), len(chunks)
    sent.clear()
    page.get_by_test_id("reader-overlay-opacity").first.evaluate(
        "e => { e.value = '1'; e.dispatchEvent(new Event('input', { bubbles: true })) }")
    page.get_by_test_id("reader-overlay-colormap").first.select_option("hot")
    page.wait_for_timeout(1500)
    assert digest(page) != before, "opacity and colour map change the picture"
    assert not sent, f"an overlay style change reran the script: {sent}"
    # another method: one new overlay, the image is not sent again
    _choose(page, "Saliency on the image", "Grad-CAM++")
    page.get_by_test_id("reader-overlay-title").filter(has_text="Grad-CAM++").first.wait_for(timeout=120_000)
    assert len(chunks) == n_chunks, "the series was fetched again"
    # scrolling the reader moves the page's slice (debounced): the score caption follows
    stage = page.locator("[data-testid=reader] .stage").first
    stage.focus()
    stage.press("Home")
    page.get_by_text("slice 1/16 · z").filter(has_text="score").first.wait_for(timeout=60_000)
    assert slice_label(s, 0) in page.get_by_text(" · score ").first.inner_text()
    page.screenshot(path=str(artifacts / "reader-diagnose.png"), full_page=True)
    assert "Traceback" not in page.content()


def test_a_4k_radiograph_uses_the_same_reader(app_url, page, tmp_path):
    """A 4096 x 3072 16-bit PNG (no pixel size): one image, whole, read out in pixels."""
    import cv2

    ramp = (np.arange(4096)[None, :] * 7 + np.arange(3072)[:, None] * 3) % 60000
    img = ramp.astype(np.uint16)
    path = tmp_path / "cxr.png"
    cv2.imwrite(str(path), img)
    open_reader(page, app_url, [str(path)])
    assert status(page).startswith("Image · slice 1/1 · W ")
    assert not page.get_by_test_id("reader-note").count(), "a 4k image is sent whole"
    box = stage_box(page)
    ox, oy, w, h = image_box(page)
    assert w / h == pytest.approx(4096 / 3072, rel=0.01)  # square pixels: the stored aspect
    page.mouse.move(box["x"] + ox + w * 0.5, box["y"] + oy + h * 0.25)
    readout = page.get_by_test_id("reader-readout").first
    c, r, _ = (int(v) for v in readout.get_attribute("data-voxel").split(","))
    assert abs(c - 2048) <= 2 and abs(r - 768) <= 2
    assert float(readout.get_attribute("data-value")) == float(img[r, c])
    assert "pixel spacing unknown" in readout.inner_text()
