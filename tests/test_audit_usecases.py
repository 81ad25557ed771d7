"""The use cases check the user's permission on the server and write the audit trail: who opened which
series (by UID, never a name), scored, explained, registered, deleted, promoted, started and cancelled."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from medui.accounts import audit
from medui.accounts.actor import Actor, acting_as
from medui.accounts.roles import ADMIN, CLINICIAN, ML_ENGINEER
from medui.errors import NotAllowedError
from medui.io.content import content_key
from medui.io.store import SeriesStore, StoreConfig
from medui.training import jobs
from medui.training.fit import TrainConfig
from medui.usecases.reading import open_inputs
from tests.synth import phantom_volume, write_series

CLARA = Actor("clara-sub", "Clara Clinician", frozenset({CLINICIAN}))
EMIL = Actor("emil-sub", "Emil Engineer", frozenset({ML_ENGINEER}))
ERIN = Actor("erin-sub", "Erin Engineer", frozenset({ML_ENGINEER}))
ADA = Actor("ada-sub", "Ada Admin", frozenset({ADMIN}))
NOBODY = Actor("nobody-sub", "No Role", frozenset())
SAMPLE = Path(__file__).resolve().parents[1] / "medui" / "reading" / "sample_data" / "phantom_chest_nodule.dcm"


def _rows(action: str) -> list[audit.AuditEvent]:
    return audit.events(audit.Query(actions=(action,)))


def test_opening_a_series_records_its_uids_and_no_patient_data(tmp_path, isolated):
    files = write_series(tmp_path / "s", phantom_volume(4, rows=24, cols=24))
    ds = pydicom.dcmread(files[0])
    store = SeriesStore(StoreConfig(64 * 2**20, 900, tmp_path / "spill"))
    record = open_inputs([str(tmp_path / "s")], store, actor=CLARA)
    assert len(record.keys) == 1
    (row,) = _rows(audit.OPEN_SERIES)
    assert (row.subject, row.display_name, row.outcome) == ("clara-sub", "Clara Clinician", "ok")
    assert row.target == f"study {ds.StudyInstanceUID} series {ds.SeriesInstanceUID}"
    assert row.details == {"files": 1, "series": 1, "skipped": 0, "shared": False}
    open_inputs([str(tmp_path / "s")], store, actor=ADA)  # a second user: read once, recorded again
    assert [r.subject for r in _rows(audit.OPEN_SERIES)] == ["ada-sub", "clara-sub"]
    assert _rows(audit.OPEN_SERIES)[0].details["shared"] is True
    stored = b"".join(p.read_bytes() for p in Path(isolated["jobs"]).glob("medui.db*"))
    for identifier in (str(ds.PatientName), "Doe", "Jane", str(ds.PatientID), str(ds.PatientBirthDate)):
        assert identifier.encode() not in stored


def test_a_user_without_a_role_cannot_open_scans_and_the_refusal_is_recorded(tmp_path):
    write_series(tmp_path / "s", phantom_volume(3, rows=16, cols=16))
    store = SeriesStore(StoreConfig(64 * 2**20, 900, tmp_path / "spill"))
    with pytest.raises(NotAllowedError, match="opening scans needs the clinician role"):
        open_inputs([str(tmp_path / "s")], store, actor=NOBODY)
    assert not store.has(content_key([str(tmp_path / "s")]))  # nothing was read
    (row,) = _rows(audit.OPEN_SERIES)
    assert (row.subject, row.outcome, row.details["error"]) == ("nobody-sub", "refused", "NotAllowedError")


@pytest.fixture()
def demo():
    from medui.usecases.diagnose import load_model

    return load_model("demo-chest-phantom-v1")  # this test's registry (tests/conftest.py)


def test_score_and_explain_are_recorded_for_the_acting_user(demo):
    from medui.io.loader import load
    from medui.usecases.diagnose import saliency, score

    series = load([str(SAMPLE)]).series[0]
    with acting_as(CLARA):  # what the app shell does for every page run
        dx = score(series, demo)
    saliency(dx, 0, "gradcam", actor=CLARA)
    (scored,) = _rows(audit.SCORE)
    (explained,) = _rows(audit.EXPLAIN)
    assert scored.subject == explained.subject == "clara-sub"
    assert scored.target == f"study {series.study_uid} series {series.uid}" and series.study_uid and series.uid
    assert scored.details == {"model": "demo-chest-phantom-v1"}
    assert explained.details == {"model": "demo-chest-phantom-v1", "method": "gradcam", "slice": 1}
    with pytest.raises(NotAllowedError):
        score(series, demo, actor=NOBODY)
    assert _rows(audit.SCORE)[0].outcome == "refused"


def _card_bytes(isolated, name: str) -> bytes:
    card = json.loads((Path(isolated["models"]) / "demo-chest-phantom-v1.json").read_text())
    return json.dumps({**card, "name": name, "version": 1, "demo": False}).encode()


def test_register_delete_and_promote_need_their_roles_and_cards_record_who(isolated):
    from medui.ai.registry import find, list_models
    from medui.usecases.models import delete, promote, register_file

    demo_file = Path(isolated["models"]) / "demo-chest-phantom-v1.keras"
    with pytest.raises(NotAllowedError, match="registering a model needs the ml-engineer role"):
        register_file(demo_file, "mine.keras", _card_bytes(isolated, "mine"), actor=CLARA)
    assert [e.id for e in list_models()] == ["demo-chest-phantom-v1"]
    entry = register_file(demo_file, "mine.keras", _card_bytes(isolated, "mine"), actor=EMIL)
    assert find(entry.id).card.registered_by == {"subject": "emil-sub", "name": "Emil Engineer"}
    assert [(r.subject, r.target, r.outcome) for r in _rows(audit.REGISTER_MODEL)] == [
        ("emil-sub", "mine-v1", "ok"), ("clara-sub", "mine.keras", "refused")]
    with pytest.raises(NotAllowedError, match="promoting a model needs the ml-engineer role"):
        promote(entry.id, override="reader study", actor=CLARA)
    promote(entry.id, override="reader study 2026-11", actor=EMIL)
    assert _rows(audit.PROMOTE_MODEL)[0].details == {"override": "reader study 2026-11"}
    with pytest.raises(NotAllowedError, match="deleting a model needs the admin role"):
        delete(entry.id, actor=EMIL)
    assert find(entry.id)  # still there
    delete(entry.id, actor=ADA)
    assert [e.id for e in list_models()] == ["demo-chest-phantom-v1"]
    assert [(r.subject, r.outcome) for r in _rows(audit.DELETE_MODEL)] == [("ada-sub", "ok"), ("emil-sub", "refused")]
    from medui.ai import audit as registry_audit  # the registry's own log still names the user

    assert registry_audit.read(Path(isolated["models"]))[-1]["user"] == "Ada Admin (ada-sub)"


def _params(data: Path) -> dict:
    return TrainConfig(data=[str(data)], out="m", arch="seed_cnn", epochs=1).to_json()


def test_jobs_record_who_started_them_and_cancel_is_theirs_or_an_admins(tmp_path):
    from medui.usecases.train import TrainRequest, cancel, start

    job = jobs.create(_params(tmp_path), started_by=EMIL.to_json())
    assert job.started_by() == {"subject": "emil-sub", "name": "Emil Engineer"}
    assert json.loads((job.path / "started_by.json").read_text()) == EMIL.to_json()  # no roles, no tokens
    with acting_as(ERIN):  # the command line's way: the acting user
        assert jobs.create(_params(tmp_path)).started_by()["subject"] == "erin-sub"
    with pytest.raises(NotAllowedError, match="started by Emil Engineer"):
        cancel(job, actor=ERIN)
    with pytest.raises(NotAllowedError, match="cancelling a training job needs the ml-engineer role"):
        cancel(job, actor=CLARA)
    assert not job.cancel_requested
    cancel(job, actor=ADA)
    assert job.cancel_requested
    assert [(r.subject, r.outcome) for r in _rows(audit.CANCEL_JOB)] == [
        ("ada-sub", "ok"), ("clara-sub", "refused"), ("erin-sub", "refused")]
    before = len(jobs.list_jobs())
    with pytest.raises(NotAllowedError, match="starting a training job needs the ml-engineer role"):
        start(TrainRequest(data=tmp_path, name="m"), actor=CLARA)
    assert len(jobs.list_jobs()) == before
    assert _rows(audit.START_JOB)[0].outcome == "refused"


def test_a_training_run_registers_its_model_for_the_user_who_started_the_job(tmp_path):
    from medui.training.runs import _audit_registration

    job = jobs.create(_params(tmp_path), started_by=EMIL.to_json())
    _audit_registration(job, "m-v1")  # what `runs.register` does once the trained model is in the registry
    (row,) = _rows(audit.REGISTER_MODEL)
    assert (row.subject, row.display_name, row.via, row.target, row.details) == (
        "emil-sub", "Emil Engineer", "job", "m-v1", {"job": job.id})


def test_a_model_trained_from_the_command_line_names_who_trained_it(tmp_path, isolated):
    import getpass
    import subprocess
    import sys

    from medui.synthetic.phantoms import write_labeled_folder

    data = write_labeled_folder(tmp_path / "data", 24, seed=7, size=48)
    out = subprocess.run([sys.executable, "-m", "medui", "train", str(data), "--arch", "seed_cnn", "--epochs", "1",
                          "--out", "who", "--min-per-class", "4", "--json"], capture_output=True, text=True,
                         timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode in (0, 3), out.stderr[-3000:]  # 3: registered, flagged by its evaluation
    card = json.loads((Path(isolated["models"]) / "who-v1.json").read_text())
    me = f"cli:{getpass.getuser()}"
    assert card["registered_by"] == {"subject": me, "name": getpass.getuser()}
    (job,) = jobs.list_jobs()
    assert job.started_by()["subject"] == me
    (row,) = _rows(audit.REGISTER_MODEL)
    assert (row.subject, row.via, row.target) == (me, "job", "who-v1")


def test_an_exported_overlay_is_recorded_with_what_left_the_server(demo):
    from medui.io.loader import load
    from medui.usecases.diagnose import export_overlay, overlay, score

    series = load([str(SAMPLE)]).series[0]
    dx = score(series, demo, actor=CLARA)
    png = export_overlay(dx, overlay(dx, 0, "gradcam", actor=CLARA), actor=CLARA)
    assert png.startswith(b"\x89PNG")
    (row,) = _rows(audit.EXPORT_RESULT)
    assert (row.subject, row.target) == ("clara-sub", f"study {series.study_uid} series {series.uid}")
    assert row.details == {"model": "demo-chest-phantom-v1", "method": "gradcam", "slice": 1}


def test_results_written_or_sent_are_recorded_and_sending_needs_the_role(tmp_path, demo):
    from medui.pacs.model import Node, WebPeer
    from medui.usecases import results

    synth_paths = write_series(tmp_path / "ct", phantom_volume(4, rows=64, cols=64))
    study = pydicom.dcmread(synth_paths[0]).StudyInstanceUID
    [scored], _ = results.report(results.read_inputs([tmp_path / "ct"]), demo, "gradcam", index=1)
    assert scored.results is not None, scored.error
    rows = results.write(scored.results, tmp_path / "out", actor=CLARA)
    (exported,) = _rows(audit.EXPORT_RESULT)
    assert (exported.subject, exported.target) == ("clara-sub", f"study {study}")
    assert exported.details == {"objects": len(rows), "to": "folder"}
    node = Node(name="archive", dicomweb=WebPeer(url="http://127.0.0.1:9/dicom-web"))
    with pytest.raises(NotAllowedError, match="sending results to a PACS needs the clinician role"):
        results.send(scored.results, node, actor=NOBODY)  # refused before any connection is tried
    (sent,) = _rows(audit.SEND_RESULT)
    assert (sent.subject, sent.outcome, sent.target) == ("nobody-sub", "refused", f"study {study}")
    assert sent.details["node"] == "archive" and sent.details["objects"] == len(scored.results.objects)
