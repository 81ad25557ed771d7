"""The clinical path in a real browser: one slice numbering from Viewer to Diagnose, a worse model
that stays a candidate until promoted with a recorded override, and a borderline result shown as
indeterminate."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.synth import phantom_volume, write_series

pytestmark = pytest.mark.browser

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-chest-covid-255"
STEPS = 4  # slices to move from slice 1


def _where(text: str, n_step: int) -> float:
    """The position in mm of 'slice N/TOTAL · z -31.8 mm' for slice N = n_step."""
    m = re.search(rf"slice {n_step}/\d+ · z (-?\d+(?:\.\d+)?) mm", text)
    assert m, f"no 'slice {n_step}/… · z … mm' in: {text[:300]}"
    return float(m.group(1))


PAGE_TEXT = "document.body.innerText"
READER_STATUS = "[data-testid=reader-status]"


def _reader_step_to(page, target: int, text_js: str) -> str:
    """Home, then ArrowDown in the reader until 'slice target/' shows in `text_js`; returns that text."""
    stage = page.locator("[data-testid=reader] .stage").first
    stage.focus()
    stage.press("Home")
    for _ in range(target - 1):
        stage.press("ArrowDown")
    page.wait_for_function("([f, t]) => (new Function('return ' + f))().includes(t)",
                           arg=[text_js, f"slice {target}/"], timeout=120_000)
    return str(page.evaluate(f"() => {text_js}"))


def test_the_same_slice_number_shows_the_same_z_in_viewer_and_diagnose(app_url, page, tmp_path, artifacts):
    if SHARED_CT.is_dir():  # the real 255-slice chest CT, where the two pages once disagreed
        files = sorted(str(p) for p in SHARED_CT.iterdir())
    else:  # a CT-like series stored in ascending z, as scanners write it
        vol = phantom_volume(20, rows=96, cols=96, seed=11)
        files = [str(p) for p in write_series(tmp_path / "ct", vol)]
    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(files)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=300_000)
    status = f"document.querySelector('.stBidiComponent [data-testid=stBidiComponentIsolated]').shadowRoot" \
             f".querySelector('{READER_STATUS}').innerText"
    viewer_text = _reader_step_to(page, 1 + STEPS, status)  # the reader's page text, as screen readers get it
    z_viewer = _where(viewer_text, 1 + STEPS)
    page.screenshot(path=str(artifacts / "e2e-clinical-viewer.png"), full_page=True)
    page.get_by_role("link", name="Diagnose").click()  # same session: the series is still loaded
    page.get_by_text("Study score = highest slice score").wait_for(timeout=300_000)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=300_000)
    # scrolled in Diagnose's reader; the caption Python writes for the slice it scores must agree
    dx_text = _reader_step_to(page, 1 + STEPS, PAGE_TEXT)
    z_diagnose = _where(dx_text.split("Study score")[-1], 1 + STEPS)
    page.screenshot(path=str(artifacts / "e2e-clinical-diagnose.png"), full_page=True)
    assert z_diagnose == pytest.approx(z_viewer, abs=0.05), (viewer_text, dx_text)
    assert "Traceback" not in page.content()


def _select(page, label: str, option: str) -> None:
    """Pick `option` (its visible text starts with it) in the Streamlit selectbox labelled `label`."""
    for attempt in range(3):  # a rerun that lands meanwhile closes the list: open it again
        box = page.get_by_role("combobox", name=label, exact=True)
        box.scroll_into_view_if_needed(timeout=60_000)
        box.locator("xpath=..").get_by_role("button", name="Open").click()
        try:
            page.get_by_role("option").filter(has_text=option).first.click(timeout=10_000)
            return
        except Exception:
            if attempt == 2:
                page.screenshot(path="/tmp/select-failed.png")
                raise


def _model_in_use(page, name: str = "") -> str:
    """The Diagnose page's 'Model in use: …' line (once it names `name`)."""
    js = ("n => { const m = document.body.innerText.split('\\n').find(l => l.includes('Model in use:'));"
          " return m && m.includes(n) ? m : null; }")
    return str(page.wait_for_function(js, arg=name, timeout=120_000).json_value())


def _load_sample(page) -> None:
    tab = page.get_by_role("tab", name="Try a sample")
    for attempt in range(2):  # a page whose websocket reconnected under load may come back blank: reload once
        try:
            tab.wait_for(timeout=90_000)
            break
        except Exception:
            page.screenshot(path=str(Path(tempfile.gettempdir()) / f"e2e-clinical-no-sample-tab-{attempt}.png"),
                            full_page=True)
            if attempt == 1:
                raise
            page.reload(wait_until="networkidle")
    tab.click()
    page.get_by_role("button", name="Load sample").click()


def _open(page, url: str, title: str) -> None:
    """Open a page by its address (not the sidebar link: a click that lands while the app reconnects
    under the training job's load is lost) and wait until its title shows."""
    page.goto(url, wait_until="networkidle")
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=120_000)


def test_a_worse_model_stays_a_candidate_until_promoted_with_a_recorded_override(medui_server, page, tmp_path,
                                                                                 artifacts):
    from medui.synthetic.phantoms import make_phantom, write_png

    url, registry = medui_server["url"], Path(medui_server["models"])
    # Labels that carry no signal (both classes hold lesion-free phantoms): whatever the fine-tuning
    # does, its held-out AUC interval includes 0.5, so the gate refuses it every time.
    root = tmp_path / "cxr"
    for k in range(40):
        label = ("normal", "lesion")[k % 2]
        write_png(make_phantom(4000 + k, 96, lesion=False), root / label / f"patient{k:04d}" / f"{k}.png")
    page.goto(url + "/train", wait_until="networkidle")
    page.get_by_text("1. Data").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(root))
    page.get_by_text("Classes:").wait_for(timeout=120_000)
    _select(page, "Start from", "Fine-tune demo-chest-phantom-v1")
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("New model name").fill("e2e-model")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("as a candidate").first.wait_for(timeout=300_000)
    page.screenshot(path=str(artifacts / "e2e-clinical-train.png"), full_page=True)
    card = json.loads((registry / "e2e-model-v1.json").read_text())
    assert card["parent"] == "demo-chest-phantom-v1"

    # Diagnose keeps the promoted model (the demo) although a newer model exists.
    _open(page, url + "/diagnose", "Diagnose")
    _load_sample(page)
    line = _model_in_use(page)
    assert "demo-chest-phantom" in line and "e2e-model" not in line

    # Promoting the worse model needs an override; the override is in the audit log.
    _open(page, url + "/models", "Models")
    _select(page, "Model card", "e2e-model-v1")
    page.get_by_text("Compare and promote").wait_for(timeout=60_000)
    page.get_by_role("button", name="Override and promote").click()
    page.get_by_text("Give the override reason first").wait_for(timeout=60_000)
    page.get_by_label(re.compile("Override reason")).fill("e2e: promoted on purpose to test the gate")
    page.get_by_role("button", name="Override and promote").click()
    page.get_by_text("Promoted e2e-model-v1").wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "e2e-clinical-models.png"), full_page=True)
    last = json.loads((registry / "audit.jsonl").read_text().splitlines()[-1])
    assert last["action"] == "override" and last["model"] == "e2e-model-v1" and last["via"] == "app"
    assert last["override"] == "e2e: promoted on purpose to test the gate" and last["findings"]

    # Diagnose now uses it, says so, and shows no candidate banner.
    _open(page, url + "/diagnose", "Diagnose")
    _load_sample(page)
    assert "e2e-model version 1" in _model_in_use(page, "e2e-model")
    assert page.get_by_text("not promoted for clinical use").count() == 0
    assert "Traceback" not in page.content()


def test_a_borderline_score_is_shown_as_indeterminate(medui_server, page, artifacts):
    registry = Path(medui_server["models"])
    card = json.loads((registry / "demo-chest-phantom-v1.json").read_text())
    card.update(name="borderline", indeterminate=[0.0, 1.0], demo=False)  # every score is borderline for it
    shutil.copy(registry / "demo-chest-phantom-v1.keras", registry / "borderline-v1.keras")
    (registry / "borderline-v1.json").write_text(json.dumps(card))
    page.goto(medui_server["url"] + "/diagnose", wait_until="networkidle")
    _load_sample(page)
    page.get_by_text("Model in use:").wait_for(timeout=120_000)
    _select(page, "Model", "borderline-v1")
    page.get_by_text("Indeterminate (leaning").wait_for(timeout=120_000)
    assert page.get_by_text("too close to the operating threshold").count() >= 1
    page.screenshot(path=str(artifacts / "e2e-clinical-indeterminate.png"), full_page=True)
