"""Checks of the DICOM header values MedUI uses, made before any of them is used.

Each failure raises InvalidHeaderError naming the attribute and its tag, what was found, what
was expected and what to do, so a hostile or damaged file is skipped with a plain reason instead
of failing deep in a decoder (or taking minutes, or memory, it never announced).
"""

from __future__ import annotations

import math
import time
from typing import IO, Any

from medui.errors import InvalidHeaderError
from medui.io.sources import Limits

_BITS = (1, 8, 16, 32, 64)
_MONO = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")
_REDO = "Re-export the image from the PACS or scanner"


def tag_name(ds: Any, keyword: str) -> str:
    """'Rows (0028,0010)'."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else keyword


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, bytes)) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _get(ds: Any, keyword: str, default: Any = None) -> Any:
    """An attribute's value; text that pydicom cannot convert to its VR is an InvalidHeaderError."""
    try:
        return ds.get(keyword, default)
    except Exception as exc:  # pydicom's conversions raise ValueError, BytesLengthException, ...
        raise InvalidHeaderError(f"has a {tag_name(ds, keyword)} that is not a valid value ({exc}). {_REDO}") from exc


def whole(ds: Any, keyword: str, default: int | None = None, low: int = 1) -> int:
    """An integer attribute that must be at least `low`."""
    value = _get(ds, keyword, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise InvalidHeaderError(f"has no {tag_name(ds, keyword)}; it is required for an image. {_REDO}")
    try:
        number = float(value)
        if not math.isfinite(number) or number != int(number):
            raise ValueError(value)
        n = int(number)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidHeaderError(f"has {tag_name(ds, keyword)} = {_shown(value)}, not a whole number. {_REDO}") from exc
    if n < low:
        raise InvalidHeaderError(f"has {tag_name(ds, keyword)} = {n}; at least {low} was expected. {_REDO}")
    return n


def number(ds: Any, keyword: str) -> float | None:
    """A finite decimal attribute (None when absent); raises for text that is no number."""
    value = _get(ds, keyword)
    if value is None or value == "":
        return None
    try:
        first = value if isinstance(value, (str, bytes, int, float)) else value[0]
        out = float(first)
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidHeaderError(f"has {tag_name(ds, keyword)} = {_shown(value)}, not a number. {_REDO}") from exc
    if not math.isfinite(out):
        raise InvalidHeaderError(f"has {tag_name(ds, keyword)} = {out}, not a finite number. {_REDO}")
    return out


def window_warnings(ds: Any) -> list[str]:
    """Warnings for a stored window that is no number (the window then comes from the pixels)."""
    out = []
    for keyword in ("WindowCenter", "WindowWidth"):
        try:
            number(ds, keyword)
        except InvalidHeaderError as exc:
            out.append(f"the file {str(exc).split('. ')[0].removeprefix('has ')}; the display window is "
                       "computed from the pixels instead")
    return out


def check_header(ds: Any, size: int, offset: int, limits: Limits) -> int:
    """Validate the image pixel module of a parsed header; returns the number of frames.

    `size` is the file's length and `offset` where its Pixel Data element starts.
    """
    rows, cols = whole(ds, "Rows"), whole(ds, "Columns")
    frames = whole(ds, "NumberOfFrames", default=1)
    tsyntax = _transfer_syntax(ds)
    one_by_one = _frames_one_by_one(ds, tsyntax)
    if one_by_one and frames > limits.max_frames:
        raise InvalidHeaderError(
            f"declares {tag_name(ds, 'NumberOfFrames')} = {frames} {one_by_one}; at most {limits.max_frames} such "
            "frames per file are read. Raise MEDUI_MAX_FRAMES if this is a real acquisition")
    samples = whole(ds, "SamplesPerPixel", default=1)
    bits = whole(ds, "BitsAllocated", default=16)
    if bits not in _BITS:
        raise InvalidHeaderError(f"has {tag_name(ds, 'BitsAllocated')} = {bits}; one of 1, 8, 16, 32 or 64 was "
                                 f"expected. {_REDO}")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if (photometric in _MONO and samples != 1) or (photometric in _COLOUR and samples != 3) or samples not in (1, 3):
        raise InvalidHeaderError(
            f"has {tag_name(ds, 'SamplesPerPixel')} = {samples} with {tag_name(ds, 'PhotometricInterpretation')} "
            f"= '{photometric}'; monochrome and palette images have 1 sample per pixel, colour images 3. {_REDO}")
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        number(ds, keyword)
    _check_modality_lut(ds)
    if photometric == "PALETTE COLOR":
        _check_palette(ds)
    _check_pixel_length(ds, size, offset, rows * cols * frames * samples, bits, tsyntax)
    return frames


def _frames_one_by_one(ds: Any, tsyntax: Any) -> str:
    """Why the frames of this object are handled one by one ('' when they are not): compressed frames
    are decoded one at a time and per-frame functional groups are parsed item by item, so both are
    capped by MEDUI_MAX_FRAMES. Native frames are decoded and placed as arrays (medui.io.dicom_grouping):
    their number is bounded by memory alone (pixels and bookkeeping are charged to the load's budget)."""
    if tsyntax is not None and tsyntax.is_encapsulated:
        return "of compressed pixel data (decoded frame by frame)"
    if "PerFrameFunctionalGroupsSequence" in ds:
        return "with per-frame functional groups (5200,9230), read frame by frame"
    return ""


def _transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax is not None and not tsyntax.is_transfer_syntax:
        raise InvalidHeaderError(
            f"has TransferSyntaxUID (0002,0010) = {_shown(str(tsyntax))}, a transfer syntax MedUI does not know; "
            "export the image as standard DICOM (uncompressed, JPEG, JPEG-LS, JPEG 2000 or RLE)")
    return tsyntax


def _check_pixel_length(ds: Any, size: int, offset: int, samples: int, bits: int, tsyntax: Any) -> None:
    if tsyntax is not None and tsyntax.is_deflated:
        return  # offsets are in the inflated stream, not the file
    if size - offset <= 0:
        raise InvalidHeaderError("has no Pixel Data (7FE0,0010): the file ends after its header (truncated?). "
                                 + _REDO)
    if tsyntax is not None and tsyntax.is_compressed:
        return
    header = 8 if ds.original_encoding[0] else 12
    available = size - offset - header
    need = (samples * bits + 7) // 8
    if available < need:
        raise InvalidHeaderError(
            f"has pixel data that could not be decoded: Pixel Data (7FE0,0010) holds {max(available, 0)} bytes "
            f"where Rows x Columns x frames x samples x BitsAllocated promise {need}; the file is truncated "
            f"or its header is wrong. {_REDO}")


def _lut_entries(ds: Any, item: Any, descriptor: str, data: str) -> None:
    desc = item.get(descriptor)
    try:
        n, _, lut_bits = (int(v) for v in desc)
    except (TypeError, ValueError) as exc:
        raise InvalidHeaderError(f"has a {tag_name(ds, descriptor)} of {_shown(desc)}; three numbers (entries, "
                                 f"first value, bits) were expected. {_REDO}") from exc
    n = n or 65536
    value = item.get(data)
    if value is None:
        raise InvalidHeaderError(f"has a {tag_name(ds, descriptor)} but no {tag_name(ds, data)}. {_REDO}")
    have = len(value) if isinstance(value, bytes) else 2 * len(value) if hasattr(value, "__len__") else 2
    if lut_bits not in (8, 16) or have < n * (1 if lut_bits == 8 else 2):
        raise InvalidHeaderError(
            f"has {tag_name(ds, data)} of {have} bytes where {tag_name(ds, descriptor)} promises {n} entries of "
            f"{lut_bits} bits; the lookup table is inconsistent. {_REDO}")


def _check_modality_lut(ds: Any) -> None:
    seq = ds.get("ModalityLUTSequence")
    if seq is None:
        return
    if len(seq) == 0:
        raise InvalidHeaderError(f"has an empty {tag_name(ds, 'ModalityLUTSequence')}. {_REDO}")
    _lut_entries(ds, seq[0], "LUTDescriptor", "LUTData")


def _check_palette(ds: Any) -> None:
    if "SegmentedRedPaletteColorLookupTableData" in ds:
        return  # pydicom expands segmented palettes; their errors are reported when decoding
    for colour in ("Red", "Green", "Blue"):
        _lut_entries(ds, ds, f"{colour}PaletteColorLookupTableDescriptor", f"{colour}PaletteColorLookupTableData")


# Files smaller than this are parsed without a deadline: their header holds at most ~130 000
# elements (well under a second), and most images are this small (a CT slice: 0.5 MB or less).
DEADLINE_FROM_BYTES = 1024**2


class DeadlineReader:
    """A file object for pydicom that gives up once `seconds` have passed: a header of millions of
    tiny elements (megabytes of zeros after the preamble) would otherwise take minutes to parse."""

    def __init__(self, fp: IO[bytes], seconds: float) -> None:
        self._fp = fp
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._calls = 0
        self.name = getattr(fp, "name", "<upload>")
        self.seek = fp.seek  # no wrapper: pydicom calls these for every element
        self.tell = fp.tell

    def read(self, size: int = -1, /) -> bytes:
        self._calls += 1
        if self._calls % 1024 == 0 and time.monotonic() > self._deadline:
            raise InvalidHeaderError(
                f"took more than {self._seconds:g} s to parse its header (about {self._calls // 2} elements read, "
                "none of them pixels): a damaged or hostile file. Raise MEDUI_HEADER_TIMEOUT_S if it is a real image")
        return self._fp.read(size)
