"""Jobs on a real two-node Ray cluster (tests/ray_cluster.py: head + worker, one CPU each, started once for
the module): a training job ends done with its model registered and the Train use case sees it as a local
job; a batch over 30 studies loses its worker node mid-way (the raylet killed) and still ends with every
study scored exactly once, scores equal to the local back end's; a batch job stops on cancel; a job that
ignores its cancel file is stopped on Ray; a bad MEDUI_RAY_ADDRESS, a relative jobs folder and a job
folder the node cannot see are refused with errors that say what to do."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from medui.db import worklist as store
from medui.errors import RayClusterError, SharedStorageError
from medui.synthetic.phantoms import write_labeled_folder
from medui.training import jobs, ray_jobs, runner
from medui.usecases import batch
from medui.usecases.batch import BatchRequest
from medui.usecases.batch_run import PAUSE_VARIABLE
from tests.batch_data import study_folder
from tests.conftest import DEMO_MODEL
from tests.orthanc import free_port
from tests.ray_cluster import available, served
from tests.synth import wait_for_job

pytestmark = pytest.mark.skipif(not available(), reason="Ray tests need ray[default]: pip install -r requirements.txt")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from served(tmp_path_factory)


@pytest.fixture()
def on_ray(cluster, monkeypatch):
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, cluster.dashboard)
    return cluster


def _until(check, timeout: float, what: str, job: jobs.Job | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout} s" + (f":\n{job.log_tail(60)}" if job else ""))


def test_a_training_job_on_ray_registers_a_model_the_train_page_lists(on_ray, tmp_path):
    from medui.ai.registry import find
    from medui.usecases.train import TrainRequest, start

    root = write_labeled_folder(tmp_path / "data", 24, seed=500, size=48, patients=12)
    job = start(TrainRequest(data=root, name="on-ray", start_from="architecture", arch="seed_cnn", epochs=1,
                             batch_size=8, min_per_class=5))
    assert runner.record(job.path)["submission_id"].startswith(f"medui-{job.id}")
    st = wait_for_job(job, 120)
    assert st["state"] == "done", (st, job.log_tail(60))
    assert find(st["model"]).card.name.startswith("on-ray")
    listed = {j.id: j for j in jobs.list_jobs()}  # what the Train page lists and shows
    assert listed[job.id].backend == "on Ray" and listed[job.id].result()["model"] == st["model"]
    _until(lambda: ray_jobs.status(runner.record(job.path))[0] == "SUCCEEDED", 30, "the Ray job's success")
    assert "will train: seed CNN" in (job.path / "log.txt").read_text()  # the job's own log, in its folder


def _local_scores(folder: Path) -> dict[str, dict[str, float]]:
    from medui.usecases.batch_run import run

    job = batch.start(BatchRequest(model=DEMO_MODEL, folder=str(folder)), launch=False)
    assert runner.record(job.path)["backend"] == runner.LOCAL and run(job.path) == 0
    assert batch.state_of(job)["backend"] == "local"
    return {r.study_uid: r.probabilities for r in store.studies([job.id])}


def test_a_ray_batch_loses_its_worker_node_and_scores_every_study_once(on_ray, isolated, tmp_path, monkeypatch):
    files = study_folder(Path(isolated["data"]) / "studies", n=30, n_ct=3, corrupt=())
    monkeypatch.setenv("MEDUI_RAY_GROUP", "10")  # 3 tasks of 10 studies
    monkeypatch.setenv(PAUSE_VARIABLE, f"ray-study-2:{tmp_path}")  # every task waits after its 2nd study
    job = batch.start(BatchRequest(model=DEMO_MODEL, folder=str(Path(isolated["data"]) / "studies")))
    assert job.backend == "on Ray"

    def worker_paused() -> bool:  # the worker node's task has written 2 of its 10 studies
        return bool({int(p.name.split("-")[1]) for p in tmp_path.glob("paused-*")} & set(on_ray.pids("worker")))
    _until(worker_paused, 90, "a task half done on the worker node", job)
    os.kill(on_ray.raylet_pid("worker"), signal.SIGKILL)  # the worker node dies mid-task
    assert store.counts(job.id)[store.SCORED] <= 6  # 2 a task: 8 of the dead task's studies are left to a retry
    _until(lambda: not on_ray.worker_alive(), 30, "the worker node's exit")
    (tmp_path / "go").touch()

    st = wait_for_job(job, 120)
    assert st["state"] == "done", job.log_tail(80)
    rows = store.studies([job.id])
    assert len(rows) == 30 and {r.study_uid for r in rows} == set(files)  # one row a study
    assert all(r.status == store.SCORED and r.writes == 1 for r in rows)  # each scored exactly once
    shown = batch.state_of(job)  # what the Worklist page shows on the job's row
    assert shown["done"] == 30 and shown["backend"] == "on Ray"
    from medui.ui.worklist import _job_line

    assert " · done · on Ray · " in _job_line(job.id, shown, job.started_by())
    local = _local_scores(Path(isolated["data"]) / "studies")
    for r in rows:
        names = sorted(r.probabilities)
        np.testing.assert_allclose([r.probabilities[c] for c in names], [local[r.study_uid][c] for c in names],
                                   atol=1e-6, rtol=0)


def test_a_ray_batch_job_stops_on_cancel(on_ray, isolated, monkeypatch):
    study_folder(Path(isolated["data"]) / "cancel", n=12, n_ct=0, corrupt=())
    monkeypatch.setenv("MEDUI_RAY_GROUP", "1")
    job = batch.start(BatchRequest(model=DEMO_MODEL, folder=str(Path(isolated["data"]) / "cancel")))
    _until(lambda: store.counts(job.id)[store.SCORED] >= 1, 90, "a first scored study", job)
    batch.cancel(job)
    assert wait_for_job(job, 60)["state"] == "cancelled", job.log_tail(40)
    assert batch.state_of(job)["state"] == "cancelled"
    assert store.counts(job.id)[store.QUEUED] > 0  # it stopped before the end


def test_a_ray_job_that_does_not_stop_by_itself_is_stopped_on_ray(on_ray, tmp_path, monkeypatch):
    root = write_labeled_folder(tmp_path / "data", 24, seed=501, size=48, patients=12)
    monkeypatch.setenv(runner.GRACE_VARIABLE, "0")  # no time to stop by itself
    job = jobs.start({"data": [str(root)], "out": "stopped", "arch": "seed_cnn", "epochs": 1, "batch_size": 8,
                      "min_per_class": 5})
    _until(lambda: ray_jobs.status(runner.record(job.path))[0] == "RUNNING", 60, "the Ray job's start")
    job.cancel()
    st = wait_for_job(job, 60)
    assert st["state"] == "cancelled" and "stopped on the Ray cluster" in st["message"], st
    assert ray_jobs.status(runner.record(job.path))[0] == "STOPPED"


def test_a_job_folder_a_node_cannot_see_is_refused(on_ray, tmp_path):
    rec = ray_jobs.submit(tmp_path / "not-on-the-nodes" / "batch-x", "batch-job")
    state = _until(lambda: (s := ray_jobs.status(rec))[0] in ("FAILED", "SUCCEEDED") and s, 60, "the Ray job's end")
    assert state[0] == "FAILED" and "not visible on this Ray node" in ray_jobs.logs_tail(rec)


def test_a_task_refuses_a_job_folder_its_node_cannot_see(tmp_path):
    from medui.usecases.batch_ray import score_group

    with pytest.raises(SharedStorageError, match="not visible on Ray node .* MEDUI_JOBS"):
        score_group(str(tmp_path / "elsewhere"), {"model": DEMO_MODEL}, [])


def test_a_bad_ray_address_says_which_and_what_to_do(isolated, monkeypatch):
    bad = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, bad)
    with pytest.raises(RayClusterError, match=f"Ray cluster at {bad} cannot be reached.*ray start --head") as exc:
        batch.start(BatchRequest(model=DEMO_MODEL, folder=str(isolated["data"])), launch=True)
    assert "unset it to run jobs on this machine" in str(exc.value)
    failed = batch.list_batch_jobs()[0]
    assert failed.status()["state"] == "failed" and bad in failed.status()["error"]  # not left 'queued'

    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, "head node please")
    with pytest.raises(RayClusterError, match="'head node please' is not a Ray cluster address"):
        ray_jobs.client()
    monkeypatch.setenv(ray_jobs.ADDRESS_VARIABLE, "auto")
    monkeypatch.setenv("MEDUI_JOBS", "jobs")
    with pytest.raises(SharedStorageError, match="MEDUI_JOBS='jobs' is a relative path"):
        ray_jobs.job_env(Path("/x/batch-1"))
