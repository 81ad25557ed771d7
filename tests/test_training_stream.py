"""Training data larger than memory: the prepared-image shard cache and the streaming tf.data pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medui.ai.card import ModelCard
from medui.errors import DatasetError
from medui.synthetic.phantoms import write_labeled_folder
from medui.training import jobs, shards
from medui.training.data import DatasetIndex, index_dataset, load_arrays, split

ROOT = Path(__file__).resolve().parents[1]
N = 40


def _card(channels: int = 3, size: int = 48) -> ModelCard:
    return ModelCard(name="t", version=1, class_names=["normal", "lesion"], input_size=[size, size],
                     channels=channels, architecture="small_cnn", cam_layer="conv")


@pytest.fixture
def index(tmp_path) -> DatasetIndex:
    return index_dataset([write_labeled_folder(tmp_path / "data", N, seed=3, size=72, patients=20)], min_per_class=5)


def test_streaming_gives_the_in_memory_pipelines_batches(index, isolated):
    import keras

    from medui.training.fit import TrainConfig, pipeline
    from medui.training.stream import stream

    card = _card(channels=3)
    cache = shards.prepared(index, range(N), card)
    assert cache is not None and cache.manifest["record_shape"] == [48, 48, 1]  # grey: one channel stored
    assert cache.path.parent == isolated["jobs"] / "cache" / "prepared"
    x, y = load_arrays(index, list(range(N)), card)
    assert np.array_equal(cache.read(np.arange(N)), x)  # exact: float32 records, channels repeated on read
    parts = split(index, seed=7)
    assert parts == split(index, seed=7)
    tr, va = parts["train"], parts["val"]
    for augment in (TrainConfig(data=[], out="x").augment, {}):
        keras.utils.set_random_seed(7)
        memory = iter(pipeline(x[tr], y[tr], 8, augment, 7, 2))
        keras.utils.set_random_seed(7)
        streamed = iter(stream(cache, tr, y[tr], 8, augment, 7, 2))
        for _ in range(2):  # the first two batches, augmented the same way
            (xm, ym), (xs, ys) = next(memory), next(streamed)
            assert np.array_equal(xm.numpy(), xs.numpy()) and np.array_equal(ym.numpy(), ys.numpy())
    ds = stream(cache, tr, y[tr], 8, {}, 7, 2)
    one, two = (np.concatenate([b[1].numpy() for b in ds]) for _ in range(2))
    assert sorted(one) == sorted(two) == sorted(y[tr]) and not np.array_equal(one, two)  # reshuffled each epoch
    val = np.concatenate([b[0].numpy() for b in stream(cache, va, y[va], 8, None, 7, 2)])
    assert np.array_equal(val, x[va])  # validation/evaluation: in order, unaugmented


def test_a_cache_hit_decodes_nothing(index, tmp_path):
    card = _card(channels=1)
    t0 = time.perf_counter()
    first = shards.prepared(index, range(N), card)
    build_s = time.perf_counter() - t0
    assert first is not None and first.decoded == N
    expected = first.read(np.arange(N))
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    saved = {p: p.read_bytes() for p in files}
    for p in files:  # nothing left that decodes: a hit must not need to
        p.write_bytes(b"not an image")
    t0 = time.perf_counter()
    again = shards.prepared(index, range(N), card)
    hit_s = time.perf_counter() - t0
    assert again is not None and again.decoded == 0 and again.path == first.path
    assert np.array_equal(again.read(np.arange(N)), expected)
    assert hit_s < build_s / 3, (hit_s, build_s)
    # the folder is named by content: no file, patient or folder name of the dataset in it
    names = [p.name for p in first.path.parent.rglob("*")]
    assert all(n.startswith(("shard-", "manifest", "used")) or len(n) == 64 for n in names), names
    assert "patient" not in json.dumps(first.manifest)
    files[0].unlink()  # a file gone since the check: a hit says so (a listing, still no decoding)
    with pytest.raises(DatasetError, match="is gone now"):
        shards.prepared(index, range(N), card)
    for p, data in saved.items():
        p.write_bytes(data)
    other = shards.prepared(index, range(N), _card(channels=1, size=40))  # another preprocessing: another key
    assert other is not None and other.decoded == N and other.path != first.path


def test_a_corrupt_shard_is_detected_and_rebuilt(index, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 1)  # the smallest shards: 8 images each
    card = _card(channels=1)
    cache = shards.prepared(index, range(N), card)
    assert cache is not None and len(cache.manifest["shards"]) == N // 8
    expected = cache.read(np.arange(N))
    files = sorted(cache.path.glob("shard-*"))
    untouched = {f.name: f.stat().st_ino for f in files}
    with open(files[2], "r+b") as fh:  # one flipped bit
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    files[4].write_bytes(files[4].read_bytes()[:100])  # and one cut short
    assert shards.verify(cache.path, cache.manifest) == [2, 4]
    again = shards.prepared(index, range(N), card)
    assert again is not None and again.decoded == 16  # those two shards, no more
    assert np.array_equal(again.read(np.arange(N)), expected)
    assert shards.verify(again.path, again.manifest) == []
    for f in sorted(again.path.glob("shard-*")):
        assert (f.stat().st_ino == untouched[f.name]) == (f.name not in (files[2].name, files[4].name))


def test_a_half_written_or_cancelled_build_is_never_used(index, isolated):
    root = isolated["jobs"] / "cache" / "prepared"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = root / f".tmp-{dead.pid}-abc"  # what a build killed half-way leaves behind
    killed.mkdir(parents=True)
    (killed / "shard-00000.f32").write_bytes(b"\0" * 1000)
    assert shards.prepared(index, range(N), _card(), cancelled=lambda: True) is None
    assert [p for p in root.iterdir() if not p.name.startswith(".")] == []  # a cancelled build leaves no dataset
    cache = shards.prepared(index, range(N), _card())
    assert cache is not None and cache.decoded == N
    assert sorted(p.name for p in root.iterdir()) == [cache.path.name]  # the killed build's folder is gone


def test_the_cache_is_bounded_by_evicting_whole_datasets_least_recently_used(index, isolated, monkeypatch):
    one = shards.prepared(index, range(N), _card(channels=1, size=48))
    two = shards.prepared(index, range(N), _card(channels=1, size=40))
    assert one is not None and two is not None
    size = sum(f.stat().st_size for f in one.path.iterdir())
    os.utime(two.path / "used", (time.time() - 60, time.time() - 60))  # `two` used longest ago
    monkeypatch.setenv("MEDUI_PREPARED_CACHE_MB", str(2.2 * size / (1 << 20)))
    three = shards.prepared(index, range(N), _card(channels=1, size=44))
    assert three is not None
    assert sorted(p.name for p in one.path.parent.iterdir()) == sorted([one.path.name, three.path.name])
    monkeypatch.setenv("MEDUI_PREPARED_CACHE", str(isolated["jobs"] / "elsewhere"))
    monkeypatch.setenv("MEDUI_PREPARED_CACHE_MB", "lots")
    with pytest.raises(Exception, match="MEDUI_PREPARED_CACHE_MB is 'lots'"):
        shards.prepared(index, range(N), _card())


def test_decode_workers_do_not_import_tensorflow():
    code = ("import sys, medui.training.shards, medui.training.data, medui.ai.preprocess; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr


def test_a_job_cancelled_while_preparing_images_stops_there(tmp_path, isolated, monkeypatch):
    from medui.training import runs
    from medui.training.fit import TrainConfig

    root = write_labeled_folder(tmp_path / "more", 48, seed=5, size=64, patients=24)
    cfg = TrainConfig(data=[str(root)], out="stopped", arch="seed_cnn", epochs=2, batch_size=8, min_per_class=5)
    job = jobs.create(cfg.to_json())
    said: list[str] = []
    original = runs._status

    def recording(j, **fields):
        said.append(fields.get("message", ""))
        if fields.get("message", "").startswith("preparing images (0/"):
            job.cancel()
        original(j, **fields)

    monkeypatch.setattr(runs, "_status", recording)
    assert runs.run_job(job.path) == 0
    assert job.status()["state"] == "cancelled", job.status()
    assert not any(m.startswith("epoch") for m in said), said
    prepared = isolated["jobs"] / "cache" / "prepared"
    assert not prepared.exists() or [p for p in prepared.iterdir() if not p.name.startswith(".")] == []
