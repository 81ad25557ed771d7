"""The model registry use cases: register an upload (loaded once, errors name the user's file) and
delete (the page's cached copy is dropped too)."""

from __future__ import annotations

import json

import pytest

from medui.ai.architectures import build
from medui.ai.registry import list_models
from medui.errors import CardError, MedUIError, ModelLoadError
from medui.usecases import models as usecase
from medui.usecases.models import CardFields, register_upload

FIELDS = CardFields(name="up", class_names=("normal", "abnormal"), input_size=64, channels=3, cam_layer="conv",
                    threshold=0.4, training_data="tests")


@pytest.fixture(scope="module")
def keras_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("m") / "m.keras"
    build("seed_cnn").model.save(path)
    return path.read_bytes()


def test_register_upload_loads_the_file_once(keras_bytes, tmp_path, monkeypatch):
    import medui.ai.registry as registry

    loads = []
    real = registry.load_keras
    monkeypatch.setattr(usecase, "load_keras", lambda *a, **k: loads.append(a) or real(*a, **k))
    monkeypatch.setattr(registry, "load_keras", lambda *a, **k: loads.append(a) or real(*a, **k))
    entry = register_upload(keras_bytes, "mine.keras", FIELDS, root=tmp_path)
    assert len(loads) == 1
    assert entry.id == "up-v1" and entry.card.threshold == 0.4 and entry.card.training_data == {"source": "tests"}
    again = register_upload(keras_bytes, "mine.keras", FIELDS, root=tmp_path)  # the next free version
    assert again.id == "up-v2"
    card = json.dumps({**entry.card.to_json(), "version": 7}).encode()
    assert register_upload(keras_bytes, "mine.keras", card, "card.json", root=tmp_path).id == "up-v7"
    assert sorted(e.id for e in list_models(tmp_path)) == ["up-v1", "up-v2", "up-v7"]


def test_register_upload_errors_name_the_users_file(keras_bytes, tmp_path):
    with pytest.raises(ModelLoadError) as bad:
        register_upload(b"PK\x03\x04 not a model", "chest-model.keras", FIELDS, root=tmp_path)
    wrong = CardFields(**{**FIELDS.__dict__, "input_size": 32})
    with pytest.raises(CardError) as mismatch:
        register_upload(keras_bytes, "chest-model.keras", wrong, root=tmp_path)
    for exc in (bad.value, mismatch.value):
        assert "chest-model.keras" in str(exc) and "upload.keras" not in str(exc) and "/tmp" not in str(exc)
    with pytest.raises(CardError, match="card.json is not valid JSON"):
        register_upload(keras_bytes, "chest-model.keras", b"{", "card.json", root=tmp_path)
    with pytest.raises(MedUIError, match="notes.txt is not a .keras file"):
        register_upload(keras_bytes, "notes.txt", FIELDS, root=tmp_path)
    assert list_models(tmp_path) == []


def test_delete_removes_the_files_and_the_cached_model(keras_bytes, tmp_path, monkeypatch):
    from medui.ui import modelcache

    entry = register_upload(keras_bytes, "mine.keras", FIELDS, root=tmp_path)
    loads = []
    real = modelcache.load_model
    monkeypatch.setattr(modelcache, "load_model", lambda *a: loads.append(a) or real(*a))
    modelcache.cached_model.clear()
    first = modelcache.get(entry)
    assert modelcache.get(entry) is first and len(loads) == 1  # cached
    stamp = modelcache._stamp(entry)
    modelcache.delete(entry)
    assert not entry.path.exists() and not entry.path.with_suffix(".json").exists()
    with pytest.raises(MedUIError, match="no model named"):
        modelcache.cached_model(entry.id, stamp, str(tmp_path))  # not served from the cache any more
    assert len(loads) == 2


def test_the_demo_model_is_not_deleted(isolated):
    with pytest.raises(MedUIError, match="cannot be deleted"):
        usecase.delete("demo-chest-phantom-v1")
    assert [e.id for e in list_models()] == ["demo-chest-phantom-v1"]


def test_cli_models_add_and_delete_use_the_use_cases(keras_bytes, tmp_path, capsys):
    from medui.cli import main

    (tmp_path / "mine.keras").write_bytes(keras_bytes)
    card = FIELDS.card(tmp_path / "registry")
    (tmp_path / "card.json").write_text(json.dumps(card.to_json()))
    registry = str(tmp_path / "registry")
    assert main(["models", "--dir", registry, "--add", str(tmp_path / "mine.keras"), "--card",
                 str(tmp_path / "card.json")]) == 0
    assert "registered up-v1" in capsys.readouterr().out
    assert main(["models", "--dir", registry, "--json"]) == 0
    assert [m["id"] for m in json.loads(capsys.readouterr().out)["models"]] == ["up-v1"]
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 junk")
    assert main(["models", "--dir", registry, "--add", str(tmp_path / "bad.keras"), "--card",
                 str(tmp_path / "card.json")]) == 2
    assert "bad.keras is not a Keras model file" in capsys.readouterr().err
    assert main(["models", "--dir", registry, "--delete", "up-v1"]) == 0
    assert list_models(tmp_path / "registry") == []
    with pytest.raises(SystemExit):
        main(["models", "--add", str(tmp_path / "mine.keras")])  # --card is required with --add


def test_an_edited_card_is_never_served_stale(keras_bytes, tmp_path):
    import json
    import os

    from medui.ui import modelcache

    entry = register_upload(keras_bytes, "mine.keras", FIELDS, root=tmp_path)
    first = modelcache.get(entry)
    card_file = entry.path.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["threshold"] = 0.25
    card_file.write_text(json.dumps(card))
    os.utime(card_file, ns=(card_file.stat().st_atime_ns, card_file.stat().st_mtime_ns + 10**9))
    again = modelcache.get(next(e for e in list_models(tmp_path) if e.id == entry.id))
    assert again is not first and again.entry.card.threshold == 0.25
