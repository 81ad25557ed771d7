"""Training runs in-process: one job-folder layout for the CLI and the page, result timings, the job
reading the page's index, the multi-class path end to end, and one card metrics schema."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from medui.synthetic.phantoms import make_phantom, write_labeled_folder, write_png
from medui.training import jobs
from medui.training.cards import METRIC_KEYS
from tests.synth import wait_for_job

SCHEMA = set(METRIC_KEYS) | {"split"}



@pytest.fixture(autouse=True)
def _restored_tf_env(monkeypatch):
    """`medui train` run in this process sets TensorFlow's environment (as for a job): undo it afterwards."""
    for name in ("CUDA_VISIBLE_DEVICES", "TF_CPP_MIN_LOG_LEVEL", "PYTHONUNBUFFERED"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)


@pytest.fixture()
def stop_after_two(monkeypatch):
    """Early stopping that always ends training after the second epoch; the second epoch is slow."""
    import keras

    class StopAfterTwo(keras.callbacks.Callback):
        def __init__(self, **_: object) -> None:
            super().__init__()

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                time.sleep(1.0)

        def on_epoch_end(self, epoch, logs=None):
            if epoch >= 1:
                self.model.stop_training = True

    monkeypatch.setattr(keras.callbacks, "EarlyStopping", StopAfterTwo)


def test_cli_and_page_jobs_share_one_layout_and_results_count_epochs_run(tmp_path, isolated, capsys,
                                                                          stop_after_two, monkeypatch):
    from medui.cli import main
    from medui.training import metrics

    monkeypatch.setattr(metrics, "calibration_check", lambda t, p: None)  # so tiny a model may fail it: not here

    root = write_labeled_folder(tmp_path / "data", 24, seed=500, size=64, patients=12)
    code = main(["train", str(root), "--arch", "seed_cnn", "--epochs", "6", "--batch-size", "8", "--out", "cli",
                 "--min-per-class", "5", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc
    cli_job = jobs.Job(Path(doc["job"]))
    result = cli_job.result()
    rows = cli_job.metrics()
    # early stopping ended the run after 2 of 6 epochs: throughput counts the 2 epochs run
    assert result["epochs_run"] == 2 and [r["epoch"] for r in rows] == [1, 2]
    n_train = len(json.loads((cli_job.path / "split.json").read_text())["train"])
    assert result["images_per_s"] == pytest.approx(n_train * 2 / result["train_s"], rel=0.1)
    # time to the END of the first epoch, not of the whole phase (the second epoch took > 1 s more)
    assert result["time_to_first_epoch_s"] == pytest.approx(rows[0]["elapsed_s"], abs=0.2)
    assert result["time_to_first_epoch_s"] < rows[1]["elapsed_s"] - 0.9
    card_metrics = json.loads((isolated["models"] / "cli-v1.json").read_text())["metrics"]
    assert set(card_metrics) - {"compared"} == SCHEMA
    # trained from scratch, so no parent: the task's promoted model (the demo) is measured on the same images
    assert set(card_metrics["compared"]) == {"demo-chest-phantom-v1"}
    assert set(card_metrics["compared"]["demo-chest-phantom-v1"]) == SCHEMA

    page_job = jobs.start({**cli_job.params(), "out": "page", "epochs": 1},
                          started_by={"subject": "page-user", "name": "Page user"})
    assert wait_for_job(page_job, 600, 0.5)["state"] == "done", page_job.log_tail()
    cli_files = {p.name for p in cli_job.path.iterdir()}
    page_files = {p.name for p in page_job.path.iterdir()}
    assert page_files - {"pid", "log.txt"} == cli_files
    assert {"params.json", "status.json", "index.json", "split.json", "result.json"} <= cli_files
    assert cli_job.path.parent == page_job.path.parent == isolated["jobs"]


def _three_classes(root: Path, n: int = 10) -> Path:
    for k in range(n):
        write_png(make_phantom(100 + k, 64, lesion=False), root / "normal" / f"n{k}.png")
        write_png(make_phantom(200 + k, 64, lesion=True), root / "lesion" / f"l{k}.png")
        ph = make_phantom(300 + k, 64, lesion=True)
        ph.image[:] = ph.image.max() - ph.image  # a third, clearly different kind of image
        write_png(ph, root / "other" / f"o{k}.png")
    return root


def test_multiclass_run_uses_the_pages_index_and_registers_a_multiclass_card(tmp_path, isolated, monkeypatch):
    from medui.ai.card import ModelCard
    from medui.training import runs
    from medui.training.data import index_dataset
    from medui.training.fit import TrainConfig

    root = _three_classes(tmp_path / "three")
    index = index_dataset([str(root)], min_per_class=5)
    assert index.classes == ["normal", "lesion", "other"]
    cfg = TrainConfig(data=[str(root)], out="three", arch="small_cnn", epochs=1, batch_size=8, min_per_class=5,
                      val_fraction=0.3, test_fraction=0.3)
    job = jobs.create(cfg.to_json(), index=index)

    def no_rescan(*a, **k):
        raise AssertionError("the job read the dataset again although the page had indexed it")

    monkeypatch.setattr(runs, "index_dataset", no_rescan)
    assert runs.run_job(job.path) == 0, job.status()
    ev = job.result()["evaluation"]
    assert ev["classes"] == ["normal", "lesion", "other"]
    assert set(ev["per_class"]) == set(ev["classes"]) and all("auc" in v for v in ev["per_class"].values())
    cm = np.asarray(ev["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == ev["n"] > 0
    card = ModelCard.load(isolated["models"] / "three-v1.json")
    assert card.task == "multiclass" and card.output == "softmax" and card.class_names == ev["classes"]
    assert set(card.metrics) == SCHEMA and card.metrics["confusion_matrix"] == ev["confusion_matrix"]
    assert "temperature" not in card.training and card.training["epochs_run"] == 1


def test_demo_card_has_the_trainers_metrics_schema(tmp_path):
    from medui.ai.card import ModelCard
    from medui.synthetic.demo import train_demo

    path = train_demo(tmp_path / "models", n_train=16, n_val=12, n_test=12, epochs=1, log=lambda m: None)
    card = ModelCard.load(path.with_suffix(".json"))
    # a 1-epoch demo on 16 phantoms may well fail the calibration gate: the flag is the one optional key
    assert card.demo and set(card.metrics) - {"calibration_warning"} == SCHEMA and card.metrics["n"] == 12
    assert card.metrics["threshold"] == pytest.approx(card.threshold, abs=1e-4)
    assert len(card.metrics["confusion_matrix"]) == 2 and card.training["temperature"] > 0


def test_a_run_whose_calibration_flattens_every_score_is_registered_flagged(tmp_path, isolated, capsys, monkeypatch):
    from medui.ai.card import ModelCard
    from medui.cli import main
    from medui.training import metrics

    monkeypatch.setattr(metrics, "fit_temperature", lambda z, y: 20.0)  # as the reported model's card
    root = write_labeled_folder(tmp_path / "data", 24, seed=500, size=48, patients=12)
    code = main(["train", str(root), "--arch", "seed_cnn", "--epochs", "1", "--batch-size", "8", "--out", "flat",
                 "--min-per-class", "5", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 3 and doc["evaluation_failed"] and "temperature is 20" in doc["calibration_warning"]
    job = jobs.Job(Path(doc["job"]))
    status, result = job.status(), job.result()
    assert status["state"] == "done" and status["evaluation_failed"]
    assert status["message"].startswith("EVALUATION FAILED") and "do not promote it" in status["message"]
    assert result["evaluation_failed"] and "flattens every score" in result["calibration_warning"]
    card = ModelCard.load(isolated["models"] / "flat-v1.json")
    assert "temperature is 20" in card.metrics["calibration_warning"]
    assert card.limitations.startswith("EVALUATION FAILED")
    low, high = card.indeterminate  # the band is stored whatever the verdict
    assert low <= card.threshold <= high and result["indeterminate"] == card.indeterminate
    assert "indeterminate band" in card.threshold_method and "held-out" in card.threshold_method


def test_the_shipped_demo_bands_are_what_its_validation_phantoms_give():
    from medui.ai.card import ModelCard
    from medui.synthetic.demo import validation_band

    shipped = Path(__file__).resolve().parents[1] / "models" / "demo-chest-phantom-v1.keras"
    band = validation_band(shipped)
    assert ModelCard.load(shipped.with_suffix(".json")).indeterminate == pytest.approx(band, abs=1e-6)


def test_the_status_says_what_the_job_is_doing_as_it_happens(tmp_path, isolated, monkeypatch):
    from medui.training import runs
    from medui.training.fit import TrainConfig

    said: list[str] = []
    original = runs._status

    def recording(job, **fields):
        if "message" in fields:
            said.append(fields["message"])
        original(job, **fields)

    monkeypatch.setattr(runs, "_status", recording)
    root = write_labeled_folder(tmp_path / "data", 24, seed=500, size=48, patients=12)
    cfg = TrainConfig(data=[str(root)], out="steps", arch="seed_cnn", epochs=2, batch_size=8, min_per_class=5,
                      patience=5)
    job = jobs.create(cfg.to_json())
    assert runs.run_job(job.path) == 0, job.status()
    split = json.loads((job.path / "split.json").read_text())
    n = len(split["train"]) + len(split["val"]) + len(split["test"])  # every image is prepared once, up front
    steps = ["starting TensorFlow", "reading the dataset", "building the model", "preparing images (",
             f"preparing images ({n}/{n})",
             "epoch 1/2 running", "epoch 1/2 done", "epoch 2/2 running", "epoch 2/2 done", "calibrating",
             "evaluating", "registering"]
    at = 0
    for message in said:  # every step, in this order (others may come between)
        if at < len(steps) and message.startswith(steps[at]):
            at += 1
    assert at == len(steps), f"missing {steps[at:]} in {said}"
    assert "steps-v1 as a candidate" in said[-1]  # flagged or not: so small a model may fail calibration


def test_jobs_on_a_machine_without_a_gpu_do_not_probe_cuda(monkeypatch):
    from medui.ai import device

    monkeypatch.setattr(device, "gpu_present", lambda: False)
    env = device.job_env({"PATH": "/bin", "TF_CPP_MIN_LOG_LEVEL": "1"})
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    assert device.job_env({"CUDA_VISIBLE_DEVICES": "0"})["CUDA_VISIBLE_DEVICES"] == "0"  # an explicit choice stays
    monkeypatch.setattr(device, "gpu_present", lambda: True)
    assert device.job_env({"PATH": "/bin"}) == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_a_launched_job_log_on_a_cpu_machine_has_no_cuinit_noise(tmp_path, isolated):
    from medui.ai.device import gpu_present
    from medui.training.fit import TrainConfig

    if gpu_present():
        pytest.skip("a machine with a GPU keeps its CUDA settings")
    root = write_labeled_folder(tmp_path / "data", 24, seed=500, size=48, patients=12)
    cfg = TrainConfig(data=[str(root)], out="quiet", arch="seed_cnn", epochs=1, batch_size=8, min_per_class=5)
    job = jobs.start(cfg.to_json())
    assert wait_for_job(job, 600, 0.5)["state"] == "done", job.log_tail()
    log = (job.path / "log.txt").read_text()
    assert "cuInit" not in log and "will train: seed CNN from scratch" in log.splitlines()[0]
