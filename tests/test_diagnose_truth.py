"""Diagnose says when it cannot tell: scores in the indeterminate band, and saliency maps that are empty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medui.ai.inference import is_indeterminate
from medui.reading.samples import SAMPLE_DIR
from medui.series import Series
from medui.usecases.diagnose import load_model, overlay, score
from tests.synth import register_fixed_three_class

ROOT = Path(__file__).resolve().parents[1]
NODULE = SAMPLE_DIR / "phantom_chest_nodule.dcm"
NORMAL = SAMPLE_DIR / "phantom_chest_normal.dcm"


def _band_on_demo(isolated, band: list[float]) -> None:
    """Give the test registry's demo card an indeterminate band."""
    path = isolated["models"] / "demo-chest-phantom-v1.json"
    card = json.loads(path.read_text())
    card["indeterminate"] = band
    path.write_text(json.dumps(card))


def test_indeterminate_follows_the_band_or_a_margin_that_rounds_to_zero():
    assert is_indeterminate(0.45, 0.01, (0.40, 0.50))
    assert not is_indeterminate(0.55, 0.11, (0.40, 0.50))
    assert is_indeterminate(0.4402, 0.0002, None)  # 'above by 0.000' is no answer
    assert not is_indeterminate(0.446, 0.006, None)


def test_a_score_inside_the_band_is_indeterminate_on_the_page_and_in_the_cli(isolated):
    _band_on_demo(isolated, [0.0, 1.0])
    at = AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=180).run()
    at.file_uploader[0].set_value([(NORMAL.name, NORMAL.read_bytes(), "application/dicom")])
    at.run()
    assert not at.exception
    assert any(s.value.startswith("Indeterminate (leaning ") for s in at.subheader)
    assert any("too close to the operating threshold" in w.value for w in at.warning)
    out = subprocess.run([sys.executable, "-m", "medui", "predict", str(NORMAL), "--model", "demo-chest-phantom",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    result = json.loads(out.stdout)["results"][0]
    assert result["indeterminate"] is True and result["indeterminate_band"] == [0.0, 1.0]


def test_a_clear_score_is_labelled_and_the_sentence_agrees_with_the_table(isolated):
    _band_on_demo(isolated, [0.93, 0.95])
    at = AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=180).run()
    at.file_uploader[0].set_value([(NODULE.name, NODULE.read_bytes(), "application/dicom")])
    at.run()
    assert not at.exception
    assert any(s.value == "lesion" for s in at.subheader)
    sentence = next(m.value for m in at.markdown if m.value.startswith("P(lesion)"))
    shown = sentence.split("**")[1]  # the score as the sentence shows it
    table = at.dataframe[0].value
    assert table.set_index("class").loc["lesion", "probability"] == shown


@pytest.fixture(scope="module")
def flat_model(tmp_path_factory):
    """A 3-class model whose logits ignore the image: every class's evidence is flat."""
    return register_fixed_three_class(tmp_path_factory.mktemp("flat"), "flat")


def test_an_empty_saliency_map_is_called_flat(flat_model):
    series = Series(pixels=np.random.default_rng(0).random((1, 40, 48)).astype(np.float32), affine=np.eye(4))
    dx = score(series, load_model("flat", flat_model))
    assert overlay(dx, 0, "gradcam").flat
    assert overlay(dx, 0, "gradcam", saliency_map=np.linspace(0, 1, 40 * 48).reshape(40, 48)).flat is False


def test_the_page_says_when_the_evidence_is_flat(flat_model, monkeypatch):
    monkeypatch.setenv("MEDUI_MODELS", str(flat_model))
    at = AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=180).run()
    at.file_uploader[0].set_value([(NORMAL.name, NORMAL.read_bytes(), "application/dicom")])
    at.run()
    assert not at.exception
    assert any("is flat on this image" in i.value for i in at.info)
