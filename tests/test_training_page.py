"""The Train page's jobs box and choices: newest first, the started job selected, choices kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medui.synthetic.phantoms import write_labeled_folder
from medui.training import jobs

ROOT = Path(__file__).resolve().parents[1]


def _job(out: str, created: float, prefix: str = "", state: str = "done") -> jobs.Job:
    job = jobs.create({"data": [], "out": out, "epochs": 1}, prefix=prefix)
    jobs.write_json(job.path / "status.json", {"state": state, "created": created})
    return job


def test_jobs_are_listed_newest_first_whatever_their_id():
    old_cli = _job("old-cli", created=1000.0, prefix="cli-")  # 'cli-…' sorts after '2026…' by name
    new_page = _job("new-page", created=2000.0)
    older_page = _job("older-page", created=500.0)
    assert [j.id for j in jobs.list_jobs()] == [new_page.id, old_cli.id, older_page.id]
    legacy = jobs.create({"data": [], "out": "legacy"}, prefix="zz-")
    (legacy.path / "status.json").write_text("{}")  # no 'created': the folder's params.json time (now)
    assert jobs.list_jobs()[0].id == legacy.id


@pytest.fixture()
def no_launch(monkeypatch):
    """Jobs are created as the page would, but no training process starts."""
    monkeypatch.setattr(jobs, "launch", lambda job: job)


def _page(tmp_path: Path) -> AppTest:
    root = write_labeled_folder(tmp_path / "data", 24, seed=500, size=48)
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    at.text_input(key="train.path").set_value(str(root)).run()
    assert not at.exception
    return at


def test_the_started_job_is_selected_and_the_choice_survives_leaving_the_page(tmp_path, no_launch):
    old = _job("old", created=1.0)
    at = _page(tmp_path)
    assert at.selectbox(key="train.job-choice").value == old.id
    at.text_input(key="train.name").set_value("new-model")
    at.button[0].click().run()  # 'Start training'
    assert not at.exception
    new = jobs.list_jobs()[0]
    assert new.params()["out"] == "new-model"
    assert at.selectbox(key="train.job-choice").value == new.id
    at.run()  # a rerun (the page polling, a widget) keeps it
    assert at.selectbox(key="train.job-choice").value == new.id
    at.selectbox(key="train.job-choice").select(old.id).run()
    assert at.session_state["train.job"] == old.id
    # leaving the page drops widget state; the session's remembered job brings the choice back
    again = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120)
    again.session_state["train.job"] = old.id
    again.run()
    assert again.selectbox(key="train.job-choice").value == old.id


def test_start_from_is_kept_when_a_job_registers_a_model(tmp_path, no_launch, isolated):
    at = _page(tmp_path)
    box = at.selectbox(key="train.start-from")
    choice = next(o for o in box.options if o.startswith("Architecture small_cnn"))
    box.set_value(choice)
    at.button[0].click().run()
    assert at.selectbox(key="train.start-from").value == choice
    for suffix in (".keras", ".json"):  # a job ended and registered a model: the list of choices grows
        src = isolated["models"] / f"demo-chest-phantom-v1{suffix}"
        shutil.copy2(src, isolated["models"] / f"demo-chest-phantom-v2{suffix}")
    card = isolated["models"] / "demo-chest-phantom-v2.json"
    card.write_text(card.read_text().replace('"version": 1', '"version": 2'))
    at.run()
    box = at.selectbox(key="train.start-from")
    assert any("demo-chest-phantom-v2" in o for o in box.options)
    assert box.value == choice
    # leaving the page (to promote that model on the Models page) and coming back keeps it too
    again = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120)
    again.session_state["train.start-from.kept"] = at.session_state["train.start-from.kept"]
    again.run()
    assert again.selectbox(key="train.start-from").value == choice


def test_a_registered_model_is_called_a_candidate(no_launch):
    job = _job("m", created=1.0)
    jobs.write_json(job.path / "result.json", {
        "model": "m-v1", "device": "CPU", "mixed_precision": False, "train_s": 1.0, "parent": None,
        "evaluation": {"n": 4, "classes": ["normal", "lesion"], "auc": 0.9, "auc_ci": [0.8, 1.0], "threshold": 0.5,
                       "confusion_matrix": [[2, 0], [0, 2]]}})
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    assert not at.exception
    text = " ".join(s.value for s in at.success)
    assert "m-v1" in text and "candidate" in text and "Models page" in text and "Diagnose" not in text


def test_the_eta_is_an_upper_bound(no_launch):
    import os

    job = _job("running", created=1.0, state="running")
    jobs.write_json(job.path / "status.json", {"state": "running", "created": 1.0, "pid": os.getpid(), "epoch": 2,
                                               "eta_s": 90, "message": "epoch 3/12 running (full)"})
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    assert not at.exception
    texts = [p.proto.text for p in at.get("progress")]
    assert any("at most 1 min 30 s left" in t and "early stopping" in t for t in texts), texts
    assert any("epoch 3/12 running" in c.value for c in at.caption)


def test_a_model_that_failed_evaluation_is_shown_as_failed_with_its_band(no_launch):
    job = _job("flat", created=1.0)
    jobs.write_json(job.path / "result.json", {
        "model": "flat-v1", "device": "CPU", "mixed_precision": False, "train_s": 1.0, "parent": None,
        "evaluation_failed": True, "indeterminate": [0.41, 0.47],
        "calibration_warning": "calibration failed: the fitted temperature is 20.1, outside the sane range 0.2-5",
        "evaluation": {"n": 4, "classes": ["normal", "lesion"], "auc": 0.5, "auc_ci": [0.2, 0.8], "threshold": 0.45,
                       "confusion_matrix": [[1, 1], [1, 1]]}})
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    assert not at.exception and not at.success
    text = " ".join(e.value for e in at.error)
    assert "Evaluation failed" in text and "temperature is 20.1" in text and "do not promote it" in text
    assert any("0.410 to 0.470" in c.value for c in at.caption)


def test_a_folder_with_nothing_readable_shows_the_unreadable_files(tmp_path):
    for label in ("normal", "lesion"):
        (tmp_path / "junk" / label).mkdir(parents=True)
        for k in range(3):
            (tmp_path / "junk" / label / f"notes_{k}.txt").write_text("not an image")
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    at.text_input(key="train.path").set_value(str(tmp_path / "junk")).run()
    assert not at.exception
    assert any("See the list of unreadable files" in e.value for e in at.error)
    listed = [m.value for m in at.expander[0].markdown]  # markdown-escaped: notes\_0\.txt
    assert at.expander[0].label == "Unreadable files (6)" and len(listed) == 6
    assert all("notes" in m and "is not a DICOM file" in m for m in listed), listed
