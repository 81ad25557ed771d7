"""DICOM files decoded while later ones still arrive (a retrieval from a PACS): the DICOM reader's
part of `medui.io.loader.Loading`.

Each file of the load's DICOM batch goes to the decode workers as it arrives (they start in a
thread of their own once the first compressed files are in): they read its header
(`parse_detached`, as `read_dicom` does in them) and, for a one-frame image of the first file's
frame size, decode it and write it, rescaled by its own header with the same `write_frames` the
ordinary path uses, into a slot of a staging volume in shared memory. When the last file is in,
`read_dicom` groups and sorts the headers exactly as for `load`. A series whose every frame was
staged in one staging volume of its size (a series retrieved with its instance count) takes that
volume over, reordered in place; otherwise staged frames are copied to their slots (when the
rescale the series gives them is the one they were written with). What was not staged (other
frame sizes, multi-frame objects, mosaics, a worker that crashed or hung, the memory budget) is
read the ordinary way then. Nothing here decides what a series is: staging only moves decoding
earlier, so the voxels are identical to `load`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from medui.io.budget import FATAL
from medui.io.decode import decode_dicom, write_frames
from medui.io.dicom import FRAME_BOOKKEEPING_BYTES, Instance, decoded_bytes, parse, parse_detached
from medui.io.parallel import PARALLEL_MIN_FILES, Decoder, VolumeRef, _is_compressed, _VolumeFile
from medui.io.readers import ReadResult
from medui.io.sources import Limits, Skipped, SourceFile
from medui.io.staging import Staged

NICE = 4  # the priority of a load's own decode workers below the process receiving the files
STAGE_SLOTS = 32  # frames per staging volume (each its own shared-memory file: nothing ever grows)
CHUNK = 4  # files sent to a worker at once

Slot = tuple[int, int]  # (staging volume, slot)
Parsed = Instance | Skipped
Outcome = tuple[Parsed, tuple[float, float] | None]  # the header, the staged frame's (slope, intercept) or None


def plane_of(ds: object) -> tuple[int, ...]:
    """The shape one frame of an instance takes in its series volume (as `plan_stack` makes it)."""
    rows, cols = int(ds.Rows), int(ds.Columns)  # type: ignore[attr-defined]
    rgb = decoded_bytes(ds, 1) - FRAME_BOOKKEEPING_BYTES > rows * cols * 4
    return (rows, cols, 3) if rgb else (rows, cols)


def _stage_chunk(chunk: list[tuple[SourceFile, Slot | None]], refs: dict[int, VolumeRef], plane: tuple[int, ...],
                 limits: Limits, fast: bool) -> list[Outcome]:
    """In a worker: each file's slim header, and its one frame decoded into its staging slot."""
    files: dict[int, _VolumeFile] = {}
    out: list[Outcome] = []
    try:
        for src, slot in chunk:
            parsed = parse_detached(src, limits)
            rescale = None
            if slot is not None and isinstance(parsed, Instance):
                rescale = _stage(src, parsed, slot, refs, files, plane, limits, fast)
            out.append((parsed, rescale))
    finally:
        for f in files.values():
            os.close(f.fd)
    return out


def _stage(src: SourceFile, inst: Instance, slot: Slot, refs: dict[int, VolumeRef], files: dict[int, _VolumeFile],
           plane: tuple[int, ...], limits: Limits, fast: bool) -> tuple[float, float] | None:
    """Decode one file into its slot, rescaled by its own header as `write_frames` does for its series;
    (slope, intercept), or None when it is left to the ordinary path."""
    if inst.n_frames != 1 or inst.mosaic is not None or plane_of(inst.ds) != plane:
        return None
    try:
        result = decode_dicom(src, limits.max_image_bytes, fast, inst.hint)
        if isinstance(result, str) or result.array.shape != (1, *plane):
            return None  # an error is found (and reported) again by the ordinary path
        volume, k = slot
        if volume not in files:
            ref = refs[volume]
            files[volume] = _VolumeFile(os.open(f"/proc/{ref.pid}/fd/{ref.fd}", os.O_RDWR), ref.shape)
        slope, intercept = float(inst.geoms.slope[0]), float(inst.geoms.intercept[0])
        done = write_frames(result, files[volume].window(k, k), [(0, 0, slope, intercept)])
        return None if isinstance(done, str) or done != [0] else (slope, intercept)
    except FATAL:
        raise
    except Exception:
        return None


@dataclass
class _Sent:
    indices: list[int]
    future: Future[list[Outcome]]


class DicomPrefetch:
    """The DICOM batch of a load fed file by file; `read()` gives what `read_dicom` gives for it.

        early = DicomPrefetch(limits)
        for src in arriving: early.add(src)
        result = early.read()
    """

    def __init__(self, limits: Limits, expected: int | None = None) -> None:
        self.limits = limits
        self.sources: list[SourceFile] = []
        self.decoder: Decoder | None = None
        self._expected = expected or 0
        self._off = False  # no workers to be had: everything is read at the end, as by `load`
        self._plane: tuple[int, ...] | None = None
        self._staging: list[int] = []  # staging volumes
        self._bases: list[int] = []  # the first slot number of each
        self._capacity = 0
        self._slots = 0  # slots handed out
        self._room = 0  # bytes that staging may still use (never more than the load may keep)
        self._pending: list[tuple[int, Slot | None]] = []  # the next chunk, filling
        self._queued: list[list[tuple[int, Slot | None]]] = []  # chunks waiting for a worker
        self._assigned: dict[int, Slot] = {}
        self._sent: list[_Sent] = []
        # what goes to a worker: no shared pool or budget objects (they hold locks)
        self._remote_limits = dataclasses.replace(limits, workers=None)
        self.staged = 0  # files whose frame was decoded ahead
        self._starter: threading.Thread | None = None
        self._started: tuple[Decoder | None, tuple[int, ...] | None] = (None, None)

    def add(self, src: SourceFile) -> None:
        """The batch's next file; decoding starts once there are enough compressed files to pay for it."""
        self.sources.append(src)
        if not self._off and self._ready():
            self._catch_up()

    def _catch_up(self) -> None:
        """Slots and chunks for the files not yet handed to the workers; send what they may take now."""
        assert self.decoder is not None
        for index in range(len(self.decoder.sources), len(self.sources)):
            self.decoder.append(self.sources[index])
            slot = self._slot()
            if slot is not None:
                self._assigned[index] = slot
            self._pending.append((index, slot))
        while len(self._pending) >= CHUNK:
            self._queued.append(self._pending[:CHUNK])
            self._pending = self._pending[CHUNK:]
        workers = self.decoder.stats["workers"]
        self._pump(workers if self.limits.workers is None else max(1, workers - 1))

    def _pump(self, busy: int) -> None:
        """Send queued chunks while fewer than `busy` are being worked on. The retrieval is a chain of
        round trips, each waiting for this process to answer: decoders that keep every core busy
        delay each answer (on two cores a C-GET took twice as long). This load's own workers run
        at a lower priority (`NICE`) and may all work; of a server's shared ones (whose priority
        is not ours to lower) one core is left free while files arrive. At the end all take part."""
        working = sum(1 for sent in self._sent if not sent.future.done())
        while self._queued and working < busy:
            self._send(self._queued.pop(0))
            working += 1

    def _ready(self, wait: bool = False) -> bool:
        """Whether the workers are up (they start in a thread of their own, so that the process
        receiving the files goes on answering meanwhile: starting them takes ~0.4 s)."""
        if self.decoder is not None:
            return True
        if self._starter is None and max(len(self.sources), self._expected) >= PARALLEL_MIN_FILES // 2:
            self._starter = threading.Thread(target=self._start, args=(self.sources[0],), daemon=True,
                                             name="medui-prefetch-start")
            self._starter.start()
        if self._starter is None or (self._starter.is_alive() and not wait):
            return False
        self._starter.join()
        self.decoder, self._plane = self._started
        if self.decoder is None:
            self._off = True
            return False
        budget = self.limits.budget.remaining if self.limits.budget is not None else self.limits.max_load_bytes
        self._room = min(budget, self.limits.max_series_bytes)
        return True

    def _start(self, first: SourceFile) -> None:
        """In the starter thread: workers, and the staging frame size from the first file (none for
        uncompressed data, which decodes in no time, or a bad first file: the ordinary path says why)."""
        parsed = parse(first, self.limits)
        if not _is_compressed(first) or not isinstance(parsed, Instance):
            return
        decoder = Decoder([], max_image_bytes=self.limits.max_image_bytes, timeout_s=self.limits.decode_seconds,
                          shared=self.limits.workers, pool=True, nice=NICE)
        if not decoder.pooled:
            decoder.close()
            return
        self._started = (decoder, plane_of(parsed.ds))

    def _slot(self) -> Slot | None:
        """A free staging slot, while the memory allows."""
        assert self.decoder is not None and self._plane is not None
        size = int(np.prod(self._plane)) * 4
        if size > self._room:
            return None
        if self._slots == self._capacity:  # the expected count at first (a series may take it over whole)
            n = self._expected if not self._staging and self._expected >= PARALLEL_MIN_FILES // 2 else STAGE_SLOTS
            try:
                self._staging.append(self.decoder.volume((n, *self._plane), scratch=True))
                self._bases.append(self._capacity)
                self._capacity += n
            except OSError:
                return None
        self._room -= size
        self._slots += 1
        return self._staging[-1], self._slots - 1 - self._bases[-1]

    def _send(self, pending: list[tuple[int, Slot | None]]) -> None:
        assert self.decoder is not None
        chunk = [(self.sources[k], slot) for k, slot in pending]
        future = self.decoder.submit(_stage_chunk, chunk, self.decoder._refs(), self._plane, self._remote_limits,
                                     self.decoder.fast)
        if future is not None:
            self._sent.append(_Sent([k for k, _ in pending], future))

    def headers(self) -> list[Parsed]:
        """Every file's header in the batch's order (what was not read ahead is read now); the
        frames staged are known to the decoder (`Decoder.staged`)."""
        if self.decoder is None:
            return [parse(s, self.limits) for s in self.sources]
        if self._pending:
            self._queued.append(self._pending)
            self._pending = []
        self._pump(len(self._queued) + len(self._sent))
        got: dict[int, Parsed] = {}
        repaired = False
        for sent in self._sent:
            try:
                outcomes = sent.future.result(timeout=self.limits.decode_seconds * len(sent.indices) or None)
            except FATAL:
                raise
            except BaseException:  # a crash or a hang: the ordinary path finds and names the file
                if not repaired:  # once: the jobs sent after it fail with the same break
                    self.decoder.repair()
                    repaired = True
                continue
            for index, (parsed, rescale) in zip(sent.indices, outcomes, strict=True):
                got[index] = parsed
                slot = self._assigned.get(index)
                if rescale is not None and slot is not None:
                    self.decoder.staged[index] = Staged(slot[0], slot[1], *rescale)
                    self.staged += 1
        self._sent = []
        missing = [k for k in range(len(self.sources)) if k not in got]
        if missing:
            fn = parse_detached if self.decoder.pooled else parse
            for k, parsed in zip(missing, self.decoder.map(fn, self._remote_limits, only=missing), strict=True):
                got[k] = parsed
        return [got[k] for k in range(len(self.sources))]

    def read(self) -> ReadResult:
        """The batch read as `read_dicom` reads it, with the frames already decoded placed, not decoded."""
        from medui.io.dicom import read_dicom

        if not self._off and self._starter is not None and self._ready(wait=True):
            self._catch_up()  # the files that came while the workers started
        series, skipped, stats = read_dicom(self.sources, self.limits, early=self)
        return ReadResult(series, skipped, stats["workers"] if stats["in_workers"] else 0)

    def close(self) -> None:
        """Stop the workers and free the staged frames (a load abandoned before `read`, or done);
        a `read` afterwards reads every file the ordinary way."""
        self._off = True
        if self._starter is not None:
            self._starter.join()
        decoder = self.decoder or self._started[0]
        self.decoder, self._started = None, (None, None)
        if decoder is not None:
            with contextlib.suppress(Exception):
                decoder.close()
