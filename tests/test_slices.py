"""One slice numbering everywhere: the Viewer's order of the native plane (`display_order`), with the
patient position in mm next to every slice number (Viewer, Diagnose, `python -m medui predict`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medui.io.loader import LoadResult, load
from medui.reading.display import display_order, plane_view, slice_label, slice_position_mm, slice_positions_mm
from tests.synth import phantom_volume, write_series

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHEST = SHARED / "ct-chest-covid-255"
N = 6


@pytest.fixture(autouse=True)
def classic_viewer(monkeypatch):
    """The Viewer's slice slider is the server-rendered viewer's (the in-browser reader's fallback,
    which AppTest can run); the reader's numbering is held to `slice_label` in tests/test_viewer_browser.py."""
    monkeypatch.setenv("MEDUI_VIEWER", "classic")


@pytest.fixture()
def ascending(tmp_path):
    """An axial CT whose native order (sorted along the normal) is ascending z: 50, 52.5, ... 62.5 mm;
    chest phantoms, a lesion on native slice 1 only (Viewer slice 5), so the scores tell slices apart."""
    from medui.synthetic.phantoms import make_phantom

    vol = np.stack([make_phantom(k, size=64, lesion=k == 1).image for k in range(N)]).astype(np.int16)
    paths = write_series(tmp_path / "axial", vol, name="ax")
    return paths, load([tmp_path / "axial"]).series[0]


def test_axial_display_order_runs_head_to_feet_and_matches_the_viewer(ascending):
    _, s = ascending
    order = display_order(s)
    assert order.tolist() == list(range(N - 1, -1, -1))  # slice 1 is the highest z
    assert slice_position_mm(s, 0) == pytest.approx(50 + (N - 1) * 2.5)
    assert slice_position_mm(s, N - 1) == pytest.approx(50.0)
    assert slice_positions_mm(s) == pytest.approx([50 + 2.5 * k for k in range(N - 1, -1, -1)])
    assert slice_label(s, 0) == f"slice 1/{N} · z {50 + (N - 1) * 2.5:.1f} mm"
    for d in range(N):
        view = plane_view(s, "axial", d)  # what the Viewer shows as slice d + 1
        assert np.array_equal(view.image, s.pixels[order[d]])
        assert view.fixed == pytest.approx(slice_position_mm(s, d))


def test_coronal_series_keeps_its_front_to_back_order(tmp_path):
    write_series(tmp_path, phantom_volume(4, rows=20, cols=24), row_cos=(1, 0, 0), col_cos=(0, 0, -1))
    s = load([tmp_path]).series[0]
    assert display_order(s).tolist() == [0, 1, 2, 3]  # native order already anterior to posterior
    for d in range(4):
        view = plane_view(s, "coronal", d)
        assert np.array_equal(view.image, s.pixels[d]) and view.fixed == pytest.approx(slice_position_mm(s, d))
    assert slice_label(s, 1).startswith("slice 2/4 · y ")


def test_short_stack_and_no_geometry_keep_file_order(tmp_path):
    write_series(tmp_path, phantom_volume(2, rows=20, cols=24))
    s = load([tmp_path]).series[0]
    assert display_order(s).tolist() == [0, 1]
    assert slice_position_mm(s, 1) == pytest.approx(52.5) and slice_label(s, 1).endswith("position 52.5 mm")
    s.has_geometry = False
    assert slice_position_mm(s, 0) is None and slice_label(s, 1) == "slice 2/2"


@pytest.mark.skipif(not CHEST.is_dir(), reason=f"real scans not present ({CHEST})")
def test_real_chest_ct_slice_one_is_the_shoulders():
    s = load([CHEST]).series[0]
    assert s.n_slices == 255
    assert slice_label(s, 0) == "slice 1/255 · z -31.8 mm"
    assert slice_label(s, 254) == "slice 255/255 · z -349.2 mm"
    assert plane_view(s, "axial", 0).fixed == pytest.approx(-31.75)


def _upload(at: AppTest, paths: list[Path]) -> AppTest:
    at.file_uploader[0].set_value([(p.name, p.read_bytes(), "application/dicom") for p in paths])
    return at.run()


def test_viewer_title_shows_the_slice_label(ascending):
    paths, s = ascending
    at = _upload(AppTest.from_file(str(ROOT / "pages" / "viewer.py"), default_timeout=120).run(), paths)
    assert not at.exception
    next(sl for sl in at.slider if sl.label == "Slice").set_value(1).run()
    title = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]
    assert f"Axial · {slice_label(s, 0)} ·" in title and "z 62.5 mm" in title


def _diagnose_with(paths: list[Path]) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=180).run()
    return _upload(at, paths)


def _slice_chart(at: AppTest) -> dict:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(c for c in charts if c["layout"].get("xaxis", {}).get("title", {}).get("text", "").startswith("slice"))


def _vline(chart: dict) -> float:
    return next(sh["x0"] for sh in chart["layout"]["shapes"] if sh.get("x0") == sh.get("x1"))


def test_diagnose_numbers_slices_like_the_viewer_and_the_cli(ascending):
    """Slice k is the same anatomy (the same z) on the Viewer, the Diagnose page and in `predict --json`."""
    import subprocess
    import sys

    from medui.usecases.diagnose import load_model, score

    paths, s = ascending
    native = score(s, load_model("demo-chest-phantom")).prediction.slice_scores
    assert native is not None
    in_display = [native[i] for i in display_order(s)]
    at = _diagnose_with(paths)
    assert not at.exception
    slider = next(sl for sl in at.slider if sl.label == "Slice")
    slider.set_value(1).run()
    captions = [c.value for c in at.caption]
    assert f"{slice_label(s, 0)} · score {in_display[0]:.3f}" in captions  # slice 1 = z 62.5 mm = native last
    chart = _slice_chart(at)
    assert chart["data"][0]["x"] == list(range(1, N + 1))
    assert chart["data"][0]["y"] == pytest.approx(in_display, abs=1e-6)
    assert chart["data"][0]["customdata"][0] == "slice 1/6 · z 62.5 mm" and _vline(chart) == 1
    peak = int(np.argmax(in_display))
    assert peak == N - 2 and in_display[peak] > 0.9 > max(in_display[:peak] + in_display[peak + 1:])
    assert any(f"highest slice score ({slice_label(s, peak)})" in c for c in captions)

    out = subprocess.run([sys.executable, "-m", "medui", "predict", str(paths[0].parent), "--model",
                          "demo-chest-phantom", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)["results"][0]
    assert result["slice_scores"] == pytest.approx(in_display, abs=1e-5)
    assert result["slice_positions_mm"] == pytest.approx([62.5, 60.0, 57.5, 55.0, 52.5, 50.0])
    assert result["peak_slice"] == peak and result["peak_slice_label"] == slice_label(s, peak)
    assert result["slice_axis"] == "z"


def _click_chart(at: AppTest, x: int) -> AppTest:
    """What the browser sends when a point of the score chart is clicked: the chart's selection state."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    key = "dx.slices." + at.session_state["medui.series"][0].id
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(key))
    states = at._tree.get_widget_states()
    point = {"x": x, "y": 0.5, "curve_number": 0, "point_number": x - 1, "point_index": x - 1}
    selection = {"selection": {"points": [point], "point_indices": [x - 1], "box": [], "lasso": []}}
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps(selection)))
    return at._run(states)


def _slice_shown(at: AppTest) -> tuple[int, float, str]:
    """(slider value, chart marker x, slice caption) on the Diagnose page."""
    slider = next(sl for sl in at.slider if sl.label == "Slice").value
    caption = next(c.value for c in at.caption if c.value.startswith("slice "))
    return slider, _vline(_slice_chart(at)), caption


def test_slider_and_chart_stay_in_step_across_clicks_and_a_model_switch(ascending, isolated):
    """The slider is the one current slice: chart clicks move it (every click, also one on a point
    clicked before), a model switch keeps it, and the chart's marker always follows it."""
    import shutil

    card = json.loads((isolated["models"] / "demo-chest-phantom-v1.json").read_text())
    card.update(version=2, created="2026-11-25T00:00:00+00:00")
    (isolated["models"] / "demo-chest-phantom-v2.json").write_text(json.dumps(card))
    shutil.copy(isolated["models"] / "demo-chest-phantom-v1.keras", isolated["models"] / "demo-chest-phantom-v2.keras")
    paths, s = ascending
    at = _diagnose_with(paths)
    assert not at.exception and at.selectbox(key="dx.model").value == "demo-chest-phantom-v2"
    assert _slice_shown(at)[:2] == (5, 5) and _slice_shown(at)[2].startswith(slice_label(s, 4))  # the peak
    at = _click_chart(at, 3)
    assert _slice_shown(at)[:2] == (3, 3) and _slice_shown(at)[2].startswith(slice_label(s, 2))
    next(sl for sl in at.slider if sl.label == "Slice").set_value(6).run()
    assert _slice_shown(at)[:2] == (6, 6)
    at.selectbox(key="dx.model").set_value("demo-chest-phantom-v1").run()
    assert not at.exception
    assert _slice_shown(at)[:2] == (6, 6) and _slice_shown(at)[2].startswith(slice_label(s, 5))
    at = _click_chart(at, 3)  # the same point as before the switch: it must move the slider again
    assert not at.exception
    assert _slice_shown(at)[:2] == (3, 3) and _slice_shown(at)[2].startswith(slice_label(s, 2))
    at.selectbox(key="dx.model").set_value("demo-chest-phantom-v2").run()
    assert _slice_shown(at)[:2] == (3, 3)


def _head_ct(folder: Path, gaps: list[float]) -> list[str]:
    """An axial series whose slices are `gaps` mm apart going up (native order, ascending z)."""
    z = np.concatenate([[0.0], np.cumsum(gaps)])
    write_series(folder, phantom_volume(len(z), rows=16, cols=16), positions=[(-100.0, -120.0, v) for v in z])
    return load([folder]).series[0].warnings


def test_stepped_spacing_is_reported_in_steps_in_the_viewer_numbering(tmp_path):
    """A GE head CT: 13 gaps of 4 mm then 13 of 7 mm, the 4 mm section at the top (the Viewer's slice 1)."""
    warnings = _head_ct(tmp_path / "ge", [7.0] * 13 + [4.0] * 13)
    assert not any("missing" in w for w in warnings), warnings
    stepped = [w for w in warnings if w.startswith("variable slice spacing: 4 mm for slices 1–14, 7 mm after;")]
    assert len(stepped) == 1, warnings
    assert "mean step of 5.50 mm" in stepped[0] and "up to 19.5 mm" in stepped[0]
    more = _head_ct(tmp_path / "more", [7.0] * 12 + [4.0] * 14)  # 4 mm the usual step: not 12 missing slices
    assert not any("missing" in w for w in more) and any("4 mm for slices 1–15, 7 mm after;" in w for w in more)
    # stored the other way up, the numbering still starts at the top of the head
    up = _head_ct(tmp_path / "up", [4.0] * 13 + [7.0] * 13)
    assert any(w.startswith("variable slice spacing: 7 mm for slices 1–14, 4 mm after;") for w in up), up


def test_a_missing_slice_in_a_regular_series_is_still_missing(tmp_path):
    # a slice absent 7.5 mm above the bottom: between the Viewer's slices 7 and 8 of 10 (head first)
    warnings = _head_ct(tmp_path, [2.5] * 2 + [5.0] + [2.5] * 6)
    assert [w for w in warnings if "variable" in w] == []
    assert any(w.startswith("missing slice(s): a gap of 5.00 mm between slices 7 and 8 where 2.50 mm is usual")
               for w in warnings), warnings
    two = _head_ct(tmp_path / "two", [3.0] * 5 + [6.0] + [3.0] * 3 + [9.0] + [3.0] * 5)
    assert [w for w in two if "variable" in w] == [] and len([w for w in two if "missing" in w]) == 2, two


@pytest.mark.skipif(not CHEST.is_dir(), reason=f"real scans not present ({CHEST})")
def test_real_chest_ct_slice_one_is_the_same_level_on_both_pages_and_in_predict():
    """The 255-slice chest CT: slice 1 is z -31.8 mm (the shoulders) on the Viewer, the Diagnose page
    and in `predict --json`; the chart and the JSON give the same score for it."""
    import subprocess
    import sys

    from medui.ui import resources
    from medui.ui.state import Loaded

    s = load([CHEST]).series[0]
    key = resources.store().add("real-chest", LoadResult([s])).keys[0]
    label = "slice 1/255 · z -31.8 mm"
    viewer = AppTest.from_file(str(ROOT / "pages" / "viewer.py"), default_timeout=180)
    viewer.session_state["medui.series"] = [Loaded(key)]
    viewer.run()
    next(sl for sl in viewer.slider if sl.label == "Slice").set_value(1).run()
    assert label in json.loads(viewer.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]
    dx = AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=300)
    dx.session_state["medui.series"] = [Loaded(key)]
    dx.run()
    next(sl for sl in dx.slider if sl.label == "Slice").set_value(1).run()
    assert not dx.exception
    assert any(c.value.startswith(label + " · score") for c in dx.caption)
    chart = _slice_chart(dx)
    assert chart["data"][0]["customdata"][0] == label
    out = subprocess.run([sys.executable, "-m", "medui", "predict", str(CHEST), "--model", "demo-chest-phantom",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    result = json.loads(out.stdout)["results"][0]
    assert result["slice_positions_mm"][0] == pytest.approx(-31.75)
    assert result["slice_positions_mm"][-1] == pytest.approx(-349.25)
    assert result["slice_scores"] == pytest.approx(chart["data"][0]["y"], abs=1e-5)
