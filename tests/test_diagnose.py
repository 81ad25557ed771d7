"""Diagnose and Models pages (AppTest) and the predict/models commands, on the shipped demo model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

from medui.reading.samples import SAMPLE_DIR

ROOT = Path(__file__).resolve().parents[1]
NODULE = SAMPLE_DIR / "phantom_chest_nodule.dcm"
NORMAL = SAMPLE_DIR / "phantom_chest_normal.dcm"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medui", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_models_json_lists_the_demo_model_newest_first():
    doc = json.loads(_run("models", "--json").stdout)
    assert doc["models"], "no models registered"
    demo = [m for m in doc["models"] if m["demo"]][0]
    for key in ("name", "version", "classes", "created", "threshold"):
        assert key in demo
    created = [m["created"] for m in doc["models"]]
    assert created == sorted(created, reverse=True)


def test_cli_predict_json_with_overlays(tmp_path):
    out = _run("predict", str(NODULE), str(NORMAL), "--model", "demo-chest-phantom", "--cam", "gradcam", "layercam",
               "--out", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["model"]["name"] == "demo-chest-phantom" and isinstance(doc["model"]["version"], int)
    nodule, normal = doc["results"]
    assert nodule["label"] == "lesion" and normal["label"] == "normal"
    assert set(nodule["probabilities"]) == {"normal", "lesion"} and 0 < nodule["threshold"] < 1
    assert len(nodule["overlays"]) == 2 and all(Path(p).stat().st_size > 1000 for p in nodule["overlays"])


def test_cli_predict_unknown_model_says_what_exists():
    out = _run("predict", str(NODULE), "--model", "nope")
    assert out.returncode == 2 and "no model named 'nope'" in out.stderr and "demo-chest-phantom" in out.stderr


def _diagnose() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=180).run()


def test_diagnose_page_scores_and_explains_an_upload():
    at = _diagnose()
    assert not at.exception
    at.file_uploader[0].set_value([(NODULE.name, NODULE.read_bytes(), "application/dicom")])
    at.run()
    assert not at.exception
    assert any(s.value == "lesion" for s in at.subheader)
    assert at.get("plotly_chart"), "no gauge"
    assert any("above" in m.value for m in at.markdown)
    assert len(at.get("image")) >= 1  # the Grad-CAM overlay
    store = at.session_state["dx.saliency"]
    n_maps = len(store)
    at.slider(key="dx.opacity").set_value(0.8).run()  # display change: no recomputation
    assert len(at.session_state["dx.saliency"]) == n_maps
    at.multiselect(key="dx.methods").set_value(["gradcam", "gradcam++"]).run()  # only the new method is computed
    assert len(at.session_state["dx.saliency"]) == n_maps + 1
    assert not at.exception


def test_models_page_lists_and_refuses_a_lambda_model(tmp_path):
    import keras

    at = AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=120).run()
    assert not at.exception
    assert "demo-chest-phantom" in str(at.dataframe[0].value)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Lambda(lambda t: t + 1)(inputs))
    keras.Model(inputs, keras.layers.Dense(1, name="logits")(x)).save(tmp_path / "evil.keras")
    upload = ("evil.keras", (tmp_path / "evil.keras").read_bytes(), "application/zip")
    at.file_uploader(key="models.add-model").set_value(upload)
    at.run()
    next(b for b in at.button if b.label == "Validate and register").click().run()
    assert any("arbitrary Python code" in e.value for e in at.error)


def test_models_page_registers_an_upload_once_as_a_candidate(tmp_path, monkeypatch):
    """Input size and channels are read from the model (shown, not asked); one click registers one
    version, and says it is a candidate; the same upload clicked again is not registered twice."""
    from medui.ai.architectures import build
    from medui.ai.registry import list_models

    monkeypatch.setenv("MEDUI_MODELS", str(tmp_path / "registry"))
    build("seed_cnn").model.save(tmp_path / "mine.keras")
    at = AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=120).run()
    assert "No models yet" in at.info[0].value
    upload = ("mine.keras", (tmp_path / "mine.keras").read_bytes(), "application/zip")
    at.file_uploader(key="models.add-model").set_value(upload)
    at.run()
    assert any("input 64x64, 3 channel(s), binary" in c.value for c in at.caption)
    assert not [n for n in at.number_input if "size" in n.label.lower()]  # not asked any more
    at.text_input(key="models.name").set_value("uploaded-cnn")
    at.text_input(key="models.classes").set_value("normal,abnormal")
    assert at.selectbox(key="models.cam-layer").value == "conv"  # the model's last feature maps
    at.text_area(key="models.training-data").set_value("a test upload")
    next(b for b in at.button if b.label == "Validate and register").click().run()
    assert not at.exception and not [e.value for e in at.error if "mine.keras" in e.value]
    assert any("never evaluated" in e.value for e in at.error)  # its card has no metrics: the gate says so
    entries = list_models(tmp_path / "registry")
    assert [e.id for e in entries] == ["uploaded-cnn-v1"]
    assert entries[0].card.training_data == {"source": "a test upload"} and entries[0].card.cam_layer == "conv"
    assert entries[0].card.input_size == [64, 64] and entries[0].card.channels == 3
    message = " ".join(s.value for s in at.success)
    assert "Registered uploaded-cnn-v1 as a candidate" in message and "open it on the Diagnose page" not in message
    next(b for b in at.button if b.label == "Validate and register").click().run()
    assert [e.id for e in list_models(tmp_path / "registry")] == ["uploaded-cnn-v1"]
    assert any("already registered as uploaded-cnn-v1" in i.value for i in at.info)


def test_models_page_shows_card_text_as_written():
    import dataclasses

    from medui.ai.registry import find
    from medui.ui.markdown import md

    assert md("<patient>_<n>.png *x*") == r"\<patient\>\_\<n\>\.png \*x\*"
    entry = find(DEMO)
    card = dataclasses.replace(entry.card, limitations="Patients from files named <patient>_<n>.png only")
    card.save(entry.path.with_suffix(".json"))
    at = AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=120).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert r"\<patient\>\_\<n\>\.png" in text and "<patient>_<n>.png" not in text


def test_models_page_compares_and_promotes_with_a_required_override_reason():
    from medui.ai import audit
    from medui.usecases.models import status

    bad = _register("mnv2", {"auc": 0.444, "auc_ci": [0.225, 0.643], "sensitivity": 1.0, "specificity": 0.0,
                             "n": 120, "split": "test"})
    at = AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=120).run()
    at.selectbox(key="models.choice").set_value(bad).run()
    assert not at.exception
    assert any("Candidate" in m.value for m in at.markdown)
    table = at.dataframe[1].value  # the comparison: this model beside the promoted (demo) model
    assert list(table.columns) == ["metric", f"{bad}: this model, candidate", f"{DEMO}: promoted (demo)"]
    assert any("includes 0.5" in e.value.replace("\\", "") for e in at.error)  # shown escaped: 0\.5
    at.button(key="models.promote").click().run()
    assert any("override reason first" in e.value for e in at.error)
    assert next(s for s in status() if s.entry.id == bad).label == "candidate"
    at.text_area(key=f"models.override.{bad}").set_value("side-by-side reading study, not for patients").run()
    at.button(key="models.promote").click().run()
    assert not at.exception and any(f"Promoted {bad}" in s.value for s in at.success)
    assert next(s for s in status() if s.entry.id == bad).label == "promoted"
    last = audit.read(status()[0].entry.path.parent)[-1]
    assert last["action"] == "override" and last["override"] == "side-by-side reading study, not for patients"
    assert last["via"] == "app" and last["previous"] == DEMO  # the default it replaces


DEMO = "demo-chest-phantom-v1"
GOOD = {"auc": 0.93, "auc_ci": [0.9, 0.96], "sensitivity": 0.88, "specificity": 0.9, "n": 400, "split": "test"}


def _register(name: str, metrics: dict) -> str:
    """A small seed_cnn model, newer than the demo model, registered as a candidate for the demo's task."""
    import dataclasses

    from medui.ai.architectures import build
    from medui.ai.registry import find, models_dir
    from medui.usecases.models import register_upload

    path = models_dir().parent / f"{name}.keras"
    build("seed_cnn").model.save(path)
    card = dataclasses.replace(find(DEMO).card, name=name, version=1, input_size=[64, 64], channels=3,
                               architecture="seed_cnn", cam_layer="conv", metrics=metrics, demo=False,
                               created="2099-01-01T00:00:00+00:00")
    return register_upload(path.read_bytes(), path.name, json.dumps(card.to_json()).encode(), "card.json").id


def _scored() -> AppTest:
    at = _diagnose()
    at.file_uploader[0].set_value([(NODULE.name, NODULE.read_bytes(), "application/dicom")])
    return at.run()


def _model_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "Model in use" in m.value)


def _banners(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "Candidate model" in w.value or "never evaluated" in w.value]


def test_diagnose_defaults_to_the_promoted_model_and_warns_on_a_candidate():
    from medui.usecases.models import promote

    cand = _register("newer", GOOD)  # newest, evaluated, but only a candidate
    at = _scored()
    assert not at.exception
    assert at.selectbox(key="dx.model").value == DEMO
    assert "demo model, promoted by default" in _model_line(at) and "held-out AUC 0.995" in _model_line(at)
    assert not _banners(at)
    at.selectbox(key="dx.model").set_value(cand).run()
    assert not at.exception and at.subheader, "no result"
    assert "**candidate**" in _model_line(at) and "newer version 1" in _model_line(at)
    assert any("Candidate model — not promoted" in b for b in _banners(at))
    promote(cand)
    at = _scored()
    assert at.selectbox(key="dx.model").value == cand and "promoted for" in _model_line(at)
    assert not _banners(at)


def test_diagnose_warns_on_every_result_of_an_unevaluated_model():
    from medui.usecases.models import promote

    blind = _register("blind", {})
    promote(blind, override="test: an unevaluated model promoted on purpose")
    at = _scored()
    assert not at.exception and at.selectbox(key="dx.model").value == blind
    assert "**not evaluated**" in _model_line(at)
    banners = _banners(at)
    assert len(banners) == 1 and "never evaluated" in banners[0] and "Candidate" not in banners[0]


def test_a_broken_promotions_file_stops_diagnose_with_what_to_do(isolated):
    (isolated["models"] / "promotions.json").write_text("{")
    at = _diagnose()
    assert not at.exception
    assert any("promotions.json cannot be read" in e.value and "promote again" in e.value for e in at.error)
    assert not at.get("plotly_chart")


def test_two_sessions_scoring_one_series_share_one_computation_and_each_is_audited(monkeypatch):
    """The server's store keeps a series' scores and maps beside it: a second session scoring the
    same upload with the same model computes nothing, and both sessions' actions are in the trail."""
    from medui.accounts.audit import Query, events
    from medui.ai.inference import Predictor

    calls = {"prepare": 0}
    real = Predictor.prepare

    def counting(self, series):
        calls["prepare"] += 1
        return real(self, series)

    monkeypatch.setattr(Predictor, "prepare", counting)
    upload = [(NODULE.name, NODULE.read_bytes(), "application/dicom")]
    first, second = _diagnose(), _diagnose()
    for at in (first, second):
        at.file_uploader[0].set_value(upload)
        at.run()
        assert not at.exception and any(s.value == "lesion" for s in at.subheader)
    assert calls["prepare"] == 1
    assert first.session_state["medui.series"][0].key == second.session_state["medui.series"][0].key
    scored = events(Query(actions=("score",)))
    assert len(scored) == 2  # one row per session, although the model ran once
