"""Pixel decoding of DICOM instances, in worker processes when a series is large.

The JPEG/JPEG-LS/JPEG 2000 decoders hold the GIL, so threads gain nothing; a process pool
(forkserver: safe to start from a threaded server) spreads a big compressed series over the cores.
"""

from __future__ import annotations

import io
import mmap
import multiprocessing as mp
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, apply_modality_lut

from medui.io.sources import SourceFile

# Imported here so that worker processes (forked from a server that preloads this module) start
# with the decoders already loaded.
for _plugin in ("libjpeg", "openjpeg", "rle", "pydicom.pixels.decoders.pylibjpeg"):
    try:
        __import__(_plugin)
    except ImportError:
        pass

UNCOMPRESSED_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
# Below this many compressed bytes a pool costs more than it saves.
PARALLEL_MIN_BYTES = 8 * 1024**2
PARALLEL_MIN_FILES = 16


def _as_rgb_float(arr: np.ndarray, ds) -> np.ndarray:  # type: ignore[no-untyped-def]
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        scale = 255.0 / 65535.0 if rgb.dtype == np.uint16 else 1.0
        return rgb.astype(np.float32) * np.float32(scale)
    out = arr.astype(np.float32)
    if arr.dtype.itemsize > 1:  # 16-bit colour: bring to 0..255 for display
        out *= np.float32(255.0 / max(float(2 ** int(ds.get("BitsStored", 16)) - 1), 1.0))
    return out


@dataclass(frozen=True)
class Decoded:
    """Pixels of one instance: raw stored values (rescaled later) or final float32 values."""

    array: np.ndarray  # (frames, rows, cols[, 3])
    rescale: bool  # True: apply the per-frame slope/intercept; False: already modality values


def decode_dicom(src: SourceFile, max_bytes: int = 2**62) -> Decoded | str:
    """Decode one instance. Returns an error text instead of raising, so one bad file in a pool
    never takes the others down."""
    try:
        ds = pydicom.dcmread(io.BytesIO(src.data) if src.data is not None else src.path, force=True)
        _ensure_transfer_syntax(ds)
        if int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1) * 4 > max_bytes:
            return "its decoded image would exceed the memory limit"
        arr = ds.pixel_array
    except Exception as exc:  # decoders raise many types; report them all the same way
        return _decode_error(src, exc)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if n == 1 or arr.ndim == (3 if samples > 1 else 2):
        arr = arr[np.newaxis]
    if samples > 1 or pi == "PALETTE COLOR":
        return Decoded(_as_rgb_float(arr, ds), rescale=False)
    if ds.get("ModalityLUTSequence"):
        return Decoded(np.asarray(apply_modality_lut(arr, ds), dtype=np.float32), rescale=False)
    return Decoded(arr, rescale=True)


def _ensure_transfer_syntax(ds) -> None:  # type: ignore[no-untyped-def]
    """Files without file meta still say how they were encoded; tell the decoder."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if ds.original_encoding[0]:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if ds.original_encoding[1] else ExplicitVRBigEndian


def _decode_error(src: SourceFile, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "plugin" in text.lower() or "decoder" in text.lower() or "no pixel data handlers" in text.lower():
        return (f"its pixel data could not be decoded ({text}). Install the decoders in requirements.txt "
                "(pylibjpeg with libjpeg, openjpeg and rle) or convert the file to uncompressed DICOM")
    return f"its pixel data could not be decoded ({text})"


def _pool_context() -> mp.context.BaseContext:
    if sys.platform.startswith("linux"):
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["medui.io.decode"])
        return ctx
    return mp.get_context("spawn")


def alloc_volume(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """An uninitialised array whose pages are mapped up front (MAP_POPULATE).

    Faulting in a few hundred MB one page at a time costs ~0.7 s on a 2-core VM, more than the
    decoding it is filled by; a populated anonymous mapping costs ~0.1 s. Freed with the array.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes < 16 * 1024**2 or not populate:
        return np.empty(shape, dtype)
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except (OSError, ValueError):
        return np.empty(shape, dtype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _decode_chunk(items: list[SourceFile], max_bytes: int) -> list[Decoded | str]:
    return [decode_dicom(src, max_bytes) for src in items]


def _worth_a_pool(sources: Sequence[SourceFile], ncpu: int) -> bool:
    if ncpu < 2 or len(sources) < PARALLEL_MIN_FILES:
        return False
    if sum(src.size for src in sources) < PARALLEL_MIN_BYTES:
        return False
    return _is_compressed(sources[0]) or _is_compressed(sources[len(sources) // 2])


def _is_compressed(src: SourceFile) -> bool:
    try:
        ds = pydicom.dcmread(io.BytesIO(src.head(4096)), stop_before_pixels=True, force=True,
                             specific_tags=["SOPClassUID"])
        ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if getattr(ds, "file_meta", None) else ""
    except Exception:
        return False
    return ts not in UNCOMPRESSED_SYNTAXES and ts != ""


class Decoder:
    """Decodes DICOM sources on request, each once.

    For a big compressed set, one worker process per core starts decoding as soon as the Decoder
    is made (while this process still reads headers), taking chunks from the front. `take` then
    collects results in order; whenever the next one is not ready it decodes a chunk from the
    back here instead of waiting (cancelling it in the pool), so no core idles and a slow worker
    start costs nothing.
    """

    def __init__(self, sources: Sequence[SourceFile], max_image_bytes: int = 2**62, workers: int | None = None) -> None:
        self.sources = list(sources)
        self.max_bytes = max_image_bytes
        self._cache: dict[int, Decoded | str] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._chunks: list[list[int]] = []
        self._futures: list[Future] = []
        ncpu = workers or int(os.environ.get("MEDUI_DECODE_WORKERS", "0") or 0) or _cpu_count()
        if not _worth_a_pool(self.sources, ncpu):
            return
        size = max(2, len(self.sources) // (ncpu * 16))
        self._chunks = [list(range(i, min(i + size, len(self.sources)))) for i in range(0, len(self.sources), size)]
        try:
            self._pool = ProcessPoolExecutor(max_workers=ncpu, mp_context=_pool_context())
            self._futures = [self._pool.submit(_decode_chunk, [self.sources[i] for i in c], self.max_bytes) for c in self._chunks]
        except (OSError, BrokenProcessPool):
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            for fut in self._futures:
                fut.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pending(self, chunk: list[int]) -> bool:
        return any(i not in self._cache for i in chunk)

    def take(self, wanted: Sequence[int]) -> Iterator[tuple[int, Decoded | str]]:
        """Yield (index, result) for each wanted source, in no particular order."""
        want = set(wanted)
        for i in list(want):
            if i in self._cache:
                want.discard(i)
                yield i, self._cache.pop(i)
        if self._pool is None:
            for i in sorted(want):
                yield i, decode_dicom(self.sources[i], self.max_bytes)
            return
        front, back = 0, len(self._chunks) - 1
        while want:
            while front <= back and not self._wanted(front, want):
                front += 1
            while back >= front and not self._wanted(back, want):
                back -= 1
            if front > back:
                break
            if not self._futures[front].done() and self._futures[back].cancel():
                # The pool is busy with earlier chunks: decode the last one here meanwhile.
                for i in self._chunks[back]:
                    yield from self._deliver(i, decode_dicom(self.sources[i], self.max_bytes), want)
                back -= 1
                continue
            yield from self._collect(front, want)  # done, or nothing left to steal: wait for it
            front += 1
        for i in sorted(want):  # not covered by any chunk (never expected)
            yield i, decode_dicom(self.sources[i], self.max_bytes)

    def _wanted(self, k: int, want: set[int]) -> bool:
        return any(i in want for i in self._chunks[k])

    def _deliver(self, i: int, result: Decoded | str, want: set[int]) -> Iterator[tuple[int, Decoded | str]]:
        if i in want:
            want.discard(i)
            yield i, result
        else:
            self._cache[i] = result

    def _collect(self, k: int, want: set[int]) -> Iterator[tuple[int, Decoded | str]]:
        chunk, fut = self._chunks[k], self._futures[k]
        if fut.cancelled() or not self._pending(chunk):
            return
        try:
            results = fut.result()
        except BrokenProcessPool:  # a worker died: decode its share here
            results = [decode_dicom(self.sources[i], self.max_bytes) for i in chunk]
        for i, result in zip(chunk, results):
            if i not in self._cache:
                yield from self._deliver(i, result, want)
