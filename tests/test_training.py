"""Datasets (refusals, patient-level split), training jobs (cancel, killed), cards, CLI train/evaluate,
PneumoniaMNIST from a local .npz, and the Train page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medui.errors import DatasetError
from medui.synthetic.phantoms import make_phantom, write_dicom, write_labeled_folder, write_png
from medui.training import jobs
from medui.training.data import index_dataset, split
from medui.training.fit import TrainConfig, class_weights
from tests.conftest import demo_registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Private job and model folders (the demo model copied in), for this test only."""
    monkeypatch.setenv("MEDUI_MODELS", str(demo_registry(tmp_path / "models")))
    monkeypatch.setenv("MEDUI_JOBS", str(tmp_path / "jobs"))
    return tmp_path


def _folder(tmp_path: Path, n: int = 40, size: int = 96, **kw) -> Path:
    return write_labeled_folder(tmp_path / "data", n, seed=500, size=size, **kw)


def test_refusals(tmp_path):
    one = tmp_path / "one" / "normal"
    for k in range(12):
        write_png(make_phantom(k, 64, lesion=False), one / f"p{k}.png")
    with pytest.raises(DatasetError, match="one class"):
        index_dataset([tmp_path / "one"])
    few = tmp_path / "few"
    for k in range(12):
        write_png(make_phantom(k, 64, lesion=False), few / "normal" / f"p{k}.png")
    for k in range(3):
        write_png(make_phantom(100 + k, 64, lesion=True), few / "lesion" / f"p{k}.png")
    with pytest.raises(DatasetError, match=r"lesion \(3\)"):
        index_dataset([few])
    junk = tmp_path / "junk"
    (junk / "a").mkdir(parents=True)
    (junk / "b").mkdir()
    (junk / "a" / "x.txt").write_text("x")
    (junk / "b" / "y.txt").write_text("y")
    with pytest.raises(DatasetError, match="nothing readable"):
        index_dataset([junk])


def test_patient_grouped_stratified_split(tmp_path):
    root = _folder(tmp_path, n=60, patients=15)  # 2 images per patient folder
    ds = index_dataset([root])
    assert "first folder below the class folder" in ds.report.grouping
    parts = split(ds, 0.2, 0.2, seed=1)
    assert sorted(sum(parts.values(), [])) == list(range(len(ds.samples)))
    patients = {k: {ds.samples[i].patient for i in v} for k, v in parts.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert not (patients["val"] & patients["test"])
    for k in ("val", "test"):
        labels = {ds.samples[i].label for i in parts[k]}
        assert labels == {"normal", "lesion"}  # stratified
    assert split(ds, 0.2, 0.2, seed=1) == parts  # fixed seed


def test_grouping_by_dicom_patient_id_and_pattern_and_given_splits(tmp_path):
    root = tmp_path / "dcm"
    for k in range(24):
        ph = make_phantom(700 + k, 64, lesion=k % 2 == 1)
        path = write_dicom(ph, root / ("lesion" if ph.label else "normal") / f"img{k}.dcm")
        import pydicom

        ds = pydicom.dcmread(path)
        ds.PatientID = f"PAT{k // 4}"
        ds.save_as(path)
    assert index_dataset([root]).report.grouping == "DICOM PatientID"
    flat = tmp_path / "flat"
    for k in range(24):
        ph = make_phantom(800 + k, 64, lesion=k % 2 == 1)
        write_png(ph, flat / ("lesion" if ph.label else "normal") / f"P{k // 4}_{k}.png")
    ds = index_dataset([flat], patient_pattern="<patient>_<n>.png")
    assert "pattern" in ds.report.grouping
    assert len({s.patient for s in ds.samples}) == 6  # pseudonyms of P0..P5
    assert not {s.patient for s in ds.samples} & {f"P{k}" for k in range(6)}
    given = tmp_path / "given"
    for sp, seed in (("train", 0), ("val", 100), ("test", 200)):
        write_labeled_folder(given / sp, 20, seed=900 + seed, size=64)
    ds = index_dataset([given])
    parts = split(ds)
    assert ds.report.given_splits == ["train", "val", "test"]
    assert all(ds.samples[i].split == "val" for i in parts["val"]) and len(parts["test"]) == 20


def test_duplicates_and_class_weights(tmp_path):
    root = _folder(tmp_path, n=30)
    first = next((root / "normal").rglob("*.png"))
    shutil.copy(first, root / "normal" / "copy.png")
    shutil.copy(first, root / "lesion" / "mislabelled.png")
    report = index_dataset([root]).report
    assert any(len(g) == 3 for g in report.duplicates)
    assert report.cross_class_duplicates and "appear in more than one class" in " ".join(report.warnings)
    w = class_weights(np.array([0] * 30 + [1] * 10), 2)
    assert w[1] == pytest.approx(3 * w[0]) and np.mean([w[0]] * 30 + [w[1]] * 10) == pytest.approx(1.0)


def _wait(job: jobs.Job, states, timeout=600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = job.status()
        if st.get("state") in states:
            return st
        time.sleep(1)
    raise AssertionError(f"job stuck: {job.status()}\n{job.log_tail()}")


def test_cancel_and_killed_job_leave_the_registry_untouched(env):
    root = _folder(env, n=40, size=64)
    before = sorted(p.name for p in (env / "models").iterdir())
    cfg = TrainConfig(data=[str(root)], out="cancelled", arch="seed_cnn", epochs=50, batch_size=4, min_per_class=5)
    job = jobs.start(cfg.to_json())
    _wait(job, ("running",))
    deadline = time.time() + 300
    while not job.metrics():  # cancel once training is under way
        assert job.status().get("state") not in jobs.TERMINAL and time.time() < deadline, job.log_tail()
        time.sleep(0.5)
    job.cancel()
    st = _wait(job, jobs.TERMINAL)
    assert st["state"] == "cancelled"
    job2 = jobs.start({**cfg.to_json(), "out": "killed"})
    st = _wait(job2, ("running",))
    os.killpg(os.getpgid(int(st["pid"])), signal.SIGKILL)
    time.sleep(1)
    st = _wait(job2, jobs.TERMINAL, timeout=30)
    assert st["state"] == "failed" and "ended unexpectedly" in st["error"]
    assert sorted(p.name for p in (env / "models").iterdir()) == before


def _cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MEDUI_MODELS=str(env_dir / "models"), MEDUI_JOBS=str(env_dir / "jobs"))
    return subprocess.run([sys.executable, "-m", "medui", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=900)


def test_cli_train_writes_a_card_and_evaluate_reads_it(env):
    root = _folder(env, n=60, size=96, patients=30)
    out = _cli("train", str(root), "--arch", "small_cnn", "--epochs", "2", "--out", "cli-model", "--json",
               "--min-per-class", "5", env_dir=env)
    doc = json.loads(out.stdout)
    assert out.returncode == (3 if doc["evaluation_failed"] else 0), out.stderr[-3000:]  # 3: registered, flagged
    assert doc["model"] == "cli-model-v1" and doc["state"] == "done"
    for key in ("n", "auc", "auc_ci", "accuracy", "sensitivity", "specificity", "threshold", "confusion_matrix",
                "classes"):
        assert key in doc
    card = json.loads((env / "models" / "cli-model-v1.json").read_text())
    assert card["parent"] is None and card["training_data"]["content_hash"] and card["metrics"]["n"] == doc["n"]
    assert 0 < card["threshold"] < 1 and "held-out" in card["threshold_method"]
    assert card["training"]["config"]["augment"]["hflip"] == 0.0 and card["training"]["device"]
    ev = _cli("evaluate", str(root), "--model", "cli-model", "--json", env_dir=env)
    assert ev.returncode == 0, ev.stderr[-2000:]
    evdoc = json.loads(ev.stdout)
    assert set(evdoc) >= {"model", "n", "auc", "auc_ci", "accuracy", "sensitivity", "specificity", "threshold",
                          "confusion_matrix", "classes"}
    assert evdoc["n"] == 60


def test_fine_tune_from_the_demo_model_compares_with_its_parent(env):
    root = _folder(env, n=60, size=128, patients=30)
    out = _cli("train", str(root), "--base", "demo-chest-phantom", "--epochs", "1", "--out", "ft", "--json",
               "--min-per-class", "5", env_dir=env)
    doc = json.loads(out.stdout)
    assert out.returncode == (3 if doc["evaluation_failed"] else 0), out.stderr[-3000:]  # 3: registered, flagged
    job_dir = Path(doc["job"])
    result = json.loads((job_dir / "result.json").read_text())
    assert result["parent"].startswith("demo-chest-phantom")
    assert result["parent_evaluation"]["n"] == result["evaluation"]["n"]
    card = json.loads((env / "models" / "ft-v1.json").read_text())
    assert card["parent"] == result["parent"] and card["cam_layer"] == "evidence"
    # The parent (here also the promoted model of the task) measured on the very same held-out images.
    parent_here = card["metrics"]["compared"][result["parent"]]
    assert parent_here["n"] == card["metrics"]["n"] and parent_here["auc"] == pytest.approx(
        result["parent_evaluation"]["auc"], abs=1e-3)
    from medui.usecases.models import compare

    cmp = compare("ft-v1", env / "models")
    assert cmp.same_data and [s.entry.id for s in cmp.columns] == ["ft-v1", result["parent"]]
    shown = {row["metric"]: row for row in cmp.rows()}["held-out data"]
    assert "the same images as ft-v1" in str(shown[f"{result['parent']}: parent, promoted (demo)"])
    if parent_here["auc"] > card["metrics"]["auc"]:  # the usual outcome of one epoch on 60 images
        assert any(f.code == "below-parent" and "same held-out images" in f.message for f in cmp.findings)


def test_pneumoniamnist_from_a_local_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for sp, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{sp}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{sp}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays)
    out = subprocess.run([sys.executable, "-m", "medui", "datasets", "pneumoniamnist", "--size", "28", "--npz",
                          str(tmp_path / "pneumoniamnist.npz"), "--out", str(tmp_path / "pm")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["counts"]["train"] == {"normal": 6, "pneumonia": 6}
    ds = index_dataset([tmp_path / "pm"], min_per_class=2)
    assert ds.report.given_splits == ["train", "val", "test"] and ds.classes == ["normal", "pneumonia"]
    env = dict(os.environ, MEDMNIST_ROOT=str(tmp_path / "empty"))
    missing = subprocess.run([sys.executable, "-m", "medui", "datasets", "pneumoniamnist", "--out",
                              str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert missing.returncode == 2 and ("--npz" in missing.stderr)


def test_train_page_checks_data_and_starts_a_job(env):
    from streamlit.testing.v1 import AppTest

    root = _folder(env, n=30, size=64)
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    assert not at.exception
    at.text_input(key="train.path").set_value(str(root)).run()
    assert not at.exception
    assert any("lesion" in str(df.value) for df in at.dataframe)
    at.number_input(key="train.epochs").set_value(1)
    at.text_input(key="train.name").set_value("page-model")
    at.button[0].click().run()  # the form's 'Start training'
    assert not at.exception
    from medui.training import jobs

    started = jobs.list_jobs()
    assert len(started) == 1 and started[0].params()["out"] == "page-model"
    started[0].cancel()  # what was checked is what the job trains on: the page's index, not a new scan
    index = json.loads((started[0].path / "index.json").read_text())
    assert len(index["samples"]) == 30 and str(root) not in json.dumps(index["samples"])
    at.text_input(key="train.path").set_value(str(env / "nope")).run()
    assert any("does not exist" in e.value for e in at.error)


def test_server_folders_can_be_restricted(env, monkeypatch):
    from medui.ui.train import server_folder

    root = _folder(env, n=20, size=64)
    monkeypatch.setenv("MEDUI_DATA_ROOTS", str(env / "data"))
    assert server_folder(str(root))[0] == root.resolve()
    path, problem = server_folder("/etc")
    assert path is None and "outside the folders this server allows" in problem
