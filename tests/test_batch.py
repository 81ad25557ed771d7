"""Batch scoring jobs (their own processes) over a server folder and over a real Orthanc: 40 generated
studies (CR and 8-slice CT, two corrupt); scores equal single-study scoring to 1e-6, the corrupt ones are
listed with reasons, a cancel and a resume score every study exactly once, a kill -9 leaves the
database consistent, and the worklist (use case and CLI) lists the studies highest score first."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medui.cli import main
from medui.db import worklist as store
from medui.io.loader import load
from medui.pacs import dicomweb
from medui.pacs.model import Node, WebPeer
from medui.usecases import batch
from medui.usecases.batch import BatchRequest
from medui.usecases.batch_run import PAUSE_VARIABLE
from medui.usecases.diagnose import load_model, score
from tests.batch_data import study_folder
from tests.conftest import DEMO_MODEL
from tests.orthanc import served
from tests.synth import wait_for_job

CORRUPT = (5, 17)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    yield from served(tmp_path_factory)


def _wait_marker(marker: Path, job, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while not marker.exists():
        assert time.time() < deadline, f"the job did not reach its pause point:\n{job.log_tail()}"
        assert job.status().get("state") not in ("done", "failed", "cancelled"), job.log_tail()
        time.sleep(0.1)
    time.sleep(0.1)
    return int(marker.read_text())


def _consistent(job_id: str) -> list[store.Study]:
    """Every row is whole: queued without a result, scored with all of it, failed with a reason."""
    rows = store.studies([job_id])
    for r in rows:
        if r.status == store.QUEUED:
            assert r.score is None and r.writes == 0
        elif r.status == store.SCORED:
            assert r.score is not None and r.probabilities and r.label and r.scored_at and r.threshold is not None
        else:
            assert r.status == store.FAILED and r.reason
    return rows


def _interrupted_then_finished(request: BatchRequest, tmp_path: Path, monkeypatch) -> tuple[str, list[store.Study]]:
    """Start, cancel after 10 studies, resume, kill -9 after 10 more, resume to the end."""
    marker = tmp_path / "paused"
    monkeypatch.setenv(PAUSE_VARIABLE, f"batch-study-10:{marker}")
    job = batch.start(request)
    _wait_marker(marker, job)
    batch.cancel(job)
    assert wait_for_job(job, 120)["state"] == "cancelled"
    assert batch.state_of(job)["state"] == store.get_job(job.id).state == "cancelled"  # type: ignore[union-attr]
    rows = _consistent(job.id)
    assert len(rows) == 40 and sum(r.status != store.QUEUED for r in rows) == 10
    retried = sum(r.status == store.FAILED for r in rows)  # the next run tries these again first

    marker.unlink()
    batch.resume(job)
    pid = _wait_marker(marker, job)
    os.kill(pid, signal.SIGKILL)
    st = wait_for_job(job, 60)
    assert st["state"] == "failed" and "ended unexpectedly" in st["error"]
    assert batch.state_of(job)["state"] == store.get_job(job.id).state == "failed"  # type: ignore[union-attr]
    rows = _consistent(job.id)
    # 20 studies processed, the failed ones of the first run among them again (the source's order, by UID, is
    # random: 0, 1 or both corrupt studies may come in the first ten); at most the 2 corrupt ones failed
    assert sum(r.status != store.QUEUED for r in rows) == 20 - retried
    assert sum(r.status == store.SCORED for r in rows) >= 18 - retried

    monkeypatch.delenv(PAUSE_VARIABLE)
    marker.unlink()
    batch.resume(job)
    assert wait_for_job(job, 180)["state"] == "done", job.log_tail()
    return job.id, _consistent(job.id)


def _check(rows: list[store.Study], files: dict[str, list[Path]]) -> None:
    assert {r.study_uid for r in rows} == set(files) and len(rows) == 40
    corrupt = {uid for uid, paths in files.items() if "cr005" in str(paths[0]) or "cr017" in str(paths[0])}
    failed = {r.study_uid: r.reason for r in rows if r.status == store.FAILED}
    assert set(failed) == corrupt
    assert all("truncated" in reason for reason in failed.values())
    scored = [r for r in rows if r.status == store.SCORED]
    assert len(scored) == 38 and all(r.writes == 1 for r in scored)  # each study scored exactly once
    model = load_model(DEMO_MODEL)
    for r in scored:
        series = load(files[r.study_uid]).series
        dx = score(series[0], model)
        got = np.array([r.probabilities[c] for c in dx.class_names])
        want = np.array([dx.prediction.probabilities[c] for c in dx.class_names])
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        assert r.label == dx.prediction.label and r.series_uid == series[0].uid
        if series[0].pixels.shape[0] > 1:
            assert r.modality == "CT" and r.slice_scores is not None
            np.testing.assert_allclose(r.slice_scores, dx.prediction.slice_scores, atol=1e-6, rtol=0)
        assert r.flagged == (r.score is not None and r.score >= dx.prediction.threshold)
    assert {r.modality for r in scored} == {"CR", "CT"}


def _check_worklist(job_id: str, capsys) -> None:
    rows = batch.worklist([job_id])
    scores = [r.score for r in rows if r.status == "scored"]
    assert scores == sorted(scores, reverse=True) and [r.status for r in rows[-2:]] == ["failed", "failed"]
    flagged = batch.worklist([job_id], flagged_only=True)
    assert flagged and all(r.flagged for r in flagged)
    assert {r.modality for r in batch.worklist([job_id], modality="ct")} == {"CT"}
    capsys.readouterr()
    assert main(["worklist", "--flagged", "--json", "--job", job_id]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["study_uid"] for r in printed] == [r.study_uid for r in flagged]
    csv_text = batch.to_csv(rows)
    assert csv_text.count("\n") == 41 and f"score {rows[0].model}" in csv_text.splitlines()[0]


def test_a_folder_batch_survives_cancel_and_kill(isolated, tmp_path, monkeypatch, capsys):
    files = study_folder(Path(isolated["data"]) / "studies", corrupt=CORRUPT)
    job_id, rows = _interrupted_then_finished(
        BatchRequest(model=DEMO_MODEL, folder=str(Path(isolated["data"]) / "studies")), tmp_path, monkeypatch)
    _check(rows, files)
    _check_worklist(job_id, capsys)
    log = (Path(isolated["jobs"]) / job_id / "log.txt").read_text()
    for text in log, json.dumps(batch.state_of(batch.find_job(job_id))):
        assert "Batch^Patient" not in text and "PAT-0" not in text  # no patient names or IDs in the job's files


def test_a_pacs_batch_survives_cancel_and_kill(orthanc, isolated, tmp_path, monkeypatch, capsys):
    files = study_folder(tmp_path / "studies", corrupt=CORRUPT)
    node = Node("default", WebPeer(orthanc.dicomweb))
    orthanc.clear()
    dicomweb.store(node, [pydicom.dcmread(p) for paths in files.values() for p in paths])
    monkeypatch.setenv("MEDUI_DICOMWEB_URL", orthanc.dicomweb)
    job_id, rows = _interrupted_then_finished(BatchRequest(model=DEMO_MODEL, node="default", limit=40), tmp_path,
                                              monkeypatch)
    _check(rows, files)
    _check_worklist(job_id, capsys)


def test_a_source_outside_the_data_roots_is_refused(tmp_path_factory):
    from medui.errors import ServerFolderError

    with pytest.raises(ServerFolderError, match="outside the folders"):
        batch.start(BatchRequest(model=DEMO_MODEL, folder=str(tmp_path_factory.getbasetemp().parent)), launch=False)


def test_a_pacs_batch_sends_the_results_of_flagged_studies_back(orthanc, isolated, tmp_path, monkeypatch):
    from medui.pacs.model import StudyQuery
    from medui.usecases import pacs
    from medui.usecases.batch_run import run
    from tests.batch_data import cr_study

    node = Node("default", WebPeer(orthanc.dicomweb))
    orthanc.clear()
    paths = [p for k in range(4) for p in cr_study(tmp_path / "send", k)]  # lesions in studies 1 and 3
    dicomweb.store(node, [pydicom.dcmread(p) for p in paths])
    monkeypatch.setenv("MEDUI_DICOMWEB_URL", orthanc.dicomweb)
    with pytest.raises(Exception, match="needs a PACS source"):
        batch.start(BatchRequest(model=DEMO_MODEL, folder=str(tmp_path / "send"), send=True), launch=False)
    job = batch.start(BatchRequest(model=DEMO_MODEL, node="default", send=True), launch=False)
    assert run(job.path) == 0
    rows = store.studies([job.id])
    flagged = {r.study_uid for r in rows if r.flagged}
    assert flagged and len(flagged) < 4
    assert f"results of {len(flagged)} flagged studies sent" in batch.state_of(job)["message"]
    for study in pacs.search(node, StudyQuery()).items:
        modalities = sorted(s.modality for s in pacs.series(node, study.uid))
        assert modalities == (["CR", "DOC", "OT", "SEG", "SR"] if study.uid in flagged else ["CR"]), modalities


def test_a_zip_of_studies_and_a_png_are_scored_and_reopened(isolated):
    import io
    import zipfile

    from medui.usecases.batch_run import run
    from tests.batch_data import cr_study
    from tests.synth import png_bytes

    folder = Path(isolated["data"])
    paths = [p for k in range(3) for p in cr_study(folder / "z", k)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in paths:
            zf.write(p, p.relative_to(folder / "z"))
        zf.writestr("Doe^John/chest.png", png_bytes((np.random.default_rng(0).random((64, 64)) * 255).astype("uint8")))
    (folder / "studies.zip").write_bytes(buf.getvalue())
    job = batch.start(BatchRequest(model=DEMO_MODEL, folder=str(folder / "studies.zip")), launch=False)
    assert run(job.path) == 0
    rows = store.studies([job.id])
    assert len(rows) == 4 and all(r.status == store.SCORED for r in rows)
    png = next(r for r in rows if r.study_uid.startswith("file-"))
    assert "Doe" not in png.study_uid  # a file without UIDs is keyed by a hash of its path, not its name
    assert len(batch.study_inputs(job.id, png.study_uid)) == 1
