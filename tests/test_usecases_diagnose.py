"""The diagnose use cases on a hand-made 3-class model: score once, explain the predicted class."""

from __future__ import annotations

import numpy as np
import pytest

from medui.errors import MedUIError
from medui.series import Series
from medui.usecases import diagnose
from medui.usecases.diagnose import Style, load_model, overlay, saliency, score
from tests.synth import register_fixed_three_class

CLASSES = ["normal", "nodule", "effusion"]


@pytest.fixture(scope="module")
def three_class(tmp_path_factory):
    """A registered 3-class seed CNN whose logits make class 1 ('nodule') the prediction."""
    return load_model("three", register_fixed_three_class(tmp_path_factory.mktemp("three"), "three"))


def _series(n: int = 1) -> Series:
    rng = np.random.default_rng(0)
    return Series(pixels=rng.random((n, 40, 48)).astype(np.float32) * 100, affine=np.eye(4), modality="DX")


def test_multiclass_overlays_explain_the_predicted_class_not_the_last(three_class, monkeypatch):
    dx = score(_series(), three_class)
    assert dx.prediction.label == "nodule"
    assert dx.predicted_class == 1
    asked: list[int] = []
    real = three_class.explainer.explain
    monkeypatch.setattr(three_class.explainer, "explain", lambda m, x, c: asked.append(c) or real(m, x, c))
    result = overlay(dx, 0, "gradcam")
    assert asked == [1] and result.class_index == 1 and result.class_name == "nodule"
    picked = overlay(dx, 0, "gradcam", class_index=2)  # the user's choice wins
    assert asked == [1, 2] and picked.class_name == "effusion"
    assert result.rgb.shape == (40, 48, 3) and result.saliency.shape == (40, 48)
    assert result.png().startswith(b"\x89PNG")


def test_score_prepares_once_and_overlays_reuse_the_batch(three_class, monkeypatch):
    series = _series(3)
    calls = []
    real = three_class.predictor.prepare
    monkeypatch.setattr(three_class.predictor, "prepare", lambda *a, **k: calls.append(1) or real(*a, **k))
    dx = score(series, three_class)
    assert dx.batch.shape == (3, 32, 32, 3) and len(dx.geometries) == 3
    assert dx.prediction.slice_scores is not None and len(dx.prediction.slice_scores) == 3
    for index in range(3):
        overlay(dx, index, "gradcam", Style(opacity=0.8, colormap="viridis", contour=None))
    saliency(dx, 1, "smoothgrad")
    assert calls == [1]


def test_bad_requests_say_what_exists(three_class):
    dx = score(_series(), three_class)
    with pytest.raises(MedUIError, match="slice 5 does not exist"):
        overlay(dx, 4, "gradcam")
    with pytest.raises(MedUIError, match="choose one of"):
        overlay(dx, 0, "nope")
    with pytest.raises(MedUIError, match="class 7 does not exist.*normal, nodule, effusion"):
        overlay(dx, 0, "gradcam", class_index=7)
    with pytest.raises(MedUIError, match="colour map"):
        overlay(dx, 0, "gradcam", Style(colormap="rainbow"))


def test_usecases_have_no_saliency_map_or_explain_series_left():
    assert not hasattr(diagnose, "saliency_map") and not hasattr(diagnose, "explain_series")


def test_diagnose_page_picks_the_class_to_explain_for_a_multiclass_model(three_class, isolated):
    import shutil
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    for suffix in (".keras", ".json"):
        shutil.copy(three_class.entry.path.with_suffix(suffix), isolated["models"])
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "pages" / "diagnose.py"), default_timeout=180).run()
    at.button(key="viewer.sample-load").click().run()
    assert not at.exception
    assert at.selectbox(key="dx.model").value == "demo-chest-phantom-v1"  # the promoted default, not the newest
    at.selectbox(key="dx.model").set_value("three-v1").run()
    picker = next(s for s in at.selectbox if s.label == "Explain class")
    assert picker.value == 1 and "(predicted)" in picker.format_func(1)
    assert _overlay_captions(at) == ["Grad-CAM · nodule · slice 1/1"]
    picker.set_value(2).run()
    assert not at.exception
    assert _overlay_captions(at) == ["Grad-CAM · effusion · slice 1/1"]


def _overlay_captions(at) -> list[str]:
    return [c for image in at.get("image") for c in image.captions if "Grad-CAM" in c]
