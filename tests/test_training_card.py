"""The model card: frozen, validated (preprocessing modes, field types), and clear load errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from medui.ai.card import ModelCard, Preprocessing
from medui.errors import CardError


def _card(**kw) -> ModelCard:
    base = dict(name="m", version=1, class_names=["normal", "lesion"], input_size=[64, 64], channels=1,
                architecture="small_cnn", cam_layer="conv")
    return ModelCard(**{**base, **kw})


def test_card_is_frozen_and_changed_with_replace():
    card = _card()
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.threshold = 0.3  # type: ignore[misc]
    assert dataclasses.replace(card, threshold=0.3).threshold == 0.3 and card.threshold == 0.5


@pytest.mark.parametrize(("pre", "field", "value"), [
    ({"intensity": "zscore"}, "intensity", "zscore"),
    ({"resize": "crop"}, "resize", "crop"),
])
def test_unknown_preprocessing_modes_are_rejected(pre, field, value):
    data = _card().to_json()
    data["preprocessing"].update(pre)
    with pytest.raises(CardError) as err:
        ModelCard.from_json(data)
    text = str(err.value)
    assert f"preprocessing.{field}" in text and repr(value) in text
    assert ("percentile" in text and "window" in text) if field == "intensity" else "letterbox" in text


def test_window_mode_needs_a_window():
    data = _card().to_json()
    data["preprocessing"].update(intensity="window", window=None)
    with pytest.raises(CardError, match="window"):
        ModelCard.from_json(data)


@pytest.mark.parametrize(("change", "expected"), [
    ({"input_size": "big"}, "input_size"),
    ({"channels": "one"}, "channels"),
    ({"preprocessing": {"intensity": "percentile", "gamma": 2}}, "gamma"),
])
def test_load_reports_wrong_types_as_what_they_are(tmp_path, change, expected):
    path = tmp_path / "m-v1.json"
    path.write_text(json.dumps({**_card().to_json(), **change}))
    with pytest.raises(CardError) as err:
        ModelCard.load(path)
    assert expected in str(err.value) and "not valid JSON" not in str(err.value)
    path.write_text("{not json")
    with pytest.raises(CardError, match="not valid JSON"):
        ModelCard.load(path)


def test_round_trip():
    card = _card(preprocessing=Preprocessing("window", window=[40.0, 400.0]), metrics={"auc": 0.9})
    assert ModelCard.from_json(json.loads(json.dumps(card.to_json()))) == card


def test_the_shipped_demo_card_has_the_one_metrics_schema(isolated):
    from medui.ai.registry import find
    from medui.training.cards import METRIC_KEYS

    card = find("demo-chest-phantom", isolated["models"]).card
    assert set(card.metrics) == {*METRIC_KEYS, "split"}


def test_the_shipped_demo_card_has_an_indeterminate_band_around_its_threshold(isolated):
    from medui.ai.registry import find

    card = find("demo-chest-phantom", isolated["models"]).card
    low, high = card.indeterminate
    assert low <= card.threshold <= high < 1 and high > card.threshold


def test_card_for_run_stores_the_band_and_a_failed_calibration():
    from medui.training.cards import card_for_run

    ev = {"n": 4, "auc": 0.5, "classes": ["normal", "lesion"]}
    kw = dict(name="m", version=1, classes=["normal", "lesion"], evaluation=ev, split="test", threshold=0.6,
              threshold_method="Youden", temperature=20.0, training_data={}, training={})
    card = card_for_run(_card(limitations="Small data."), **kw, indeterminate=[0.55, 0.7],
                        calibration_warning="calibration failed: the fitted temperature is 20")
    assert card.indeterminate == [0.55, 0.7]
    assert card.metrics["calibration_warning"].startswith("calibration failed")
    assert card.limitations.startswith("EVALUATION FAILED: calibration failed") and "Small data." in card.limitations
    fine = card_for_run(_card(), **kw)
    assert fine.indeterminate is None and "calibration_warning" not in fine.metrics
    with pytest.raises(CardError, match="indeterminate"):
        card_for_run(_card(), **kw, indeterminate=[0.65, 0.7])  # the band must contain the threshold
