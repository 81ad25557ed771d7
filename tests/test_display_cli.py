"""Display maths (window, LUT, planes), the CLI and the architecture rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medui.io.loader import load
from medui.reading.display import (
    apply_window,
    auto_window,
    default_window,
    native_plane,
    plane_count,
    plane_view,
    render,
    shows_inverted,
    thumbnail,
)
from medui.series import Window
from tests.synth import phantom_volume, write_series

ROOT = Path(__file__).resolve().parents[1]


def test_linear_window_follows_dicom_formula():
    x = np.array([[-1000.0, -160.0, 40.0, 239.0, 240.0, 3000.0]], np.float32)
    u8 = apply_window(x, Window(40, 400))
    assert u8[0, 0] == 0 and u8[0, -1] == 255
    assert u8[0, 2] == 128 or u8[0, 2] == 127  # centre maps to mid-grey
    assert np.all(np.diff(u8[0].astype(int)) >= 0)
    assert np.array_equal(apply_window(x, Window(40, 400), invert=True), 255 - u8)


def test_auto_window_and_defaults(tmp_path):
    rng = np.random.default_rng(0)
    w = auto_window(rng.normal(500, 50, (1, 100, 100)).astype(np.float32))
    assert 350 < w.low < 450 and 550 < w.high < 650
    write_series(tmp_path, phantom_volume(3))
    s = load([tmp_path]).series[0]
    assert default_window(s) == Window(40, 400)  # the file's own window


def test_monochrome1_starts_inverted(tmp_path):
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    s = load([tmp_path / "m1.dcm"]).series[0]
    assert shows_inverted(s)


def test_voi_lut_rendering():
    s = load([get_testdata_file("vlut_04.dcm")]).series[0]
    view = plane_view(s, "native", 0)
    u8 = render(s, view, Window(0, 1), False, use_voi_lut=True)
    assert u8.dtype == np.uint8 and u8.max() > u8.min()


def test_planes_have_physical_spacing_and_radiological_orientation(tmp_path):
    vol = phantom_volume(10, rows=20, cols=30)
    write_series(tmp_path, vol, slice_step=2.5)  # axial, slices ascending toward S
    s = load([tmp_path]).series[0]
    assert native_plane(s) == "axial"
    assert plane_count(s, "axial") == 10 and plane_count(s, "coronal") == 20 and plane_count(s, "sagittal") == 30
    ax = plane_view(s, "axial", 0)
    # canonical axis 0 grows toward I: axial index 0 is the most superior slice
    np.testing.assert_array_equal(ax.image, vol[-1] - 1024)
    cor = plane_view(s, "coronal", 5)
    assert cor.image.shape == (10, 30)
    assert cor.row_spacing == pytest.approx(2.5) and cor.col_spacing == pytest.approx(0.8)
    np.testing.assert_array_equal(cor.image[0], vol[-1, 5] - 1024)  # top row = superior
    assert cor.vertical_up and cor.y[0] > cor.y[-1]
    sag = plane_view(s, "sagittal", 3)
    assert sag.image.shape == (10, 20) and sag.col_spacing == pytest.approx(0.7)
    assert thumbnail(s).dtype == np.uint8


def test_figure_is_small_and_fast_to_build(tmp_path):
    from medui.ui.figures import slice_figure

    write_series(tmp_path, phantom_volume(3, rows=64, cols=64))
    s = load([tmp_path]).series[0]
    view = plane_view(s, "axial", 1)
    fig = slice_figure(view, render(s, view, Window(40, 400), False), "HU")
    spec = fig.to_plotly_json()
    assert spec["data"][0]["type"] == "image" and spec["data"][0]["source"].startswith("data:image/png;base64,")
    assert "HU" in spec["data"][1]["hovertemplate"]


def test_cli_info_json(tmp_path):
    write_series(tmp_path / "ser", phantom_volume(4))
    (tmp_path / "ser" / "junk.txt").write_text("x")
    out = subprocess.run([sys.executable, "-m", "medui", "info", str(tmp_path / "ser"), "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    doc = json.loads(out.stdout)
    series = doc["series"][0]
    for key in ("modality", "shape", "spacing", "affine", "value_range", "photometric", "description", "files",
                "warnings"):
        assert key in series
    assert series["shape"] == [4, 32, 40] and series["modality"] == "CT" and len(series["files"]) == 4
    assert doc["skipped"][0]["file"].endswith("junk.txt")
    text = subprocess.run([sys.executable, "-m", "medui", "info", str(tmp_path / "ser")],
                          capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "Series 1: CT" in text and "Skipped 1 file" in text
    help_text = subprocess.run([sys.executable, "-m", "medui", "--help"], capture_output=True, text=True,
                               cwd=ROOT).stdout
    assert "info" in help_text



def _chest_like(n: int = 8, size: int = 96) -> np.ndarray:
    """HU of a CT that is mostly air: a body ellipse (soft tissue, fat rim, a bone), lungs, a table."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - 44) / 30) ** 2 + ((xx - 48) / 40) ** 2 < 1
    inner = ((yy - 44) / 26) ** 2 + ((xx - 48) / 36) ** 2 < 1
    lungs = (((yy - 42) / 14) ** 2 + ((np.abs(xx - 48) - 16) / 10) ** 2) < 1
    img = np.full((size, size), -1000.0)
    img[body] = -100.0  # fat
    img[inner] = 40.0  # soft tissue
    img[lungs] = -850.0
    img[(yy - 60) ** 2 + (xx - 48) ** 2 < 16] = 700.0  # a vertebra
    img[88:91, 4:92] = 300.0  # the table
    vol = np.repeat(img[None], n, axis=0) + rng.normal(0, 15, (n, size, size))
    return vol.astype(np.float32)


def test_ct_auto_window_looks_at_the_body_not_the_air():
    from medui.reading.display import series_auto_window
    from medui.series import Series

    vol = _chest_like()
    assert np.mean(vol < -500) > 0.5  # mostly air and lung
    ct = Series(pixels=vol, affine=np.eye(4), modality="CT")
    w = series_auto_window(ct)
    assert -50 < w.center < 200 and w.width < 600 and w.low > -300, w  # soft tissue, no air
    assert auto_window(vol).low < -900  # percentiles over everything: dominated by air
    mr = Series(pixels=vol + 1000, affine=np.eye(4), modality="MR")  # not CT: all values, as before
    assert series_auto_window(mr) == auto_window(mr.pixels)


def test_viewer_auto_preset_on_ct_uses_the_body(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEDUI_VIEWER", "classic")  # the server-rendered viewer's widgets (the reader's: in the browser)

    from medui.ui.viewer import AUTO_CT

    paths = write_series(tmp_path, np.rint(_chest_like() + 1024).astype(np.int16))  # stored = HU + 1024
    at = AppTest.from_file(str(ROOT / "pages" / "viewer.py"), default_timeout=120).run()
    at.file_uploader[0].set_value([(p.name, p.read_bytes(), "application/dicom") for p in paths]).run()
    preset = next(s.key for s in at.selectbox if s.key.startswith("viewer.preset."))
    at.selectbox(key=preset).set_value(AUTO_CT).run()
    assert not at.exception
    center = next(s for s in at.slider if s.label.startswith("Window level")).value
    width = next(s for s in at.slider if s.label == "Window width").value
    assert -50 < center < 200 and width < 600 and center - width / 2 > -300, (center, width)


def test_cli_info_gives_the_viewer_numbering_and_unknown_spacing(tmp_path):
    from tests.synth import png_bytes

    write_series(tmp_path / "ser", phantom_volume(4))  # axial, ascending z from 50 mm
    (tmp_path / "xray.png").write_bytes(png_bytes(np.zeros((30, 50), np.uint8)))
    doc = json.loads(subprocess.run([sys.executable, "-m", "medui", "info", str(tmp_path / "ser"), "--json"],
                                    capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    series = doc["series"][0]
    assert series["display_order"] == [3, 2, 1, 0] and series["slice_axis"] == "z"
    assert series["slice_positions_mm"] == pytest.approx([57.5, 55.0, 52.5, 50.0])
    text = subprocess.run([sys.executable, "-m", "medui", "info", str(tmp_path / "ser"), str(tmp_path / "xray.png")],
                          capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "slice 1/4 · z 57.5 mm .. slice 4/4 · z 50.0 mm" in text
    png = text[text.index("Series 2"):]
    assert "spacing:      unknown (not recorded): sizes are in pixels" in png and "1 x 1 x 1 mm" not in png


def test_a_png_is_described_in_pixels_everywhere(tmp_path):
    import cv2

    from medui.io.loader import load

    path = tmp_path / "cxr.png"
    cv2.imwrite(str(path), np.zeros((30, 50), np.uint8))
    s = load([path]).series[0]
    assert not s.pixel_spacing_known
    assert s.summary().endswith("30x50 px · pixel spacing unknown") and "mm" not in s.summary()
