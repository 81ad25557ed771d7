"""The reader's side of the Viewer and Diagnose pages through AppTest: what the page sends the
browser (a small JSON, never pixels), the window remembered per series, the classic fallback."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from medui.ui import reader
from tests.synth import phantom_volume, write_series

ROOT = Path(__file__).resolve().parents[1]


def _viewer_with_series(tmp_path) -> AppTest:
    paths = write_series(tmp_path / "a", phantom_volume(6, rows=40, cols=40, seed=1))
    at = AppTest.from_file(str(ROOT / "pages" / "viewer.py"), default_timeout=120).run()
    at.file_uploader[0].set_value([(p.name, p.read_bytes(), "application/dicom") for p in paths]).run()
    assert not at.exception
    return at


def _reader_data(at: AppTest) -> dict:
    found = at.get("bidi_component")
    assert len(found) == 1, "one reader on the page"
    assert found[0].proto.component_name == "medui_reader"
    return dict(json.loads(found[0].proto.json))


def test_viewer_sends_a_small_description_and_no_pixels(tmp_path):
    at = _viewer_with_series(tmp_path)
    data = _reader_data(at)
    assert not at.get("plotly_chart"), "the server-rendered picture is not sent"
    vol = data["volume"]
    assert vol["shape"] == [6, 40, 40] and vol["dtype"] == "int16" and vol["url"].startswith("/medui/volume/")
    assert data["bundle"].startswith("/medui/reader/") and data["report"] == {"slice": False, "window": True}
    assert len(json.dumps(data)) < 20_000  # metadata only: the voxels go over HTTP
    assert vol["preset"] == "DICOM default" and [p["name"] for p in vol["presets"]][:2] == [
        "DICOM default", "Auto (5th–95th percentile of the body, above -500 HU)"]


def test_the_window_chosen_is_kept_for_the_series(tmp_path):
    at = _viewer_with_series(tmp_path)
    item = at.session_state["medui.series"][0]
    at.session_state[reader.window_key(item.id)] = {"preset": "Lung", "center": -600, "width": 1500,
                                                    "invert": False, "layout": "coronal"}
    at.run()
    assert _reader_data(at)["initial"]["preset"] == "Lung"


def test_classic_viewer_on_request_or_when_the_browser_cannot_hold_the_series(tmp_path, monkeypatch):
    at = _viewer_with_series(tmp_path)
    item = at.session_state["medui.series"][0]
    at.session_state[reader.failed_key(item.id)] = "The series does not fit in this browser tab (RangeError)."
    at.run()
    assert not at.get("bidi_component") and at.get("plotly_chart")
    assert "cannot show this series here" in at.warning[0].value
    monkeypatch.setenv("MEDUI_VIEWER", "classic")
    at = _viewer_with_series(tmp_path)
    assert not at.get("bidi_component") and at.get("plotly_chart")
