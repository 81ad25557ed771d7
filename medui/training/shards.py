"""The on-disk cache of prepared model inputs: training data larger than memory.

A dataset's images are decoded and passed through the card's `prepare` once, in forkserver worker
processes (no TensorFlow there), and written as shards of fixed-size float32 records under
`MEDUI_PREPARED_CACHE` (default `<MEDUI_JOBS>/cache/prepared`), one folder per key. The key hashes
the samples' pixel digests, labels, given splits and MONOCHROME1 flags with the card's input size,
channels and preprocessing, so the next run on the same data and card re-uses the folder and decodes
nothing; folder names are content hashes, never names. A grey image fed to a 3-channel card is stored
once (the card repeats it), so records stay exact: what is read back equals `load_arrays` bit for bit.

A folder is built under a temporary name, verified and renamed: a killed build is never used. Each
shard carries a SHA-256 in `manifest.json`; a cache hit verifies every shard and rebuilds the ones
that fail. `MEDUI_PREPARED_CACHE_MB` bounds the cache: whole datasets, least recently used first, go.
Records are read with `os.preadv` (not memory-mapped), so reading an epoch does not grow the RSS.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medui.errors import TrainingError
from medui.io.sources import Limits, SourceFile
from medui.training.data import DatasetIndex, Sample, decode, sources
from medui.training.jobs import jobs_dir

if TYPE_CHECKING:
    from medui.ai.card import ModelCard

FORMAT = 1  # bump when the record layout or `prepare` changes what a record holds
SHARD_BYTES = 32 << 20  # at most about 32 MB per shard
SHARD_RECORDS = 256  # and at most this many images: work for every worker, progress as it goes
DEFAULT_BUDGET_MB = 20_480


def cache_root() -> Path:
    """MEDUI_PREPARED_CACHE, else <jobs folder>/cache/prepared."""
    env = os.environ.get("MEDUI_PREPARED_CACHE")
    return Path(env) if env else jobs_dir() / "cache" / "prepared"


def budget_bytes() -> int:
    """MEDUI_PREPARED_CACHE_MB (default 20 GB) in bytes; TrainingError for a value that is not a number."""
    raw = os.environ.get("MEDUI_PREPARED_CACHE_MB", str(DEFAULT_BUDGET_MB))
    try:
        mb = float(raw)
    except ValueError as exc:
        raise TrainingError(f"MEDUI_PREPARED_CACHE_MB is {raw!r}; expected a size in MB such as 20480") from exc
    if mb <= 0:
        raise TrainingError(f"MEDUI_PREPARED_CACHE_MB is {raw!r}; expected a positive size in MB such as 20480")
    return int(mb * (1 << 20))


def stored_channels(index: DatasetIndex, indices: Sequence[int], card: ModelCard) -> int:
    """Channels a record keeps: 1 unless the card takes colour and a sample is colour (`prepare`
    repeats a grey image's one channel, so storing it once is exact)."""
    colour = any(len(index.samples[i].shape) == 3 for i in indices)
    return card.channels if colour else 1


def cache_key(index: DatasetIndex, indices: Sequence[int], card: ModelCard) -> str:
    """SHA-256 of what a record depends on: pixels (digest), MONOCHROME1, label, given split, preprocessing."""
    spec = {"format": FORMAT, "input_size": list(card.input_size), "channels": card.channels,
            "preprocessing": asdict(card.preprocessing),
            "samples": [[s.digest, s.invert, s.label, s.split] for s in (index.samples[i] for i in indices)]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class _Task:
    """One shard for a worker: which records come from which file."""

    path: str
    records: int
    shape: tuple[int, int, int]  # stored record: rows, cols, channels
    card: ModelCard
    limits: Limits | None
    files: list[tuple[SourceFile, str, list[tuple[int, Sample]]]]  # (file, name, [(record in shard, sample)])


def _write_shard(task: _Task) -> tuple[str, int]:
    """Decode and prepare a shard's images and write it (worker process): (sha256, images prepared)."""
    from medui.ai.preprocess import prepare

    out = np.zeros((task.records, *task.shape), np.float32)
    done = 0
    for src, name, items in task.files:
        for k, image in decode(src, name, [s for _, s in items], task.limits):
            record, sample = items[k]
            x = prepare(image, task.card, sample.invert)[0]
            kept = x[..., :task.shape[2]]
            if kept.shape[-1] != x.shape[-1] and not np.array_equal(np.broadcast_to(kept, x.shape), x):
                raise TrainingError(f"{name}: its prepared channels differ, but the cache stores one; "
                                    "check the data again")
            out[record] = kept
            done += 1
    data = out.data.cast("B")
    with open(task.path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest(), done


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ShardCache:
    """A verified cache folder, open for reading: `read(records)` -> float32 (n, rows, cols, channels)."""

    path: Path
    manifest: dict[str, Any]
    decoded: int = 0  # images decoded and prepared by the call that opened it (0: a clean cache hit)
    seconds: float = 0.0  # time that call took
    _fds: list[int] = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The model input of one record: rows, cols, channels."""
        rows, cols, _ = self.manifest["record_shape"]
        return rows, cols, int(self.manifest["channels"])

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    def open(self) -> ShardCache:
        self.close()
        self._fds = [os.open(self.path / s["file"], os.O_RDONLY) for s in self.manifest["shards"]]
        return self

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __del__(self) -> None:
        self.close()

    def read(self, records: np.ndarray) -> np.ndarray:
        """Records (positions in the indices the cache was built for) as model inputs, float32."""
        rows, cols, kept = self.manifest["record_shape"]
        per = int(self.manifest["per_shard"])
        out = np.empty((len(records), rows, cols, kept), np.float32)
        size = out[0].nbytes if len(records) else 0
        for j, r in enumerate(np.asarray(records, np.int64)):
            shard, k = divmod(int(r), per)
            if os.preadv(self._fds[shard], [out[j].data.cast("B")], k * size) != size:
                raise TrainingError(f"prepared-image cache {self.path.name}: shard {shard} is shorter than its "
                                    "manifest says (changed while in use?); run the job again")
        channels = int(self.manifest["channels"])
        return out if kept == channels else np.repeat(out, channels, axis=-1)


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("format") == FORMAT else None


def verify(path: Path, manifest: dict[str, Any]) -> list[int]:
    """Shards whose size or SHA-256 differs from the manifest (missing ones too)."""
    size = int(np.prod(manifest["record_shape"])) * 4
    bad = []
    for n, s in enumerate(manifest["shards"]):
        f = path / s["file"]
        try:
            ok = f.stat().st_size == s["records"] * size and _sha256(f) == s["sha256"]
        except OSError:
            ok = False
        if not ok:
            bad.append(n)
    return bad


def _tasks(index: DatasetIndex, indices: Sequence[int], card: ModelCard, folder: Path, shape: tuple[int, int, int],
           per: int, which: Sequence[int], suffix: str = "") -> list[_Task]:
    """One task per shard number in `which` (the dataset is listed once)."""
    order = sorted(which)
    wanted = set(order)
    parts: dict[int, list[tuple[SourceFile, str, list[tuple[int, Sample]]]]] = {n: [] for n in which}
    for src, name, items in sources(index, [i for k, i in enumerate(indices) if k // per in wanted]):
        by_shard: dict[int, list[tuple[int, Sample]]] = {}
        for pos, i in items:  # pos: place among the wanted samples; shards are whole, so this maps back
            k = order[pos // per] * per + pos % per
            by_shard.setdefault(k // per, []).append((k % per, index.samples[i]))
        for n, got in by_shard.items():
            parts[n].append((src, name, got))
    return [_Task(str(folder / f"shard-{n:05d}.f32{suffix}"), len(indices[n * per:(n + 1) * per]), shape, card,
                  index.limits, parts[n]) for n in which]


def _run(tasks: list[_Task], progress: Callable[[int], None] | None, cancelled: Callable[[], bool] | None,
         workers: int | None) -> list[tuple[str, int]] | None:
    """Run the shard tasks in worker processes: results in task order, None when cancelled."""
    from medui.io.workers import context

    results: list[tuple[str, int] | None] = [None] * len(tasks)
    done = 0
    n = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    pool = cf.ProcessPoolExecutor(n, mp_context=context())
    try:
        pending = {pool.submit(_write_shard, t): k for k, t in enumerate(tasks)}
        while pending:
            if cancelled is not None and cancelled():
                return None
            finished, _ = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                results[pending.pop(f)] = f.result()
            done = sum(t.records for t, r in zip(tasks, results, strict=True) if r is not None)
            if progress is not None and finished:
                progress(done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]


def _touch(path: Path) -> None:
    (path / "used").write_text(str(time.time()))


def _last_used(path: Path) -> float:
    try:
        return (path / "used").stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def evict(root: Path, keep: Path, budget: int) -> list[str]:
    """Remove whole cached datasets, least recently used first, until the cache fits `budget` (never `keep`);
    and builds left half-written by processes that are gone. Returns the keys removed."""
    removed = []
    for tmp in root.glob(".tmp-*"):
        pid = tmp.name.split("-")[1] if tmp.name.count("-") >= 2 else ""
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
    entries = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_last_used)
    total = sum(_size(p) for p in entries)
    for p in entries:
        if total <= budget:
            break
        if p == keep:
            continue
        total -= _size(p)
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


def prepared(index: DatasetIndex, indices: Sequence[int], card: ModelCard,
             progress: Callable[[int], None] | None = None, cancelled: Callable[[], bool] | None = None,
             workers: int | None = None) -> ShardCache | None:
    """The samples `indices` prepared for `card`, from the cache or decoded into it now (record k is
    `indices[k]`). Corrupt shards are rebuilt. `progress(n)` counts images prepared; None when cancelled."""
    t0 = time.perf_counter()
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"the prepared-image cache folder {root} cannot be created ({exc}); make it writable "
                            "or set MEDUI_PREPARED_CACHE to a folder with free space") from exc
    key = cache_key(index, indices, card)
    entry = root / key
    shape = (int(card.input_size[0]), int(card.input_size[1]), stored_channels(index, indices, card))
    per = max(8, min(SHARD_RECORDS, SHARD_BYTES // (int(np.prod(shape)) * 4)))
    decoded = 0
    manifest = _manifest(entry)
    if manifest is not None:
        sources(index, list(indices))  # every file still there (a listing, no decoding): DatasetError if not
        bad = verify(entry, manifest)
        if bad:  # rebuild just those, beside the good ones, then swap them in
            for stale in entry.glob("*.tmp"):  # left by a rebuild that was killed
                stale.unlink(missing_ok=True)
            suffix = f".{uuid.uuid4().hex}.tmp"
            results = _run(_tasks(index, indices, card, entry, shape, per, bad, suffix), progress, cancelled, workers)
            if results is None:
                for t in entry.glob(f"*{suffix}"):
                    t.unlink(missing_ok=True)
                return None
            for n, (sha, done) in zip(bad, results, strict=True):
                name = manifest["shards"][n]["file"]
                (entry / f"{name}{suffix}").replace(entry / name)
                manifest["shards"][n]["sha256"] = sha
                decoded += done
            (entry / "manifest.json.tmp").write_text(json.dumps(manifest))
            (entry / "manifest.json.tmp").replace(entry / "manifest.json")
            if verify(entry, manifest):
                raise TrainingError(f"the prepared-image cache {entry} fails its checksums after a rebuild; the disk "
                                    "may be failing. Delete the folder or set MEDUI_PREPARED_CACHE elsewhere")
    else:
        if entry.exists():  # an older format or a damaged manifest: not ours to trust
            shutil.rmtree(entry, ignore_errors=True)
        tmp = root / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            n_shards = -(-len(indices) // per)
            results = _run(_tasks(index, indices, card, tmp, shape, per, range(n_shards)), progress, cancelled, workers)
            if results is None:
                return None
            manifest = {"format": FORMAT, "key": key, "count": len(indices), "record_shape": list(shape),
                        "channels": card.channels, "dtype": "float32", "per_shard": per, "created": time.time(),
                        "shards": [{"file": f"shard-{n:05d}.f32", "records": len(indices[n * per:(n + 1) * per]),
                                    "sha256": sha} for n, (sha, _) in enumerate(results)]}
            decoded = sum(done for _, done in results)
            (tmp / "manifest.json").write_text(json.dumps(manifest))
            if verify(tmp, manifest):
                raise TrainingError(f"the prepared-image cache written in {tmp} fails its checksums; the disk may "
                                    "be failing or full. Free space or set MEDUI_PREPARED_CACHE elsewhere")
            try:
                tmp.rename(entry)
            except OSError:  # another run finished the same dataset first: use that one
                manifest = _manifest(entry)
                if manifest is None or verify(entry, manifest):
                    raise
        except OSError as exc:
            raise TrainingError(f"the prepared-image cache could not be written under {root} ({exc}); free space "
                                "or set MEDUI_PREPARED_CACHE to another folder") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _touch(entry)
    evict(root, entry, budget_bytes())
    return ShardCache(entry, manifest, decoded, time.perf_counter() - t0).open()
