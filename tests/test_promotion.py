"""The promotion gate: new models are candidates, the promoted model per task is the default, the
gate refuses unevaluated / chance-level / worse-than-parent models unless overridden, and every
decision is in the audit log."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from medui.ai import audit, promotion
from medui.ai.card import ModelCard
from medui.ai.registry import list_models
from medui.errors import PromotionRefusedError, RegistryStateError

DEMO = "demo-chest-phantom-v1"
GOOD = {"auc": 0.91, "auc_ci": [0.87, 0.94], "sensitivity": 0.9, "specificity": 0.8, "n": 300,
        "split": "test: 300 images"}


def add(root: Path, name: str, version: int = 1, metrics: dict | None = None,
        created: str = "2026-12-01T00:00:00+00:00", **kw) -> str:
    """A registry entry without loading Keras: the card and a placeholder .keras file are enough to list it."""
    card = ModelCard(name=name, version=version, class_names=kw.pop("class_names", ["normal", "lesion"]),
                     input_size=[64, 64], channels=3, architecture="seed_cnn", cam_layer="conv",
                     metrics=GOOD if metrics is None else metrics, created=created, **kw)
    card.save(root / f"{card.id}.json")
    (root / f"{card.id}.keras").write_bytes(b"placeholder")
    return card.id


def status(root: Path) -> dict[str, str]:
    return {s.entry.id: s.label for s in promotion.statuses(list_models(root), root)}


def test_task_is_the_ordered_class_names():
    card = ModelCard(name="x", version=1, class_names=["normal", "pneumonia"], input_size=[8, 8], channels=1,
                     architecture="a", cam_layer="c")
    assert promotion.task_of(card) == "normal vs pneumonia"
    assert promotion.task_of(dataclasses.replace(card, class_names=["pneumonia", "normal"])) != "normal vs pneumonia"


def test_a_new_model_is_a_candidate_and_the_demo_stays_the_default(isolated):
    root = isolated["models"]
    add(root, "newer", created="2099-01-01T00:00:00+00:00")  # newest, evaluated, same task as the demo
    assert status(root) == {"newer-v1": "candidate", DEMO: "promoted (demo)"}
    assert promotion.default(promotion.statuses(list_models(root), root)).entry.id == DEMO
    assert promotion.promoted_map(promotion.statuses(list_models(root), root)) == {"normal vs lesion": DEMO}


def test_a_promoted_model_replaces_the_demo_as_default(isolated):
    root = isolated["models"]
    add(root, "good")
    done = promotion.promote("good", root, user="alice")
    assert done.previous == DEMO and done.override is None and not promotion.blocking(done.findings)
    assert status(root) == {"good-v1": "promoted", DEMO: "candidate"}
    assert promotion.default(promotion.statuses(list_models(root), root)).entry.id == "good-v1"
    doc = json.loads((root / "promotions.json").read_text())
    assert doc["format"] == 1 and doc["promoted"]["normal vs lesion"]["model"] == "good-v1"
    record = audit.read(root)[-1]
    assert record["action"] == "promote" and record["model"] == "good-v1" and record["previous"] == DEMO
    assert record["user"] == "alice" and record["task"] == "normal vs lesion" and record["time"]


@pytest.mark.parametrize("metrics,parent_metrics,code", [
    ({}, None, "auc-missing"),
    ({"auc": 0.444, "auc_ci": [0.225, 0.643], "split": "test"}, None, "ci-includes-chance"),
    ({"auc": 0.8}, None, "ci-missing"),
    ({**GOOD, "auc": 0.85, "auc_ci": [0.8, 0.9]}, GOOD, "below-parent"),
    ({**GOOD, "calibration_warning": "the fitted temperature 20.0 flattens every score"}, None, "evaluation-failed"),
])
def test_the_gate_refuses_and_an_override_is_recorded(isolated, metrics, parent_metrics, code):
    root = isolated["models"]
    parent = add(root, "base", metrics=parent_metrics) if parent_metrics else None
    add(root, "cand", metrics=metrics, parent=parent)
    with pytest.raises(PromotionRefusedError, match="was not promoted") as refused:
        promotion.promote("cand-v1", root)
    assert "override" in str(refused.value)
    assert status(root)["cand-v1"] == "candidate"
    log = audit.read(root)
    assert log[-1]["action"] == "promote-refused" and code in [f["code"] for f in log[-1]["findings"]]
    with pytest.raises(PromotionRefusedError):
        promotion.promote("cand-v1", root, override="   ")  # a blank reason is no reason
    done = promotion.promote("cand-v1", root, override="pilot on site A, reviewed by the ML lead", user="bob")
    assert done.override and code in [f.code for f in done.findings]
    assert status(root)["cand-v1"] == "promoted"
    last = audit.read(root)[-1]
    assert last["action"] == "override" and last["override"] == "pilot on site A, reviewed by the ML lead"
    assert code in [f["code"] for f in last["findings"]] and last["user"] == "bob"
    assert json.loads((root / "promotions.json").read_text())["promoted"]["normal vs lesion"]["override"]


def test_parent_compared_on_other_data_is_a_note_not_a_refusal(isolated):
    root = isolated["models"]
    base = add(root, "base", metrics={**GOOD, "auc": 0.8, "split": "site A test"})
    add(root, "child", parent=base)
    findings = promotion.gate(next(e for e in list_models(root) if e.id == "child-v1"), list_models(root))
    assert [f.code for f in findings] == ["other-data"] and not promotion.blocking(findings)


def test_tasks_are_promoted_independently_and_concurrently(isolated):
    root = isolated["models"]
    names = [add(root, f"m{k}", class_names=["normal", f"finding{k}"]) for k in range(6)]
    threads = [threading.Thread(target=promotion.promote, args=(n, root)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    promoted = promotion.read_promotions(root)
    assert {rec["model"] for rec in promoted.values()} == set(names)  # no write lost
    assert len(audit.read(root)) == 6 and not list(root.glob(".promotions.json.*"))
    assert status(root)[DEMO] == "promoted (demo)"  # its own task is untouched


def test_withdrawn_or_missing_promoted_model_falls_back_to_the_demo(isolated):
    root = isolated["models"]
    add(root, "good")
    promotion.promote("good", root)
    assert promotion.withdraw("good-v1", root, action="delete")
    assert status(root) == {"good-v1": "candidate", DEMO: "promoted (demo)"}
    assert audit.read(root)[-1]["action"] == "delete"
    promotion.promote("good", root)
    for suffix in (".keras", ".json"):
        (root / f"good-v1{suffix}").unlink()
    assert status(root) == {DEMO: "promoted (demo)"}


def test_without_any_promoted_model_the_default_is_the_newest_candidate(isolated):
    root = isolated["models"]
    for f in root.iterdir():
        f.unlink()
    add(root, "old", created="2026-01-01T00:00:00+00:00")
    add(root, "new", created="2026-06-01T00:00:00+00:00")
    chosen = promotion.default(promotion.statuses(list_models(root), root))
    assert chosen.entry.id == "new-v1" and not chosen.promoted


def test_a_broken_promotions_file_is_an_error_not_a_silent_default(isolated):
    root = isolated["models"]
    (root / "promotions.json").write_text("{")
    with pytest.raises(RegistryStateError, match="promotions.json cannot be read"):
        promotion.statuses(list_models(root), root)
