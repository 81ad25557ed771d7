"""The server-wide series store: shared by content, bounded by a budget, spilled and dropped when
unused, admission in line; and decode workers shared by concurrent loads."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medui.errors import LoadBudgetError, SeriesExpiredError
from medui.io import parallel
from medui.io.content import content_key, input_bytes
from medui.io.loader import LoadResult, load
from medui.io.sources import Limits, SourceFile
from medui.io.store import SeriesStore, StoreConfig
from medui.series import Series
from medui.usecases.reading import open_inputs
from tests.synth import jpeg_lossless_copy, phantom_volume, write_series

MiB = 1024**2


def _series(mb: float, seed: int = 0) -> Series:
    n = int(mb * MiB / 4 / 64 / 64)
    px = np.random.default_rng(seed).normal(size=(n, 64, 64)).astype(np.float32)
    return Series(pixels=px, affine=np.eye(4), description=f"s{seed}")


def _store(tmp_path: Path, budget_mb: float, idle: float = 900.0) -> SeriesStore:
    return SeriesStore(StoreConfig(int(budget_mb * MiB), idle, tmp_path / "spill"))


def _runner(*series: Series, calls: list[int] | None = None):
    def run(budget) -> LoadResult:
        if calls is not None:
            calls.append(1)
        for s in series:
            budget.charge(s.pixels.nbytes, s.description)
        return LoadResult(list(series))
    return run


def test_the_same_content_is_decoded_once_and_shared_read_only(tmp_path):
    store, calls = _store(tmp_path, 64), []
    first = store.open("k1", _runner(_series(2), calls=calls), 4 * MiB)
    again = store.open("k1", _runner(_series(2), calls=calls), 4 * MiB)
    assert calls == [1] and again.keys == first.keys and again.from_cache and not first.from_cache
    a, _ = store.get(first.keys[0])
    b, _ = store.get(again.keys[0])
    assert a is b and not a.pixels.flags.writeable
    with pytest.raises(ValueError):
        a.pixels[0, 0, 0] = 1


def test_a_load_running_for_one_session_is_awaited_by_another(tmp_path):
    store, calls, gate = _store(tmp_path, 64), [], threading.Event()

    def slow(budget):
        calls.append(1)
        gate.wait(5)
        return LoadResult([_series(1)])

    out: list = []
    t = threading.Thread(target=lambda: out.append(store.open("same", slow, MiB)))
    t.start()
    time.sleep(0.2)
    u = threading.Thread(target=lambda: out.append(store.open("same", slow, MiB)))
    u.start()
    time.sleep(0.2)
    gate.set()
    t.join(5), u.join(5)
    assert calls == [1] and out[0].keys == out[1].keys


def test_content_keys_follow_content_not_names_or_order(tmp_path):
    a, b = ("x.dcm", b"one"), ("y.dcm", b"two")
    assert content_key([a, b]) == content_key([b, a]) == content_key([("renamed", b"one"), b])
    assert content_key([a]) != content_key([("x.dcm", b"one!")])
    f = tmp_path / "f.dcm"
    f.write_bytes(b"12345")
    k = content_key([f])
    os.utime(f, ns=(1, 1))
    assert content_key([f]) != k and input_bytes([f, a]) == 8


def test_least_recently_used_series_are_spilled_and_read_back(tmp_path):
    store = _store(tmp_path, 5)
    r1 = store.open("a", _runner(_series(2, 1)), 2 * MiB)
    r2 = store.open("b", _runner(_series(2, 2)), 2 * MiB)
    before = store.get(r1.keys[0])[0].pixels.copy()  # 'a' is now the most recent
    r3 = store.open("c", _runner(_series(2, 3)), 2 * MiB)
    assert store.resident_bytes() <= 5 * MiB and store.stats()["spilled"] == 1
    spilled = next(p for p in (tmp_path / "spill").rglob("*.npy"))
    assert r2.keys[0] in spilled.name and stat.S_IMODE(spilled.stat().st_mode) == 0o600
    back, restored = store.get(r2.keys[0])
    assert restored and back.description == "s2" and back.pixels.shape == _series(2, 2).pixels.shape
    np.testing.assert_array_equal(back.pixels, _series(2, 2).pixels)
    np.testing.assert_array_equal(store.get(r1.keys[0])[0].pixels, before)
    assert store.has(r3.keys[0])


def test_series_unused_for_the_idle_time_are_dropped_with_their_spill_files(tmp_path):
    store = _store(tmp_path, 3, idle=60)
    r1 = store.open("a", _runner(_series(2, 1)), 2 * MiB)
    store.open("b", _runner(_series(2, 2)), 2 * MiB)  # spills 'a'
    assert list((tmp_path / "spill").rglob("*.npy"))
    assert store.sweep(now=time.monotonic() + 30) == 0
    assert store.sweep(now=time.monotonic() + 61) == 2
    assert store.resident_bytes() == 0 and not list((tmp_path / "spill").rglob("*.npy"))
    with pytest.raises(SeriesExpiredError, match="open it again"):
        store.get(r1.keys[0])
    assert not store.open("a", _runner(_series(2, 1)), 2 * MiB).from_cache  # read again


def test_series_open_in_a_connected_session_are_kept_however_long_unused(tmp_path):
    open_now: set[str] = set()
    store = SeriesStore(StoreConfig(8 * MiB, 60, tmp_path / "spill"), pins=lambda: open_now)
    kept = store.open("a", _runner(_series(1, 1)), MiB).keys[0]
    gone = store.open("b", _runner(_series(1, 2)), MiB).keys[0]
    open_now.add(kept)
    assert store.sweep(now=time.monotonic() + 3600) == 1 and store.has(kept) and not store.has(gone)
    open_now.clear()  # the session closed: kept for the next user of the study for the idle time, then dropped
    t = time.monotonic() + 3600
    assert store.sweep(now=t + 30) == 0 and store.sweep(now=t + 61) == 1


def test_the_sweeper_thread_frees_memory_without_any_visitor(tmp_path):
    store = _store(tmp_path, 8, idle=0.3)
    store.open("a", _runner(_series(2)), 2 * MiB)
    store.start_sweeper(every_s=0.1)
    deadline = time.monotonic() + 5
    while store.resident_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    store.close()
    assert store.resident_bytes() == 0


def test_a_series_alone_over_the_budget_is_refused_with_what_to_do(tmp_path):
    files = write_series(tmp_path / "big", phantom_volume(16, 256, 256))  # 4 MiB as float32
    store = _store(tmp_path, 2)
    record = open_inputs([str(tmp_path / "big")], store)
    assert not record.keys and store.stats()["series"] == 0
    reasons = {s.reason for s in record.skipped}
    assert len(record.skipped) == len(files) or len(reasons) == 1
    assert "more than the server's memory for open series (2 MiB, MEDUI_CACHE_MB)" in next(iter(reasons))
    # a load's budget refuses past the store's, never waits
    with pytest.raises(LoadBudgetError), store.admit(10 * MiB) as budget:
        budget.charge(3 * MiB, "x")


def test_a_load_that_does_not_fit_waits_its_turn_and_the_first_is_unharmed(tmp_path):
    store, gate, waits = _store(tmp_path, 6), threading.Event(), []

    def first(budget):
        gate.wait(5)
        s = _series(3, 1)
        budget.charge(s.pixels.nbytes, "first")
        return LoadResult([s])

    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.setdefault("first", store.open("one", first, 4 * MiB)))
    t.start()
    time.sleep(0.2)
    u = threading.Thread(target=lambda: out.setdefault(
        "second", store.open("two", _runner(_series(2, 2)), 4 * MiB, on_wait=waits.append)))
    u.start()
    time.sleep(1.2)
    assert "second" not in out and waits and waits[-1] >= 1  # in line, told how many loads are ahead
    gate.set()
    t.join(5), u.join(5)
    first_series, _ = store.get(out["first"].keys[0])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(first_series.pixels, _series(3, 1).pixels)
    assert out["second"].keys  # type: ignore[attr-defined]


def test_a_load_past_its_share_stops_with_a_message_and_keeps_what_it_read(tmp_path):
    """Real files through the loader: the store's budget is charged while reading."""
    folders = [write_series(tmp_path / f"s{k}", phantom_volume(16, 128, 128, seed=k)) for k in range(3)]
    one = 16 * 128 * 128 * 4
    store = _store(tmp_path, (2 * one + 64 * 1024) / MiB)  # two series and their frames' bookkeeping
    record = open_inputs([str(f[0].parent) for f in folders], store)
    assert len(record.keys) == 2
    assert any("server's memory for open series" in s.reason for s in record.skipped)


def _crash_on_bad(src: SourceFile, main_pid: int) -> str:
    if "bad" in src.name:
        if os.getpid() == main_pid:
            raise AssertionError("a crashing file was run in the main process")
        os._exit(134)
    time.sleep(0.02)
    return src.name


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="worker processes need Linux")
def test_loads_share_one_worker_pool_and_a_crash_in_one_costs_only_its_file(monkeypatch):
    from medui.io.pool import CRASHED

    monkeypatch.setattr(parallel, "worth_a_pool", lambda s, n: True)
    shared = parallel.shared_workers(2)
    try:
        time.sleep(1.0)  # the server's workers are up
        good = [SourceFile(f"g{k}.dcm", data=b"x") for k in range(30)]
        hostile = [SourceFile(f"h{k}.dcm", data=b"x") for k in range(12)]
        hostile[4] = SourceFile("bad4.dcm", data=b"x")
        out: dict[str, list] = {}

        def run(name: str, srcs: list[SourceFile]) -> None:
            with parallel.Decoder(srcs, shared=shared) as dec:
                out[name] = dec.map(_crash_on_bad, os.getpid())

        threads = [threading.Thread(target=run, args=a) for a in (("good", good), ("hostile", hostile))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert out["good"] == [s.name for s in good]
        crashed = [o for o in out["hostile"] if not isinstance(o, str)]
        assert [(c.file, c.reason) for c in crashed] == [("bad4.dcm", CRASHED)]
        pids = set()  # still the server's two workers, serving the next load
        with parallel.Decoder(good, shared=shared) as dec:
            assert dec.map(_crash_on_bad, os.getpid()) == [s.name for s in good]
            pids = set(dec.map(_pid_of))
        assert 0 < len(pids) <= 2 and os.getpid() not in pids
    finally:
        shared.shutdown()


def _pid_of(src: SourceFile) -> int:
    return os.getpid()


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="worker processes need Linux")
def test_shared_workers_give_the_same_pixels(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 2)
    vol = phantom_volume(12, 64, 64)
    folder = tmp_path / "jpeg"
    folder.mkdir()
    for path in write_series(tmp_path / "raw", vol):
        jpeg_lossless_copy(path, folder / path.name)
    shared = parallel.shared_workers(2)
    try:
        pooled = load([folder], Limits(workers=shared))
        assert pooled.workers == 2
    finally:
        shared.shutdown()
    here = load([folder])
    np.testing.assert_array_equal(pooled.series[0].pixels, here.series[0].pixels)


def test_results_derived_from_a_series_are_shared_counted_and_dropped_with_it(tmp_path):
    store, calls = _store(tmp_path, 6), []
    key = store.open("a", _runner(_series(2, 1)), 2 * MiB).keys[0]

    def scores(series: Series) -> np.ndarray:
        calls.append(1)
        return np.zeros((256, 1024), np.float32)  # 1 MiB of "model inputs"

    first = store.derived(key, "model-v1", scores, lambda v: v.nbytes)
    assert store.derived(key, "model-v1", scores, lambda v: v.nbytes) is first and calls == [1]
    assert store.resident_bytes() == 3 * MiB
    store.open("b", _runner(_series(2, 2)), 2 * MiB)
    store.open("c", _runner(_series(2, 3)), 2 * MiB)  # 'a' is spilled: its derived result goes with it
    assert store.resident_bytes() <= 6 * MiB
    store.derived(key, "model-v1", scores, lambda v: v.nbytes)
    assert calls == [1, 1]
    store.sweep(now=time.monotonic() + 10**6)
    with pytest.raises(SeriesExpiredError):
        store.derived(key, "model-v1", scores, lambda v: v.nbytes)
