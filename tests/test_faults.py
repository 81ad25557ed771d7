"""Faults: a training job killed (SIGKILL) at any moment leaves the registry as it was or with the new
model complete, releases the training lock and shows 'failed' with its log; job state survives a
restart; read-only or unusable folders and hostile names give clear messages."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from medui.ai import registry
from medui.synthetic.phantoms import make_phantom, write_png
from medui.training import jobs
from medui.training.fit import TrainConfig


def _data(root: Path, n: int = 10) -> Path:
    for k in range(n):
        write_png(make_phantom(100 + k, 32, lesion=False), root / "normal" / f"n{k}.png")
        write_png(make_phantom(200 + k, 32, lesion=True), root / "lesion" / f"l{k}.png")
    return root


def _params(data: Path, out: str = "faulty") -> dict:
    return TrainConfig(data=[str(data)], out=out, arch="seed_cnn", epochs=1, batch_size=8, min_per_class=5,
                       weights=None, val_fraction=0.25, test_fraction=0.25).to_json()


def _wait(job: jobs.Job, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = job.status()
        if st.get("state") in jobs.TERMINAL:
            return st
        time.sleep(0.3)
    raise AssertionError(f"job stuck: {job.status()}\n{job.log_tail()}")


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
    st = _wait(job)
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
    assert _wait(nxt)["state"] == "done", nxt.log_tail()
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
