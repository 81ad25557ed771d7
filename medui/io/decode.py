"""Pixel decoding of one DICOM instance, and writing its frames into an output volume.

`medui.io.parallel` runs this on all cores for big compressed series.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut

from medui.io import codecs
from medui.io.budget import FATAL
from medui.io.mosaic import detile
from medui.io.sources import SourceFile

# Imported here so that worker processes (forked from a server that preloads this module) start
# with the decoders already loaded.
for _plugin in ("libjpeg", "openjpeg", "rle", "pydicom.pixels.decoders.pylibjpeg"):
    with contextlib.suppress(ImportError):
        __import__(_plugin)

# (frame index in the file, slot in the volume, rescale slope, rescale intercept)
Target = tuple[int, int, float, float]


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
class PixelHint:
    """Where an instance's Pixel Data starts, and the header elements needed to decode it
    (the image pixel module, group 0028, and the transfer syntax): with it, decoding reads only
    the pixel data instead of parsing the whole header a second time (~0.6 ms per CT file)."""

    header: Any  # a pydicom Dataset with file_meta
    offset: int
    implicit_vr: bool
    little_endian: bool


def _read_with_hint(src: SourceFile, hint: PixelHint) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.filereader import read_dataset

    with src.open() as fh:
        fh.seek(hint.offset)
        tail = read_dataset(fh, hint.implicit_vr, hint.little_endian)
    if "PixelData" not in tail:
        raise ValueError("no Pixel Data where the header ended")
    ds = Dataset()
    ds.update(hint.header)
    ds.update(tail)
    ds.file_meta = hint.header.file_meta
    ds.set_original_encoding(hint.implicit_vr, hint.little_endian, "iso8859")
    return ds


@dataclass(frozen=True)
class Decoded:
    """Pixels of one instance: raw stored values (rescaled later) or final float32 values."""

    array: np.ndarray  # (frames, rows, cols[, 3])
    rescale: bool  # True: apply the per-frame slope/intercept; False: already modality values


def decode_dicom(src: SourceFile, max_bytes: int = 2**62, fast: bool = True,
                 hint: PixelHint | None = None) -> Decoded | str:
    """Decode one instance. Returns an error text instead of raising, so one bad file in a pool
    never takes the others down. `fast`: use the imagecodecs plugin where it applies; `hint`:
    read only the pixel data (the whole file is parsed if that fails)."""
    try:
        ds = None
        if hint is not None:
            try:
                ds = _read_with_hint(src, hint)
            except Exception:
                ds = None
        if ds is None:
            with src.open() as fh:
                ds = pydicom.dcmread(fh, force=True)
            _ensure_transfer_syntax(ds)
        if int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1) * 4 > max_bytes:
            return "its decoded image would exceed the memory limit"
        refused = check_j2k_size(ds, max_bytes)
        if refused:
            return refused
        arr = codecs.pixel_array(ds, fast)
    except FATAL:
        raise
    except BaseException as exc:  # decoders raise many types, native ones even panics: report them alike
        return _decode_error(src, exc)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if arr.ndim == (4 if samples > 1 else 3) and arr.shape[0] > n:
        arr = arr[:n]  # more pixel data than the header's frames (trailing bytes): the header wins
    if arr.ndim == (3 if samples > 1 else 2):
        arr = arr[np.newaxis]
    if samples > 1 or pi == "PALETTE COLOR":
        return Decoded(_as_rgb_float(arr, ds), rescale=False)
    if ds.get("ModalityLUTSequence"):
        return Decoded(np.asarray(apply_modality_lut(arr, ds), dtype=np.float32), rescale=False)
    return Decoded(arr, rescale=True)


_J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")


def j2k_size(codestream: bytes) -> tuple[int, int, int] | None:
    """(columns, rows, components) from the SIZ marker of a JPEG 2000 codestream, or None."""
    at = codestream.find(b"\xff\x4f\xff\x51", 0, 4096)  # SOC then SIZ (also inside a JP2 box)
    if at < 0 or len(codestream) < at + 42:
        return None
    x, y, x0, y0 = (int.from_bytes(codestream[at + k:at + k + 4], "big") for k in (8, 12, 16, 20))
    components = int.from_bytes(codestream[at + 40:at + 42], "big")
    return x - x0, y - y0, components


def _first_fragment(data: bytes, head: int = 4096) -> bytes:
    """Up to `head` bytes of the first fragment after the Basic Offset Table ('' when malformed)."""
    at = 0
    for _ in range(2):  # the offset table item, then the first fragment
        if len(data) < at + 8 or data[at:at + 4] != b"\xfe\xff\x00\xe0":
            return b""
        length = int.from_bytes(data[at + 4:at + 8], "little")
        if _ == 1:
            return data[at + 8:at + 8 + min(length, head)]
        at += 8 + length
    return b""


def check_j2k_size(ds: Any, max_bytes: int) -> str | None:
    """Why a JPEG 2000 file is refused before decoding: its first codestream declares another size
    than Rows/Columns, or more pixels than the limit. None when it may be decoded."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if tsyntax not in _J2K or "PixelData" not in ds:
        return None
    size = j2k_size(_first_fragment(ds.PixelData))
    if size is None:
        return None
    cols, rows, comps = size
    if cols * rows * max(comps, 1) * 4 > max_bytes:
        return (f"its JPEG 2000 codestream declares {cols}x{rows} pixels ({comps} components), more than the "
                "memory limit allows; it was not decoded")
    if (cols, rows) != (int(ds.Columns), int(ds.Rows)):
        return (f"its JPEG 2000 codestream declares {cols}x{rows} pixels but Rows (0028,0010) x Columns "
                f"(0028,0011) say {int(ds.Columns)}x{int(ds.Rows)}; the file is inconsistent. Re-export it")
    return None


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


def _decode_error(src: SourceFile, exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, Exception):  # a native decoder's panic: name it
        text = f"{type(exc).__name__}: {text}"
    if "plugin" in text.lower() or "decoder" in text.lower() or "no pixel data handlers" in text.lower():
        return (f"its pixel data could not be decoded ({text}). Install the decoders in requirements.txt "
                "(pylibjpeg with libjpeg, openjpeg and rle) or convert the file to uncompressed DICOM")
    return f"its pixel data could not be decoded ({text})"


POPULATE_ABOVE = 32 * 1024**2  # bytes: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (see alloc_volume)


def alloc_volume(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """An uninitialised array; above `POPULATE_ABOVE` bytes, one whose pages are mapped up front (MAP_POPULATE).

    glibc serves allocations above 32 MiB (its largest mmap threshold on 64-bit) with fresh pages each
    time: faulting in a few hundred MB one page at a time costs ~0.7 s on a 2-core VM, more than the
    decoding it is filled by, and a populated anonymous mapping ~0.1 s. At or below it, a freed array's
    memory stays in the heap and the next array of its size takes pages already mapped: a batch job
    decoding one 2048x2048 radiograph (16 MiB) after another spends 1.3 ms per study allocating and
    filling instead of 15 ms with a populated mapping each time. Freed with the array.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes <= POPULATE_ABOVE or not populate:
        return np.empty(shape, dtype)
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except (OSError, ValueError):
        return np.empty(shape, dtype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def write_frames(result: Decoded, out: np.ndarray, targets: Sequence[Target]) -> str | list[int]:
    """Write decoded frames to their slots of `out`, rescaled to modality values (float32).

    A negative frame -1-k means tile k of a mosaic's one frame (`medui.io.mosaic`).
    Returns the slots written, or why none could be (pixels of another size than the header's).
    """
    t = np.asarray(targets, float).reshape(-1, 4)
    done = write_many(result, out, t[:, 0].astype(np.intp), t[:, 1].astype(np.intp), t[:, 2], t[:, 3])
    return done if isinstance(done, str) else done.tolist()


# Frames are rescaled in blocks of about this many bytes (bounded temporaries, few numpy calls).
_BLOCK_BYTES = 16 * 1024**2


def write_many(result: Decoded, out: np.ndarray, frames: np.ndarray, slots: np.ndarray, slope: np.ndarray,
               intercept: np.ndarray) -> str | np.ndarray:
    """`write_frames` with the targets as arrays: frame `frames[k]` goes to slot `slots[k]` as
    `value * slope[k] + intercept[k]`. Vectorised: a million 1x1 frames are a few numpy calls.
    Returns the slots written, or why none could be."""
    arr = result.array
    frames = np.asarray(frames, np.intp)
    if frames.size and frames[0] < 0:  # a mosaic: frame -1-k is tile k of its one frame (mosaic.tile_frame)
        tiles = detile(arr[0], *out.shape[1:3]) if arr.ndim == 3 and out.ndim == 3 else (
            "its pixel data is not one greyscale frame, so the mosaic cannot be cut into slices")
        if isinstance(tiles, str):
            return tiles
        arr, frames = tiles, -1 - frames
    if arr.shape[1:] != out.shape[1:]:
        return (f"its pixel data decoded to {'x'.join(map(str, arr.shape[1:]))}, not the "
                f"{'x'.join(map(str, out.shape[1:]))} its header states")
    keep = (frames >= 0) & (frames < arr.shape[0])
    frames, slots = frames[keep], np.asarray(slots, np.intp)[keep]
    slope = np.broadcast_to(np.asarray(slope, float), keep.shape)[keep]
    intercept = np.broadcast_to(np.asarray(intercept, float), keep.shape)[keep]
    per = (slice(None),) + (np.newaxis,) * (arr.ndim - 1)
    step = max(1, _BLOCK_BYTES // max(out[0].nbytes, 1))
    for lo in range(0, len(frames), step):
        f, s = frames[lo:lo + step], slots[lo:lo + step]
        contiguous = len(f) == arr.shape[0] and f[0] == 0 and bool(np.all(np.diff(f) == 1))
        src = arr if contiguous else arr[f]
        sl = slope[lo:lo + step].astype(np.float32)
        ic = intercept[lo:lo + step].astype(np.float32)
        if not result.rescale or (np.all(sl == 1) and np.all(ic == 0)):
            block = src
        elif np.all(sl == 1):
            block = np.add(src, ic[per])
        else:
            block = np.multiply(src, sl[per]).astype(np.float32, copy=False)
            block += ic[per]
        if len(s) and s[0] == 0 and s[-1] == len(s) - 1 and len(s) == out.shape[0] and bool(np.all(np.diff(s) == 1)):
            out[...] = block
        else:
            out[s] = block
    return slots
