"""What will be trained, said before the click: one decision (`plan_model`) for the page, the job and the card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medui.training import jobs, plan
from medui.training.plan import plan_model

ROOT = Path(__file__).resolve().parents[1]
MOBILENET = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.fixture()
def offline(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache and no network (this machine is offline; on others the probe is faked)."""
    home = tmp_path / "keras-home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(plan, "download_possible", lambda timeout=1.0: False)
    monkeypatch.setattr("medui.usecases.train.download_possible", lambda timeout=1.0: False)
    monkeypatch.setattr("medui.ai.device.gpu_present", lambda: False)
    return home


def test_offline_without_cached_weights_the_default_is_the_small_cnn_from_scratch(offline):
    default = plan_model(None, None, gpu=False)
    assert (default.arch, default.weights_source, default.weights) == ("small_cnn", "scratch", None)
    assert default.text().startswith("small CNN from scratch: ImageNet weights for MobileNetV2 are not available")
    chosen = plan_model("mobilenet_v2", None, gpu=False)  # an explicit backbone is kept, from random weights
    assert chosen.text() == "MobileNetV2 from random weights: ImageNet weights are not available offline"
    assert plan_model("small_cnn", None, gpu=True).text() == "small CNN from scratch"
    online = plan_model(None, None, gpu=False, online=True)
    assert online.text() == "MobileNetV2 from ImageNet weights (downloaded once)"
    parent = plan_model(None, "demo-chest-phantom", gpu=False)
    assert parent.text() == "evidence CNN fine-tuned from demo-chest-phantom-v1"


def test_cached_weights_in_the_keras_cache_are_found(offline):
    (offline / "models" / MOBILENET).write_bytes(b"not really weights")  # never loaded here
    assert plan_model(None, None, gpu=False).text() == "MobileNetV2 from ImageNet weights (cached)"
    gpu = plan_model(None, None, gpu=True)  # DenseNet121 on a GPU: not cached
    assert gpu.arch == "small_cnn" and "DenseNet121 are not available offline" in gpu.reason


def _start_from_options() -> list[str]:
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    assert not at.exception
    return list(at.selectbox(key="train.start-from").options)


def test_the_page_says_what_will_be_trained_before_the_click(offline, tmp_path, monkeypatch):
    options = _start_from_options()
    assert options[0].startswith("Recommended → small CNN from scratch: ImageNet weights for MobileNetV2 are not "
                                 "available offline")
    assert "Architecture mobilenet_v2 → MobileNetV2 from random weights: ImageNet weights are not available " \
           "offline" in options
    cached = tmp_path / "cached-home"
    (cached / "models").mkdir(parents=True)
    (cached / "models" / MOBILENET).write_bytes(b"fake")
    monkeypatch.setenv("KERAS_HOME", str(cached))
    options = _start_from_options()
    assert options[0] == "Recommended → MobileNetV2 from ImageNet weights (cached)"
    assert "Architecture mobilenet_v2 → MobileNetV2 from ImageNet weights (cached)" in options


def test_the_job_log_status_and_card_say_it_again(offline, tmp_path, isolated, capsys):
    from medui.ai.card import ModelCard
    from medui.synthetic.phantoms import write_labeled_folder
    from medui.training.fit import TrainConfig
    from medui.training.runs import run_job

    root = write_labeled_folder(tmp_path / "data", 24, seed=500, size=48, patients=12)
    cfg = TrainConfig(data=[str(root)], out="planned", epochs=1, batch_size=8, min_per_class=5)  # recommended
    job = jobs.create(cfg.to_json())
    assert run_job(job.path) == 0, job.status()
    said = "small CNN from scratch: ImageNet weights for MobileNetV2 are not available offline"
    first = capsys.readouterr().out.splitlines()[0]
    assert "will train: " + said in first
    assert said in job.status()["plan"] and job.result()["model_plan"]["text"].startswith(said)
    card = ModelCard.load(isolated["models"] / "planned-v1.json")
    assert card.architecture == "small_cnn" and card.training["model_plan"]["weights_source"] == "scratch"
    assert card.training["model_plan"]["text"].startswith(said)
    assert json.loads((job.path / "status.json").read_text())["state"] == "done"
