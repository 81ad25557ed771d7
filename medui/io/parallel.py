"""Decoding a big compressed series on all cores, straight into shared output volumes.

The JPEG/JPEG-LS/JPEG 2000 decoders hold the GIL, so threads gain nothing; worker processes
(forkserver: safe to start from a threaded server) do. Sending decoded pixels back through a
pipe costs as much as decoding them (measured: 0.71 s vs 0.37 s for 300 JPEG Lossless slices),
so each output volume is a memfd mapping that the workers open and write into, rescaled to
modality values, at the slice positions the main process assigned after reading the headers.
Headers are read in the workers too (they send back a slim header: grouping tags and the pixel
module), and decoding reads only the Pixel Data element from the offset found while parsing. While
the workers start, the main process runs chunks from the back of the queue; it does everything
itself where there is no pool (small or uncompressed sets, one core, platforms without memfd).

Workers start from a forkserver and do not re-run the main script (`medui.io.workers`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import mmap
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pydicom

from medui.io import codecs
from medui.io.budget import FATAL
from medui.io.decode import Decoded, PixelHint, Target, alloc_volume, decode_dicom, write_frames
from medui.io.pool import WorkerPool, Workers
from medui.io.sources import Skipped, SourceFile
from medui.io.staging import Staged, adopt, mark_staged

# Below this many compressed bytes a pool costs more than it saves.
PARALLEL_MIN_BYTES = 8 * 1024**2
PARALLEL_MIN_FILES = 16


@dataclass(frozen=True)
class VolumeRef:
    """How a worker finds an output volume: the owner's pid and memfd number."""

    pid: int
    fd: int
    shape: tuple[int, ...]


@dataclass
class Task:
    """Decode one file once and write its frames to these slots of one or more volumes."""

    index: int  # the source's index
    src: SourceFile
    targets: dict[int, list[Target]]  # volume -> (frame, slot, slope, intercept)
    hint: PixelHint | None = None
    staged: Staged | None = None  # already decoded (medui.io.prefetch): copied from there, not decoded again


Outcome = str | list[tuple[int, int]]  # an error text, or the (volume, slot) pairs written
R = TypeVar("R")


class _VolumeFile:
    """A float32 volume in a memfd. Slots are written through small populated mappings:
    faulting fresh shared pages in one at a time costs ~1 ms per MB here, populating them in
    one call ~0.7 ms, and doing it in the workers spreads that over the cores too."""

    def __init__(self, fd: int, shape: tuple[int, ...]) -> None:
        self.fd, self.shape = fd, shape
        self.slot_items = int(np.prod(shape[1:]))

    def window(self, lo: int, hi: int) -> np.ndarray:
        """Slots lo..hi (inclusive) as a writable array."""
        start, stop = lo * self.slot_items * 4, (hi + 1) * self.slot_items * 4
        offset = start - start % mmap.ALLOCATIONGRANULARITY
        buf = mmap.mmap(self.fd, stop - offset, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                        offset=offset)
        return np.frombuffer(buf, np.float32, (hi - lo + 1) * self.slot_items, start - offset).reshape(
            (hi - lo + 1,) + self.shape[1:])

    def whole(self) -> np.ndarray:
        buf = mmap.mmap(self.fd, max(self.slot_items * self.shape[0] * 4, 1),
                        flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        return np.frombuffer(buf, np.float32).reshape(self.shape)


def _shared_file(shape: tuple[int, ...]) -> _VolumeFile:
    fd = os.memfd_create("medui-volume", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, max(int(np.prod(shape)) * 4, 1))
    except OSError:
        os.close(fd)
        raise
    return _VolumeFile(fd, shape)


@dataclass
class _Volume:
    shape: tuple[int, ...]
    file: _VolumeFile | None  # None: private memory in `array`, only this process fills it
    array: np.ndarray | None = None
    written: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    scratch: bool = False

    def window(self, lo: int, hi: int) -> np.ndarray:
        return self.array[lo:hi + 1] if self.file is None else self.file.window(lo, hi)  # type: ignore[index]


def _fill(task: Task, window: Callable[[int, int, int], np.ndarray], max_bytes: int, fast: bool) -> Outcome:
    """Decode a task's file and write its frames; `window(volume, lo, hi)` gives the slots.
    Never raises for a bad file (in a worker, that would cost the other files of its chunk)."""
    try:
        return _fill_unchecked(task, window, max_bytes, fast)
    except FATAL:
        raise
    except BaseException as exc:
        return f"its pixels could not be written ({type(exc).__name__}: {str(exc)[:200]})"


def _fill_unchecked(task: Task, window: Callable[[int, int, int], np.ndarray], max_bytes: int,
                    fast: bool) -> Outcome:
    if task.staged is not None:  # final values already: copied as they are
        st = task.staged
        result: Decoded | str = Decoded(window(st.volume, st.slot, st.slot), rescale=False)
    else:
        result = decode_dicom(task.src, max_bytes, fast, task.hint)
    if isinstance(result, str):
        return result
    done: list[tuple[int, int]] = []
    for volume, targets in task.targets.items():
        lo, hi = min(t[1] for t in targets), max(t[1] for t in targets)
        local = [(frame, slot - lo, slope, intercept) for frame, slot, slope, intercept in targets]
        slots = write_frames(result, window(volume, lo, hi), local)
        if isinstance(slots, str):
            return slots
        done += [(volume, slot + lo) for slot in slots]
    return done


def _run_tasks(tasks: Sequence[Task], volumes: dict[int, VolumeRef], max_bytes: int, fast: bool) -> list[Outcome]:
    """In a worker: decode each task's file into the shared volumes of the main process."""
    files: dict[int, _VolumeFile] = {}
    try:
        for v, ref in volumes.items():
            if any(v in t.targets or (t.staged is not None and t.staged.volume == v) for t in tasks):
                files[v] = _VolumeFile(os.open(f"/proc/{ref.pid}/fd/{ref.fd}", os.O_RDWR), ref.shape)
        return [_fill(task, lambda v, lo, hi: files[v].window(lo, hi), max_bytes, fast) for task in tasks]
    finally:
        for f in files.values():
            os.close(f.fd)


def _map_sources(chunk: Sequence[SourceFile], fn: Callable[..., R], *args: object) -> list[R]:
    return [fn(src, *args) for src in chunk]


def _ready() -> int:
    return os.getpid()


def _worker_init(nice: int = 0) -> None:
    """Keep freed buffers in the heap for the next file (and lower the worker's priority by `nice`).

    glibc serves each >=128 KiB buffer (a file's bytes, a decoded frame) with a fresh mmap and
    returns it on free, so every file pays page faults again: ~1 ms per MB on the 2-core VM we
    measure on, as much as the decoding. A fixed 64 MiB mmap threshold (and trimming only
    beyond 256 MiB) makes workers reuse their memory; they are short-lived.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024**2)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * 1024**2)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _is_compressed(src: SourceFile) -> bool:
    try:
        ds = pydicom.dcmread(io.BytesIO(src.head(4096)), stop_before_pixels=True, force=True,
                             specific_tags=["SOPClassUID"])
        ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
        return ts is not None and bool(ts.is_compressed)
    except Exception:  # unreadable, or a private transfer syntax pydicom knows nothing about
        return False


def can_pool(ncpu: int) -> bool:
    """Whether worker processes can decode into shared memory here (Linux memfd, two cores or more)."""
    return ncpu >= 2 and sys.platform.startswith("linux") and hasattr(os, "memfd_create")


def worth_a_pool(sources: Sequence[SourceFile], ncpu: int) -> bool:
    """Enough compressed data to pay for worker processes, on a platform that can share memory."""
    if not can_pool(ncpu) or len(sources) < PARALLEL_MIN_FILES:
        return False
    if sum(src.size for src in sources) < PARALLEL_MIN_BYTES:
        return False
    return _is_compressed(sources[0]) or _is_compressed(sources[len(sources) // 2])


class Decoder:
    """Collects decode tasks for output volumes, then runs them on all cores.

    Made before the headers are read, so worker processes start while they are read:

        with Decoder(sources) as dec:
            headers = dec.map(parse_detached, limits)   # in the workers when `dec.pooled`
            v = dec.volume((n, rows, cols))
            dec.add(i, v, [(frame, slot, slope, intercept)])
            errors = dec.run()        # {source index: why it could not be decoded}
            pixels, ok = dec.array(v), dec.written(v)
    """

    def __init__(self, sources: Sequence[SourceFile], max_image_bytes: int = 2**62,
                 workers: int | None = None, timeout_s: float = 0.0, shared: Workers | None = None,
                 pool: bool = False, nice: int = 0) -> None:
        self.sources = list(sources)
        self.timeout_s = timeout_s  # per file, in worker processes (0: no limit)
        self.max_bytes = max_image_bytes
        self.fast = codecs.enabled()  # decided here: workers may have started with another environment
        self._volumes: list[_Volume] = []
        self._tasks: dict[int, Task] = {}
        self._pool: WorkerPool | None = None
        self.staged: dict[int, Staged] = {}  # source index -> its frame, decoded ahead (medui.io.prefetch)
        # worker processes started; files decoded by them / by this process
        self.stats = {"workers": 0, "in_workers": 0, "here": 0}
        ncpu = shared.ncpu if shared is not None else (
            workers or int(os.environ.get("MEDUI_DECODE_WORKERS", "0") or 0) or _cpu_count())
        self._ncpu = ncpu
        if (pool and can_pool(ncpu)) or worth_a_pool(self.sources, ncpu):  # pool: the caller knows it pays
            try:  # a server's shared workers, or this load's own (they start now, while headers are read)
                init = functools.partial(_worker_init, nice) if nice else _worker_init  # nice: own workers only
                self._pool = WorkerPool(ncpu, init, _ready, shared=shared)
                self.stats["workers"] = ncpu
            except Exception:
                self.close()

    def volume(self, shape: tuple[int, ...], scratch: bool = False) -> int:
        """A new float32 output volume; returns its handle. A `scratch` one (staging) is freed on close."""
        vol = _Volume(tuple(shape), None, written=np.zeros(shape[0], bool), scratch=scratch)
        if self._pool is not None:
            with contextlib.suppress(OSError):  # no memfd: this volume is filled here
                vol.file = _shared_file(vol.shape)
        if vol.file is None:
            vol.array = alloc_volume(vol.shape)
        self._volumes.append(vol)
        return len(self._volumes) - 1

    def append(self, src: SourceFile) -> int:
        """One more source (a load fed as files arrive); returns its index."""
        self.sources.append(src)
        return len(self.sources) - 1

    def submit(self, fn: Callable[..., R], *args: object) -> Future[R] | None:
        """`fn(*args)` in a worker now (None without a pool, or when it cannot be sent)."""
        if self._pool is None:
            return None
        try:
            return self._pool.submit(fn, *args)
        except Exception:  # a broken executor: the caller does the work the ordinary way
            return None

    def repair(self) -> None:
        """Fresh workers after a job submitted with `submit` found them broken or stuck."""
        if self._pool is not None:
            self._pool.kill()
            self._pool.crashes += 1
            if not self._pool.restart():
                self._pool.shutdown()
                self._pool = None

    def release(self, volume: int) -> None:
        """Free a volume that is no longer read (a staging volume once its frames are placed)."""
        vol = self._volumes[volume]
        if vol.file is not None:
            os.close(vol.file.fd)
            vol.file = None
        vol.array = None

    def add(self, index: int, volume: int, targets: Sequence[Target], hint: PixelHint | None = None) -> None:
        """Decode source `index` (once) into `volume` at the given (frame, slot, slope, intercept)."""
        task = self._tasks.setdefault(index, Task(index, self.sources[index], {}, hint))
        task.targets.setdefault(volume, []).extend(targets)

    def array(self, volume: int) -> np.ndarray:
        """The decoded volume (after `run`)."""
        vol = self._volumes[volume]
        if vol.array is None and vol.file is not None:
            vol.array = vol.file.whole()  # the pages exist by now: mapping them is cheap
        return vol.array  # type: ignore[return-value]

    def written(self, volume: int) -> np.ndarray:
        """Which slots of a volume hold decoded pixels (after `run`)."""
        return self._volumes[volume].written

    @property
    def pooled(self) -> bool:
        """Whether worker processes run the work (else this process does it all)."""
        return self._pool is not None

    def map(self, fn: Callable[..., R], *args: object, only: Sequence[int] | None = None) -> list[R]:
        """`[fn(src, *args) for src in sources]` (the sources at indices `only`, if given), in the
        workers when there is a pool.

        `fn` must be a module-level function and its results small (headers, not pixels).
        """
        items = self.sources if only is None else [self.sources[k] for k in only]
        return self._chunked(_map_sources, (fn, *args), lambda chunk: [fn(src, *args) for src in chunk],
                             items, lambda src, why: Skipped(src.name, why))

    def run(self) -> dict[int, str]:
        """Decode every task. Returns the error text of each source that failed."""
        tasks = list(self._tasks.values())
        self._tasks = {}
        if self.staged:  # frames decoded ahead (medui.io.prefetch) are placed, not decoded
            tasks = adopt(self._volumes, mark_staged(self.staged, tasks), self.stats)
        needed = {v for t in tasks for v in t.targets} | {t.staged.volume for t in tasks if t.staged is not None}
        if all(self._volumes[v].file is not None for v in needed):
            here = self.stats["here"]
            results = self._chunked(_run_tasks, (self._refs(), self.max_bytes, self.fast), self._here, tasks,
                                    lambda task, why: why)
            if self.pooled:
                self.stats["in_workers"] += len(tasks) - (self.stats["here"] - here)
        else:
            results = self._here(tasks)
        errors: dict[int, str] = {}
        for task, outcome in zip(tasks, results, strict=True):
            if isinstance(outcome, str):
                errors[task.index] = outcome
            else:
                for volume, slot in outcome:
                    self._volumes[volume].written[slot] = True
        return errors

    def _here(self, tasks: Sequence[Task]) -> list[Outcome]:
        self.stats["here"] += len(tasks)
        return [_fill(t, lambda v, lo, hi: self._volumes[v].window(lo, hi), self.max_bytes, self.fast) for t in tasks]

    def _too_slow(self) -> str:
        return (f"took longer than {self.timeout_s:g} s to read or decode and was given up (a damaged or hostile "
                "file?); raise MEDUI_DECODE_TIMEOUT_S if it is a real, very large image")

    def _chunked(self, remote: Callable[..., list[Any]], args: tuple[Any, ...], local: Callable[[list[Any]], list[Any]],
                 items: Sequence[Any], failure: Callable[[Any, str], Any]) -> list[Any]:
        """`local(items)`, split into chunks that the workers run as `remote(chunk, *args)`.

        While the workers are still starting, this process runs chunks from the back of the
        queue; once they run, it stays out of their way (3 processes on 2 cores are slower). A
        chunk that runs past `timeout_s` per item gets `failure(item, why)` for each item and its
        workers are killed; a chunk whose worker died is re-run a file at a time to find the one
        that kills it (`WorkerPool.isolate`); either way fresh workers take the chunks left. A chunk
        that fails otherwise (a volume a worker could not open, ...) is run here.
        """
        items = list(items)
        pool = self._pool
        if pool is None or not items:
            return local(items)
        size = max(2, len(items) // (self._ncpu * 16))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        try:
            futures: list[Future[list[Any]]] = [pool.submit(remote, c, *args) for c in chunks]
        except Exception:
            return local(items)
        results: list[list[Any] | None] = [None] * len(chunks)
        front, back = 0, len(chunks) - 1
        while front <= back:
            if not futures[front].done() and not pool.up() and futures[back].cancel():
                results[back] = local(chunks[back])
                back -= 1
                continue
            try:
                results[front] = futures[front].result(timeout=self.timeout_s * len(chunks[front]) or None)
            except TimeoutError:
                results[front] = [failure(item, self._too_slow()) for item in chunks[front]]
                pool.kill()
                pool.crashes += 1
                if pool.restart():
                    pool.resubmit(futures, chunks, front + 1, back, remote, args)
            except BrokenProcessPool:
                results[front] = pool.isolate(remote, args, chunks[front], failure, self.timeout_s, self._too_slow())
                pool.resubmit(futures, chunks, front + 1, back, remote, args)
            except Exception:
                results[front] = local(chunks[front])
            front += 1
        return [r for chunk in results for r in chunk]  # type: ignore[union-attr]

    def _refs(self) -> dict[int, VolumeRef]:
        pid = os.getpid()
        return {v: VolumeRef(pid, vol.file.fd, vol.shape)
                for v, vol in enumerate(self._volumes) if vol.file is not None}

    def close(self) -> None:
        """Stop the workers and release the shared-memory handles (the arrays stay valid)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for v, vol in enumerate(self._volumes):
            if vol.scratch:
                self.release(v)
            elif vol.file is not None:
                self.array(v)  # keep the pixels mapped, then let the memfd go
                os.close(vol.file.fd)
                vol.file = None

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shared_workers(ncpu: int | None = None) -> Workers:
    """Decode workers for a whole server: every load's decoding shares them (`Limits.workers`)."""
    n = ncpu or int(os.environ.get("MEDUI_DECODE_WORKERS", "0") or 0) or _cpu_count()
    return Workers(n, _worker_init, _ready)
