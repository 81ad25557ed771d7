"""Promotion through the use cases and the command line: registration makes a candidate, `promote`
(refused with the gate's findings, or overridden), `models --json` (status and the promoted map),
`predict` without --model (the promoted default), deletion of a promoted model, the comparison."""

from __future__ import annotations

import dataclasses
import json

import pytest

from medui.ai import audit
from medui.ai.architectures import build
from medui.ai.registry import find
from medui.cli import main
from medui.errors import MedUIError, PromotionRefusedError
from medui.reading.samples import SAMPLE_DIR
from medui.usecases import models as usecase
from medui.usecases.models import CardFields, register_upload

DEMO = "demo-chest-phantom-v1"
NODULE = SAMPLE_DIR / "phantom_chest_nodule.dcm"
GOOD = {"auc": 0.93, "auc_ci": [0.9, 0.96], "sensitivity": 0.88, "specificity": 0.9, "n": 400,
        "split": "test: 400 synthetic phantoms (seeds 200000..)"}


@pytest.fixture(scope="module")
def keras_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("m") / "m.keras"
    build("seed_cnn").model.save(path)
    return path.read_bytes()


def _register(keras_bytes: bytes, name: str, metrics: dict, parent: str | None = None) -> str:
    demo = find(DEMO).card
    card = dataclasses.replace(demo, name=name, version=1, input_size=[64, 64], channels=3, architecture="seed_cnn",
                               cam_layer="conv", metrics=metrics, demo=False, parent=parent,
                               created="2099-01-01T00:00:00+00:00")
    return register_upload(keras_bytes, f"{name}.keras", json.dumps(card.to_json()).encode(), "card.json").id


def _labels() -> dict[str, str]:
    return {s.entry.id: s.label for s in usecase.status()}


def test_an_upload_is_a_candidate_with_its_size_read_from_the_model(keras_bytes):
    fields = CardFields(name="up", class_names=("normal", "lesion"), cam_layer="conv", threshold=0.5)
    entry = register_upload(keras_bytes, "mine.keras", fields)
    assert entry.card.input_size == [64, 64] and entry.card.channels == 3
    assert _labels() == {"up-v1": "candidate", DEMO: "promoted (demo)"}
    assert usecase.default_model().entry.id == DEMO
    state = next(s for s in usecase.status() if s.entry.id == "up-v1")
    assert "Candidate model — not promoted" in usecase.model_warning(state)
    assert "never evaluated" in usecase.model_warning(state)
    assert usecase.model_warning(next(s for s in usecase.status() if s.entry.card.demo)) is None


def test_inspect_upload_reads_the_model_and_names_the_users_file(keras_bytes):
    shape = usecase.inspect_upload(keras_bytes, "chest.keras")
    assert shape.input_size == (64, 64) and shape.channels == 3 and shape.outputs == 1
    assert shape.cam_layers[0] == "conv"
    with pytest.raises(MedUIError, match="^chest.keras is not a Keras model file") as bad:
        usecase.inspect_upload(b"PK\x03\x04 junk", "chest.keras")
    assert "upload.keras" not in str(bad.value) and "/tmp" not in str(bad.value)


def test_compare_puts_a_candidate_beside_the_promoted_model_and_its_parent(keras_bytes):
    base = _register(keras_bytes, "base", GOOD)
    usecase.promote(base)
    child = _register(keras_bytes, "child", {**GOOD, "auc": 0.9, "auc_ci": [0.86, 0.93]}, parent=base)
    other = _register(keras_bytes, "other", {**GOOD, "auc": 0.95, "auc_ci": [0.92, 0.97]})
    cmp = usecase.compare(child)
    assert [s.entry.id for s in cmp.columns] == [child, base]  # the promoted model is its parent: shown once
    assert cmp.same_data and [f.code for f in cmp.findings] == ["below-parent"]
    rows = {r["metric"]: r for r in cmp.rows()}
    assert rows["AUC (95% CI)"][f"{child}: this model, candidate"] == "0.900 (0.860-0.930)"
    assert rows["specificity"][f"{base}: parent, promoted"] == "0.900"
    assert [s.entry.id for s in usecase.compare(other).columns] == [other, base]


def test_deleting_a_promoted_model_withdraws_it_and_the_demo_takes_over(keras_bytes):
    good = _register(keras_bytes, "good", GOOD)
    usecase.promote(good, user="carol", via="app")
    assert usecase.default_model().entry.id == good
    usecase.delete(good, user="carol", via="app")
    assert usecase.default_model().entry.id == DEMO
    assert [r["action"] for r in audit.read(find(DEMO).path.parent)] == ["promote", "delete"]


def test_cli_promote_refuses_with_findings_then_overrides(keras_bytes, capsys):
    bad = _register(keras_bytes, "mnv2", {"auc": 0.444, "auc_ci": [0.225, 0.643], "specificity": 0.0,
                                          "split": "test"})
    assert main(["promote", bad]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "includes 0.5" in err and "override" in err
    assert _labels()[bad] == "candidate"
    assert main(["promote", bad, "--override", "research comparison only"]) == 0
    out = capsys.readouterr().out
    assert f"promoted {bad}" in out and "override" in out and "overridden:" in out
    assert main(["promote", "absent"]) == 2 and "no model named" in capsys.readouterr().err
    assert [r["action"] for r in audit.read(find(DEMO).path.parent)] == ["promote-refused", "override"]


def test_cli_models_json_says_what_is_promoted_per_task(keras_bytes, capsys):
    cand = _register(keras_bytes, "cand", GOOD)
    assert main(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["promoted"] == {"normal vs lesion": DEMO}
    by_id = {m["id"]: m for m in doc["models"]}
    assert by_id[cand]["status"] == "candidate" and by_id[DEMO]["status"] == "promoted"
    assert by_id[cand]["task"] == "normal vs lesion" and by_id[cand]["evaluated"] is True
    assert main(["promote", cand]) == 0
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["promoted"] == {"normal vs lesion": cand}


def test_cli_predict_uses_the_promoted_model_and_warns_for_a_candidate(keras_bytes, capsys):
    cand = _register(keras_bytes, "cand", GOOD)  # newer than the demo, but only a candidate
    assert main(["predict", str(NODULE), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"]["id"] == DEMO and doc["model"]["status"] == "promoted" and "warning" not in doc["model"]
    assert main(["predict", str(NODULE), "--model", cand, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"]["id"] == cand and doc["model"]["status"] == "candidate"
    assert doc["results"][0]["warnings"][0].startswith("Candidate model — not promoted")
    assert main(["promote", cand]) == 0
    capsys.readouterr()
    assert main(["predict", str(NODULE)]) == 0
    out = capsys.readouterr().out
    assert f"Model {cand} (promoted for 'normal vs lesion'" in out and "Candidate model" not in out


def test_refusal_is_an_error_of_its_own(keras_bytes):
    bad = _register(keras_bytes, "noauc", {})
    with pytest.raises(PromotionRefusedError, match="never evaluated"):
        usecase.promote(bad)
