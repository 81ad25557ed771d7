"""No patient identifier reaches a file MedUI writes: DICOM files (and the folder and file names of a
<class>/<PatientID>/<PatientName>.dcm export) carrying unique identifiers go through load, `info`,
`predict`, an upload staged for training, the dataset check, a real training job and `evaluate`; then
every file under the jobs folder (uploads included), the registry and the temporary folders is
searched for every identifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medui.training import jobs
from tests.synth import Upload, identified_dataset, identifier_forms, leaks, wait_for_job

ROOT = Path(__file__).resolve().parents[1]


def _medui(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medui", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)




def test_no_identifier_reaches_any_file_medui_writes(tmp_path, isolated, monkeypatch):
    from medui.io.loader import load
    from medui.training.fit import TrainConfig
    from medui.usecases.train import check_dataset, stage_upload

    t0 = time.time()
    data, texts = identified_dataset(tmp_path / "export", per_class=10)
    forms = identifier_forms(texts)
    scratch = tmp_path / "tmp"  # TMPDIR of this process and of every MedUI process it starts
    work = tmp_path / "cwd"  # where the commands run (and write overlays)
    scratch.mkdir()
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    one = next(data.rglob("*.dcm"))
    # an unreadable file and a duplicate, both in a patient's folder: the report lists them by name
    broken = data / "normal" / "QZPID0X77" / "Qzfam0x_broken.dcm"
    broken.write_bytes(one.read_bytes()[:300])
    twin = next(data.glob("pneumonia/*/*.dcm"))
    (twin.parent / "Qzfam19x_copy.dcm").write_bytes(twin.read_bytes())

    # the same export uploaded (as a browser sends a folder): staged de-identified, grouped the same
    staged = stage_upload([Upload(p.relative_to(data.parent).as_posix(), p.read_bytes())
                           for p in sorted(data.rglob("*")) if p.is_file()])
    assert check_dataset(staged, min_per_class=5)[0].report.patients == \
        check_dataset(data, min_per_class=5)[0].report.patients

    loaded = load([str(data)])
    assert len(loaded.series) >= 20 and loaded.skipped
    info = _medui(["info", str(data), "--json"], env, work)
    assert info.returncode == 0, info.stderr
    predict = _medui(["predict", str(one), "--json", "--cam", "gradcam", "--out", str(work / "overlays")], env, work)
    assert predict.returncode == 0, predict.stderr
    index, _ = check_dataset(data, min_per_class=5)
    assert index.report.grouping == "DICOM PatientID" and index.report.unreadable and index.report.duplicates
    cfg = TrainConfig(data=[str(data)], out="private", arch="seed_cnn", epochs=1, batch_size=8, min_per_class=5,
                      weights=None, val_fraction=0.25, test_fraction=0.25)
    job = jobs.start(cfg.to_json(), index=index)
    assert wait_for_job(job, 300, 0.5)["state"] == "done", job.log_tail()
    # the same data through the CLI path, which indexes the folder itself
    cli = _medui(["train", str(data), "--arch", "seed_cnn", "--epochs", "1", "--batch-size", "8", "--out",
                  "private-cli", "--min-per-class", "5", "--weights", "none", "--json"], env, work)
    assert json.loads(cli.stdout)["state"] == "done", cli.stderr[-3000:]
    assert json.loads((isolated["models"] / "private-v1.json").read_text())["training_data"]["source"] == str(data)
    evaluate = _medui(["evaluate", str(data), "--model", "private-v1", "--json"], env, work)
    assert evaluate.returncode == 0, evaluate.stderr

    # a job that fails on the data (a patient's file gone since the check) says so without naming it
    gone = next(data.glob("pneumonia/*/*.dcm"))
    gone.unlink()
    stale = jobs.start({**cfg.to_json(), "out": "stale"}, index=index)
    assert wait_for_job(stale, 300, 0.5)["state"] == "failed", stale.log_tail()
    assert "check the data again" in stale.status()["error"]

    # overlays are named by number, not after the scan the user gave (`predict --out`): scanned too
    assert [p.name for p in (work / "overlays").iterdir()] == ["scan001_gradcam_slice1.png"]
    assert json.loads(predict.stdout)["results"][0]["overlay_name"] == "scan001"
    found = leaks([isolated["jobs"], isolated["models"], scratch, work], forms)
    assert not found, "identifiers in files MedUI wrote:\n" + "\n".join(found)
    print(f"privacy end to end: {time.time() - t0:.0f} s")


def test_the_leak_search_finds_what_it_is_meant_to(tmp_path):
    """The search itself: PN with '^' or spaces, any case, in names and in bytes."""
    _, texts = identified_dataset(tmp_path / "export", per_class=1)
    forms = identifier_forms(texts)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("patient QZFAM0X QZGIV0X")
    (out / "qzpid1x77.log").write_text("nothing")
    (out / "b.bin").write_bytes(b"\x00\x01 born 1910-04-17")
    (out / "clean.txt").write_text("nothing here")
    found = leaks([out], forms)
    assert any("a.txt" in f for f in found) and any("qzpid1x77.log" in f for f in found)
    assert any("b.bin" in f for f in found) and not any("clean.txt" in f for f in found)


def test_a_dataset_path_that_names_a_patient_is_withheld_from_the_card(tmp_path, isolated):
    """The card keeps the dataset folder as the user gave it, unless that path names one of its patients
    (an export of one patient's studies): then the card says it was withheld."""
    from medui.training import runs
    from medui.training.fit import TrainConfig
    from medui.usecases.train import check_dataset

    data, texts = identified_dataset(tmp_path / "QZPID3X77 export", per_class=10)
    index, _ = check_dataset(data, min_per_class=5)
    assert index.report.source_names_patient
    cfg = TrainConfig(data=[str(data)], out="named", arch="seed_cnn", epochs=1, batch_size=8, min_per_class=5,
                      weights=None, val_fraction=0.25, test_fraction=0.25)
    job = jobs.create(cfg.to_json(), index=index)
    assert runs.run_job(job.path) == 0, job.status()
    card = json.loads((isolated["models"] / "named-v1.json").read_text())
    assert "withheld" in card["training_data"]["source"]
    assert not leaks([isolated["models"]], identifier_forms(texts))
