"""Viewer page through Streamlit's AppTest: upload, series choice, slider, preset, bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.synth import phantom_volume, write_series

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120


@pytest.fixture(autouse=True)
def classic_viewer(monkeypatch):
    """These tests read the server-rendered viewer (the fallback of the in-browser reader, which
    AppTest cannot run): tests/test_viewer_pages.py covers the reader's side of the page."""
    monkeypatch.setenv("MEDUI_VIEWER", "classic")


def _viewer() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "viewer.py"), default_timeout=TIMEOUT)
    return at.run()


def _image_spec(at: AppTest) -> dict:
    charts = [e for e in at.get("plotly_chart")]
    assert charts, "no image shown"
    return json.loads(charts[0].proto.spec)


def _upload(at: AppTest, paths, which: int = 0) -> AppTest:
    """Upload through the files (0) or folder (1) uploader; the page empties it once read."""
    at.file_uploader[which].set_value([(p.name, p.read_bytes(), "application/dicom") for p in paths])
    at.run()
    assert not at.file_uploader[which].value, "uploader should be emptied after reading"
    return at


@pytest.fixture()
def two_series(tmp_path):
    a = write_series(tmp_path / "a", phantom_volume(6, rows=40, cols=40, seed=1), name="a", description="first")
    b = write_series(tmp_path / "b", phantom_volume(3, rows=24, cols=24, seed=2), name="b", description="second")
    return a, b


def test_empty_page_invites_an_upload():
    at = _viewer()
    assert not at.exception
    assert "Upload DICOM" in at.info[0].value


def test_app_shell_shows_device_and_notice():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    side = " ".join(m.value for m in at.sidebar.markdown) + " ".join(c.value for c in at.sidebar.caption)
    assert "Compute device" in side and ("CPU" in side or "GPU" in side)
    assert "not a medical device" in at.sidebar.warning[0].value


def test_upload_choose_series_scroll_and_preset(two_series):
    a, b = two_series
    at = _upload(_viewer(), a + b)
    assert not at.exception
    choice = at.selectbox(key="viewer.series")
    assert len(choice.options) == 2
    first = _image_spec(at)["data"][0]["source"]
    # move the slice slider: the image changes
    slider = next(s for s in at.slider if s.label == "Slice")
    slider.set_value(1).run()
    assert _image_spec(at)["data"][0]["source"] != first
    # a preset changes the window sliders and the picture
    preset = next(s.key for s in at.selectbox if s.key.startswith("viewer.preset."))
    at.selectbox(key=preset).set_value("Lung").run()
    center = next(s for s in at.slider if s.label.startswith("Window level"))
    width = next(s for s in at.slider if s.label == "Window width")
    assert (center.value, width.value) == (-600.0, 1500.0)
    # the other series
    second = at.session_state["medui.series"][1]
    at.selectbox(key="viewer.series").set_value(second.id).run()
    assert not at.exception
    assert "3 x 24x24" in at.selectbox(key="viewer.series").format_func(second.id)
    assert "2/3" in _image_spec(at)["layout"]["title"]["text"]


def test_bad_file_among_good_ones_is_listed_and_data_kept(two_series, tmp_path):
    a, _ = two_series
    at = _upload(_viewer(), a)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"rubbish" * 30)
    at = _upload(at, [bad, a[0]], which=1)
    assert not at.exception
    problems = at.expander[0]
    assert "not loaded" in problems.label
    text = " ".join(m.value for m in problems.markdown)
    assert "broken.dcm" in text and "damaged" in text
    assert len(at.session_state["medui.series"]) >= 1  # the first upload is still there


def test_sample_button_and_header_masking():
    at = _viewer()
    at.button(key="viewer.sample-load").click().run()
    assert not at.exception
    assert len(at.session_state["medui.series"]) == 1
    table = at.dataframe[0].value
    row = table[table["attribute"] == "PatientName"]
    assert row["value"].iloc[0] == "•••"
    at.toggle(key=[t.key for t in at.toggle if t.key.startswith("viewer.reveal-")][0]).set_value(True).run()
    table = at.dataframe[0].value
    assert table[table["attribute"] == "PatientName"]["value"].iloc[0] != "•••"


def test_cleared_series_are_freed(two_series):
    """'Clear all' must leave nothing in the session that keeps its series alive (callback
    arguments, fragment arguments, the script module multiprocessing pins as __mp_main__): once
    the server's store drops them (after MEDUI_CACHE_IDLE_S unused), their pixels are freed."""
    import gc
    import time
    import weakref

    from medui.ui import resources

    at = _upload(_viewer(), two_series[0] + two_series[1])
    loaded = at.session_state["medui.series"]
    refs = [weakref.ref(item.series) for item in loaded]
    assert len(refs) == 2
    del loaded
    at.button(key="viewer.clear-all").click().run()
    at.run()
    assert resources.store().sweep(now=time.monotonic() + 10**6) >= 2
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_multiprocessing_alias_does_not_pin_a_script_run():
    """`import multiprocessing` inside a Streamlit script run aliases __mp_main__ to that run's
    module (and its globals); importing MedUI's UI points the alias at an empty module."""
    import subprocess
    import sys

    code = f"""
import sys, types
sys.path.insert(0, {str(ROOT)!r})
run = types.ModuleType("__main__"); run.__file__ = {str(ROOT / "pages" / "viewer.py")!r}
run.items = ["a session's series"]
sys.modules["__main__"] = run          # what Streamlit does while a script runs
import multiprocessing                 # first import: __mp_main__ = run
assert sys.modules["__mp_main__"] is run
import medui.ui.state
print(sys.modules["__mp_main__"] is run, hasattr(sys.modules["__mp_main__"], "items"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


LEGACY_CHANGED = (
    "Streamlit {version} changed its legacy 'pages/ folder' mechanism ({what}). medui/ui/shell.py "
    "(ensure_navigation) relies on PagesManager.uses_pages_directory to keep the top-level pages/ folder under "
    "st.navigation. Read the new streamlit/runtime/pages_manager.py and scriptrunner/script_runner.py: if Streamlit "
    "now offers a supported switch, use it; if the legacy mode is gone, delete the workaround; otherwise rename "
    "pages/ (e.g. app_pages/) as Streamlit advises."
)


def test_streamlit_legacy_pages_switch_is_where_the_shell_expects_it(tmp_path):
    """Fails loudly when a Streamlit upgrade changes the private mechanism medui/ui/shell.py works around."""
    import inspect

    import streamlit
    from streamlit.commands import navigation
    from streamlit.runtime import pages_manager
    from streamlit.runtime.scriptrunner import script_runner

    from medui.ui.shell import LEGACY_FLAG

    def check(ok: bool, what: str) -> None:
        assert ok, LEGACY_CHANGED.format(version=streamlit.__version__, what=what)

    manager = pages_manager.PagesManager
    check(hasattr(manager, LEGACY_FLAG), f"PagesManager.{LEGACY_FLAG} no longer exists")
    runner = inspect.getsource(script_runner)
    check(f"PagesManager.{LEGACY_FLAG}" in runner and "_mpa_v1(" in runner,
          f"the script runner no longer consults PagesManager.{LEGACY_FLAG} to run the legacy _mpa_v1()")
    check(f"PagesManager.{LEGACY_FLAG} = False" in inspect.getsource(navigation.navigation),
          f"st.navigation no longer sets PagesManager.{LEGACY_FLAG} = False")
    (tmp_path / "pages").mkdir()
    (tmp_path / "main.py").write_text("")
    saved = getattr(manager, LEGACY_FLAG)
    try:
        setattr(manager, LEGACY_FLAG, None)
        manager(str(tmp_path / "main.py"))
        check(getattr(manager, LEGACY_FLAG) is True, "a pages/ folder beside the main script no longer turns it on")
    finally:
        setattr(manager, LEGACY_FLAG, saved)


def test_app_leaves_the_legacy_pages_mode_and_runs_its_navigation():
    """app.py has pages/ beside it: its first run starts in the legacy mode, the shell leaves it, and
    app.py's navigation runs the default page (Viewer) with the sidebar."""
    from streamlit.runtime.pages_manager import PagesManager

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert PagesManager.uses_pages_directory is False
    assert at.title[0].value == "Viewer" and "Upload DICOM" in at.info[0].value
    assert "not a medical device" in at.sidebar.warning[0].value


# Emoji and pictographs (headless chromium has no emoji font: they show as boxes).
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F\u200D]")


def test_pages_and_ui_use_material_icons_not_emoji():
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "medui" / "ui").glob("*.py"))]
    found = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for ch in EMOJI.findall(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: U+{ord(ch):04X} in {line.strip()[:80]}")
    assert not found, "use :material/...: icons instead of emoji:\n" + "\n".join(found)


def test_png_without_spacing_is_measured_in_pixels_not_millimetres():
    """A PNG records no pixel size: the Viewer says so and gives sizes in pixels (caption and hover),
    never the placeholder '1.000 x 1.000 mm'."""
    import numpy as np

    from tests.synth import png_bytes

    at = _viewer()
    img = (np.arange(30 * 50).reshape(30, 50) % 251).astype(np.uint8)
    at.file_uploader[0].set_value([("xray.png", png_bytes(img), "image/png")]).run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Pixel spacing unknown" in captions and "50 x 30 px" in captions
    assert " mm" not in captions
    hover = _image_spec(at)["data"][1]["hovertemplate"]
    assert "px" in hover and "mm" not in hover
