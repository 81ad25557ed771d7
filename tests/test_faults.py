"""Faults: a training job killed (SIGKILL) at any moment leaves the registry as it was or with the new
model complete, releases the training lock and shows 'failed' with its log; job state survives a
restart; read-only or unusable folders and hostile names give clear messages."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from medui.ai import registry
from medui.synthetic.phantoms import make_phantom, write_png
from medui.training import jobs
from medui.training.fit import TrainConfig
from tests.synth import wait_for_job


def _data(root: Path, n: int = 10) -> Path:
    for k in range(n):
        write_png(make_phantom(100 + k, 32, lesion=False), root / "normal" / f"n{k}.png")
        write_png(make_phantom(200 + k, 32, lesion=True), root / "lesion" / f"l{k}.png")
    return root


def _params(data: Path, out: str = "faulty") -> dict:
    return TrainConfig(data=[str(data)], out=out, arch="seed_cnn", epochs=1, batch_size=8, min_per_class=5,
                       weights=None, val_fraction=0.25, test_fraction=0.25).to_json()



def _files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def _complete(root: Path) -> None:
    """Every model file has its partner; nothing half-registered is listed."""
    names = _files(root)
    for name in names:
        if name.endswith(".keras"):
            assert name[:-6] + ".json" in names, f"{name} has no card: {sorted(names)}"
        if name.endswith(".json") and name not in ("promotions.json",):
            assert name[:-5] + ".keras" in names, f"{name} has no .keras: {sorted(names)}"


@pytest.mark.parametrize("point", ["fit", "save", "register", "card"])
def test_a_job_killed_at_any_moment_leaves_no_half_model(tmp_path, isolated, monkeypatch, point):
    t0 = time.time()
    models = isolated["models"]
    before = [e.id for e in registry.list_models(models)]
    marker = tmp_path / "paused"
    monkeypatch.setenv(registry.PAUSE_VARIABLE, f"{point}:{marker}")
    job = jobs.start(_params(_data(tmp_path / "data")))
    deadline = time.time() + 120
    while not marker.exists():
        assert time.time() < deadline and job.status()["state"] not in jobs.TERMINAL, job.log_tail()
        time.sleep(0.1)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    st = wait_for_job(job, 240, 0.3)
    assert st["state"] == "failed" and "ended unexpectedly" in st["error"] and "see the log" in st["error"]
    assert job.log_tail()  # the log is kept
    after = [e.id for e in registry.list_models(models)]  # rolls a registration killed before its card forward
    _complete(models)
    assert after == (["faulty-v1", *before] if point == "card" else before)
    if point == "card":
        registry.load_keras(registry.find("faulty-v1", models).path)  # complete: it loads
    # the lock is free and the version numbers are not confused: the next job registers the next version
    monkeypatch.delenv(registry.PAUSE_VARIABLE)
    nxt = jobs.start(_params(tmp_path / "data"))
    assert wait_for_job(nxt, 240, 0.3)["state"] == "done", nxt.log_tail()
    assert nxt.result()["model"] == ("faulty-v2" if point == "card" else "faulty-v1")
    _complete(models)
    # temporaries of the dead registration go once stale
    for p in models.glob(".*.partial"):
        os.utime(p, (time.time() - registry.STALE_S - 1,) * 2)
    registry.list_models(models)
    assert not list(models.glob(".*.partial"))
    print(f"killed at {point}: {time.time() - t0:.1f} s")


def test_an_orphan_keras_or_card_never_takes_a_version_twice(isolated):
    models = isolated["models"]
    (models / "orphan-v1.keras").write_bytes(b"half")  # a model file without card (an older MedUI, by hand)
    (models / "orphan-v2.json").write_text("{}")  # a card without model
    assert "orphan" not in {e.card.name for e in registry.list_models(models)}
    assert registry.next_version("orphan", models) == 3
    assert (models / "orphan-v1.keras").exists()  # never deleted: it may be someone's file


# --- folders that cannot be written -------------------------------------------------------------------------

def _unwritable(tmp_path: Path, how: str) -> Path:
    """A folder MedUI cannot write: under a regular file (mkdir fails, even as root), or chmod 0o555
    (skipped as root, where permissions do not stop writes)."""
    if how == "under-a-file":
        (tmp_path / "a-file").write_text("not a folder")
        return tmp_path / "a-file" / "folder"
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop root from writing (the 'under-a-file' case covers it)")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("how", ["under-a-file", "read-only"])
def test_an_unwritable_jobs_folder_says_so_when_a_job_starts(tmp_path, monkeypatch, how):
    from medui.errors import JobFolderError, MedUIError
    from medui.usecases.train import TrainRequest, start

    bad = _unwritable(tmp_path, how)
    monkeypatch.setenv("MEDUI_JOBS", str(bad))
    with pytest.raises(JobFolderError, match="cannot take a new job.*MEDUI_JOBS"):
        jobs.start(_params(tmp_path / "data"))
    with pytest.raises(MedUIError, match="writable folder"):  # what the Train page calls
        start(TrainRequest(data=tmp_path / "data", name="ok"))
    assert jobs.list_jobs() == []  # the page's job list still shows (nothing)


def test_train_on_the_command_line_with_an_unwritable_jobs_folder_is_one_error_line(tmp_path):
    import subprocess
    import sys

    (tmp_path / "a-file").write_text("")
    proc = subprocess.run([sys.executable, "-m", "medui", "train", str(tmp_path), "--arch", "seed_cnn", "--out", "x",
                           "--jobs", str(tmp_path / "a-file" / "jobs")], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and proc.stderr.startswith("error: the jobs folder") and "Traceback" not in proc.stderr


def test_a_full_disk_while_creating_a_job_leaves_no_half_job(tmp_path, isolated, monkeypatch):
    import errno

    from medui.errors import JobFolderError

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jobs, "write_json", full)
    with pytest.raises(JobFolderError, match="No space left"):
        jobs.create(_params(tmp_path / "data"))
    assert not list(isolated["jobs"].iterdir()) if isolated["jobs"].exists() else True


@pytest.mark.parametrize("how", ["under-a-file", "read-only", "full"])
def test_registering_into_an_unwritable_registry_says_so_and_leaves_nothing(tmp_path, isolated, monkeypatch, how):
    import dataclasses
    import errno

    from medui.errors import RegistryWriteError

    demo = registry.find("demo-chest-phantom-v1", isolated["models"])
    card = dataclasses.replace(demo.card, name="copy", version=1, demo=False)
    if how == "full":
        root = isolated["models"]

        def full(source, target):
            Path(target).write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(registry, "_copy_with_umask", full)
    else:
        root = _unwritable(tmp_path, how)
    before = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    with pytest.raises(RegistryWriteError, match="could not write copy-v1 into the model registry.*MEDUI_MODELS"):
        registry.register(demo.path, card, root)
    assert (sorted(p.name for p in root.iterdir()) if root.is_dir() else []) == before


def test_promoting_in_an_unwritable_registry_is_a_clear_message(tmp_path, isolated):
    from medui.errors import RegistryStateError
    from medui.usecases.models import promote

    (isolated["models"] / "promotions.json").mkdir()  # cannot be read or replaced as a file, even by root
    with pytest.raises(RegistryStateError, match="promotions.json"):
        promote("demo-chest-phantom-v1", user="t", via="cli", root=isolated["models"])


# --- restarts -----------------------------------------------------------------------------------------------

def _fresh_process_view(root: Path) -> dict:
    """What a newly started server sees: the jobs listed and read by another Python process."""
    import subprocess
    import sys

    code = ("import json, sys; from medui.training import jobs; "
            "print(json.dumps({j.id: [j.status(), j.result(), j.log_tail()] for j in jobs.list_jobs()}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MEDUI_JOBS": str(root)}, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_after_a_restart_no_job_or_result_is_lost(tmp_path, isolated, monkeypatch):
    import subprocess

    root = isolated["jobs"]
    done = jobs.create(_params(tmp_path / "data", "finished"))
    jobs.write_json(done.path / "status.json", {"state": "done", "created": time.time(), "model": "finished-v1"})
    jobs.write_json(done.path / "result.json", {"model": "finished-v1", "evaluation": {"auc": 0.9}})
    died = jobs.create(_params(tmp_path / "data", "died"))
    gone = subprocess.Popen(["true"])
    gone.wait()
    jobs.write_json(died.path / "status.json", {"state": "running", "created": time.time(), "pid": gone.pid})
    (died.path / "log.txt").write_text("epoch 1/3 done\n")
    never = jobs.create(_params(tmp_path / "data", "never"))
    jobs.write_json(never.path / "status.json", {"state": "queued", "created": time.time() - jobs.NEVER_STARTED_S - 1})
    waiting = jobs.create(_params(tmp_path / "data", "waiting"))  # just created: its process may be starting
    # after a reboot the recorded pid may belong to another process: its start time tells them apart
    reused = jobs.create(_params(tmp_path / "data", "reused"))
    jobs.write_json(reused.path / "status.json", {"state": "running", "created": time.time(), "pid": os.getpid(),
                                                   "pid_start": "another-boot:1"})
    alive = jobs.create(_params(tmp_path / "data", "alive"))
    jobs.write_json(alive.path / "status.json", {"state": "running", "created": time.time(), "pid": os.getpid(),
                                                  "pid_start": jobs.process_start(os.getpid())})

    view = _fresh_process_view(root)
    assert set(view) == {done.id, died.id, never.id, waiting.id, reused.id, alive.id}
    assert view[reused.id][0]["state"] == "failed" and view[alive.id][0]["state"] == "running"
    assert view[done.id][0]["state"] == "done" and view[done.id][1]["evaluation"]["auc"] == 0.9
    assert view[died.id][0]["state"] == "failed" and "see the log" in view[died.id][0]["error"]
    assert view[died.id][2] == "epoch 1/3 done"
    assert view[never.id][0]["state"] == "failed" and "never started" in view[never.id][0]["error"]
    assert view[waiting.id][0]["state"] == "queued"
    assert json.loads((died.path / "status.json").read_text())["state"] == "failed"  # kept in the folder


# --- names a user types -------------------------------------------------------------------------------------

HOSTILE = ["../x", "/abs", "..", "a/b", "a\\b", "a\x00b", "x" * 300, "a\n", ".hidden", "-v1", ""]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_typed_name_cannot_write_outside_the_registry_or_jobs_folder(tmp_path, isolated, name):
    import dataclasses

    from medui.errors import CardError, TrainingError
    from medui.usecases.train import TrainRequest

    outside = sorted({p.name for p in isolated["jobs"].parent.iterdir()} | {"jobs"})
    if name != "a\n":  # the page strips what is typed: 'a' is a good name
        with pytest.raises(TrainingError):
            TrainRequest(data=tmp_path, name=name).config()
    with pytest.raises(TrainingError):
        jobs.create(_params(tmp_path / "data", name))
    if name not in ("-v1", ""):  # good job-name prefixes
        with pytest.raises(TrainingError):
            jobs.create(_params(tmp_path / "data"), prefix=name)
    demo = registry.find("demo-chest-phantom-v1", isolated["models"])
    with pytest.raises(CardError):
        registry.register(demo.path, dataclasses.replace(demo.card, name=name, demo=False), isolated["models"])
    assert sorted({p.name for p in isolated["jobs"].parent.iterdir()} | {"jobs"}) == outside
    assert not (isolated["jobs"].exists() and list(isolated["jobs"].iterdir()))
    assert sorted(p.name for p in isolated["models"].iterdir()) == ["demo-chest-phantom-v1.json",
                                                                     "demo-chest-phantom-v1.keras"]


def test_registering_on_a_file_system_without_hard_links_still_works(isolated, monkeypatch):
    import dataclasses
    import errno

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(registry.os, "link", no_links)
    demo = registry.find("demo-chest-phantom-v1", isolated["models"])
    entry = registry.register(demo.path, dataclasses.replace(demo.card, name="nolinks", version=1, demo=False),
                              isolated["models"])
    assert entry.id in [e.id for e in registry.list_models(isolated["models"])]
    assert not list(isolated["models"].glob(".*"))
    _complete(isolated["models"])


def test_an_upload_killed_half_way_is_removed_once_stale_and_a_full_disk_is_a_clear_message(isolated, monkeypatch):
    from medui.errors import DatasetError
    from medui.usecases import train

    class Upload:
        def __init__(self, name: str, data: bytes) -> None:
            self.name, self.data = name, data

        def getvalue(self) -> bytes:
            return self.data

    uploads = isolated["jobs"] / "uploads"
    dead = uploads / ".0123456789abcdef.deadbeef.partial"
    (dead / "normal").mkdir(parents=True)
    (dead / "normal" / "a.png").write_bytes(b"half")
    fresh = uploads / ".fedcba9876543210.cafecafe.partial"  # another upload being written now
    fresh.mkdir()
    old = time.time() - train.STALE_UPLOAD_S - 1
    for p in (dead / "normal" / "a.png", dead / "normal", dead):
        os.utime(p, (old, old))
    import cv2
    import numpy as np

    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()  # staging keeps only real images
    train.stage_upload([Upload("normal/b.png", png)])
    assert not dead.exists() and fresh.exists()

    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(DatasetError, match="could not save the upload.*No space left"):
        train.stage_upload([Upload("normal/c.png", png[:-1] + b"\x01")])
    assert sorted(p.name for p in uploads.iterdir()) == sorted([fresh.name, next(uploads.glob("[!.]*")).name])
