"""Model cards, architectures, the registry (safe loading, no overwrite) and preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medui.ai.architectures import build
from medui.ai.card import ModelCard, Preprocessing
from medui.ai.preprocess import prepare, to_original
from medui.ai.registry import find, list_models, load_keras, register
from medui.errors import CardError, MedUIError, ModelExistsError, ModelLoadError, WeightsUnavailableError


def _card(**kw) -> ModelCard:
    base = dict(name="t", version=1, class_names=["normal", "lesion"], input_size=[64, 64], channels=3,
                architecture="seed_cnn", cam_layer="conv")
    base.update(kw)
    return ModelCard(**base)


def test_card_roundtrip_and_validation(tmp_path):
    card = _card(threshold=0.3, preprocessing=Preprocessing("window", window=[40, 400]))
    card.save(tmp_path / "c.json")
    again = ModelCard.load(tmp_path / "c.json")
    assert again == card and json.loads((tmp_path / "c.json").read_text())["output"] == "sigmoid"
    with pytest.raises(CardError, match="between 0 and 1"):
        _card(threshold=1.5).validate()
    with pytest.raises(CardError, match="lacks"):
        ModelCard.from_json({"name": "x"})
    with pytest.raises(CardError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        ModelCard.load(tmp_path / "bad.json")


@pytest.mark.parametrize("arch,size", [("seed_cnn", None), ("small_cnn", None), ("mobilenet_v2", (96, 96))])
def test_architectures_are_flat_with_logits(arch, size):
    import keras

    built = build(arch, size=size, weights=None)
    model = built.model
    assert not [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert model.get_layer("logits").output.shape[-1] == 1
    assert model.get_layer("probabilities").get_config()["activation"] == "sigmoid"
    assert len(model.get_layer(built.cam_layer).output.shape) == 4


def test_multiclass_head_and_local_weights_file(tmp_path):
    import keras

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    base.save_weights(tmp_path / "mnv2.weights.h5")
    built = build("mobilenet_v2", n_classes=3, size=(96, 96), weights=str(tmp_path / "mnv2.weights.h5"),
                  allow_random=False)
    assert built.model.get_layer("logits").output.shape[-1] == 3 and not built.notes
    np.testing.assert_allclose(built.model.get_layer("Conv1").get_weights()[0],
                               base.get_layer("Conv1").get_weights()[0])
    (tmp_path / "broken.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightsUnavailableError, match="local weights file"):
        build("mobilenet_v2", size=(96, 96), weights=str(tmp_path / "broken.weights.h5"), allow_random=False)
    fallback = build("mobilenet_v2", size=(96, 96), weights=str(tmp_path / "broken.weights.h5"))
    assert "random initialisation" in fallback.notes[0]


def test_register_validates_and_never_overwrites(tmp_path):
    model = build("seed_cnn").model
    model.save(tmp_path / "m.keras")
    root = tmp_path / "registry"
    entry = register(tmp_path / "m.keras", _card(), root)
    assert entry.path.exists() and entry.path.with_suffix(".json").exists()
    with pytest.raises(ModelExistsError, match="never overwritten"):
        register(tmp_path / "m.keras", _card(), root)
    register(tmp_path / "m.keras", _card(version=2), root)
    assert find("t", root).card.version == 2 and find("t-v1", root).card.version == 1
    assert [e.id for e in list_models(root)][0] == "t-v2"
    with pytest.raises(CardError, match="input"):
        register(tmp_path / "m.keras", _card(version=3, input_size=[32, 32]), root)
    with pytest.raises(CardError, match="CAM layer"):
        register(tmp_path / "m.keras", _card(version=3, cam_layer="nope"), root)
    with pytest.raises(MedUIError, match="no model named"):
        find("absent", root)


def test_lambda_models_are_refused(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.Flatten()(x)
    keras.Model(inputs, keras.layers.Dense(1)(x)).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelLoadError, match="arbitrary Python code"):
        load_keras(tmp_path / "lambda.keras")
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ModelLoadError, match="junk.keras is not a Keras model file: it is not a zip"):
        load_keras(tmp_path / "junk.keras")


def test_prepare_letterbox_monochrome1_and_inverse():
    card = _card(input_size=[64, 64], channels=1, preprocessing=Preprocessing("minmax"))
    img = np.zeros((100, 50), np.float32)
    img[40:60, 20:30] = 1000
    x, geom = prepare(img, card)
    assert x.shape == (64, 64, 1) and (geom.height, geom.width) == (64, 32) and geom.left == 16
    assert x[:, :16].max() == 0  # padding
    inv, _ = prepare(img, card, invert=True)
    np.testing.assert_allclose(inv[:, 16:48], 1 - x[:, 16:48], atol=1e-6)
    back = to_original(x[..., 0], geom)
    assert back.shape == img.shape and back[50, 25] > 0.9 and back[5, 5] < 0.1
    rgb = np.zeros((10, 10, 3), np.float32)
    rgb[..., 0] = 255
    x3, _ = prepare(rgb, _card(input_size=[10, 10], channels=3))
    assert x3.shape == (10, 10, 3) and x3[..., 0].max() == 1.0


def test_registered_files_follow_the_umask(tmp_path):
    """Another service account must read the registry: with umask 022 the files are 0644, not
    mkstemp's 0600; a moved source is removed and leaves no partial file behind."""
    import os
    import stat

    build("seed_cnn").model.save(tmp_path / "m.keras")
    old = os.umask(0o022)
    try:
        entry = register(tmp_path / "m.keras", _card(), tmp_path / "registry")
        moved = register(tmp_path / "m.keras", _card(version=2), tmp_path / "registry", move=True)
    finally:
        os.umask(old)
    for path in (entry.path, entry.path.with_suffix(".json"), moved.path, moved.path.with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, f"{path.name}: {oct(path.stat().st_mode)}"
    assert not (tmp_path / "m.keras").exists()
    assert not list((tmp_path / "registry").glob("*.partial"))


def test_register_uses_a_loaded_model_and_errors_name_the_users_file(tmp_path, monkeypatch):
    import medui.ai.registry as registry

    model = build("seed_cnn").model
    model.save(tmp_path / "m.keras")
    monkeypatch.setattr(registry, "load_keras", lambda *a, **k: pytest.fail("loaded the model a second time"))
    assert register(tmp_path / "m.keras", _card(), tmp_path / "registry", model=model).path.exists()
    monkeypatch.undo()
    (tmp_path / "tmpXYZ.keras").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ModelLoadError, match="^my-upload.keras is not a Keras model file"):
        load_keras(tmp_path / "tmpXYZ.keras", "my-upload.keras")
    import zipfile  # the members a .keras file has, but not a model: Keras' own error, naming the user's file

    with zipfile.ZipFile(tmp_path / "tmpXYZ.keras", "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"junk")
    with pytest.raises(ModelLoadError, match="^my-upload.keras is not a loadable") as bad:
        load_keras(tmp_path / "tmpXYZ.keras", "my-upload.keras")
    assert str(tmp_path) not in str(bad.value)


def test_shape_of_reads_input_outputs_and_cam_candidates():
    import keras

    from medui.ai.registry import shape_of

    shape = shape_of(build("seed_cnn", n_classes=3).model)
    assert shape.input_size == (64, 64) and shape.channels == 3 and shape.outputs == 3
    assert shape.cam_layers[0] == "conv" and "pool" not in shape.cam_layers  # feature maps, not pooling
    inputs = keras.Input((10,))
    flat = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(CardError, match="^tabular.keras takes input"):
        shape_of(flat, "tabular.keras")
