"""DICOM: read headers, group instances into series and stacks, decode, and place them in space."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from medui.errors import ImageTooLargeError, InvalidHeaderError, MedUIError, UnreadableFileError, UnsupportedImageError
from medui.io.budget import FATAL
from medui.io.decode import Decoded, PixelHint, Target, alloc_volume, decode_dicom, write_many
from medui.io.dicom_checks import DEADLINE_FROM_BYTES, DeadlineReader, check_header, window_warnings
from medui.io.dicom_grouping import MAX_SPLIT, Stack, group
from medui.io.dicom_header import header_rows
from medui.io.dicom_voi import voi_lut, voi_module, window
from medui.io.geometry import FrameTable, frame_geometries, stack_affine
from medui.io.mosaic import Mosaic, described, is_mosaic, layout
from medui.io.parallel import Decoder
from medui.io.sources import Limits, Skipped, SourceFile
from medui.series import Series

if TYPE_CHECKING:
    from medui.io.prefetch import DicomPrefetch

# SOP classes that hold no displayable image, by UID prefix, with the words a user understands.
_NON_IMAGE = {
    "1.2.840.10008.5.1.4.1.1.88": "a structured report (SR)",
    "1.2.840.10008.5.1.4.1.1.481.3": "an RT structure set (RTSTRUCT)",
    "1.2.840.10008.5.1.4.1.1.481.5": "an RT plan",
    "1.2.840.10008.5.1.4.1.1.11": "a presentation state",
    "1.2.840.10008.1.3.10": "a DICOMDIR (media directory)",
    "1.2.840.10008.5.1.4.1.1.9": "a waveform",
    "1.2.840.10008.5.1.4.1.1.104": "an encapsulated document",
    "1.2.840.10008.5.1.4.1.1.66": "raw data or a registration/segmentation object",
}


@dataclass(eq=False)
class Instance:
    """A DICOM file with pixels, parsed up to (not including) its pixel data."""

    src: SourceFile
    ds: Any
    geoms: FrameTable  # one row per frame (per tile of a mosaic)
    n_frames: int
    index: int = -1  # position in the list given to the Decoder
    slim: bool = False  # `ds` holds only what grouping needs (parsed in a worker); see full_header
    hint: PixelHint | None = None  # where the pixel data starts, for compressed files
    mosaic: Mosaic | None = None  # a Siemens MOSAIC or UIH grid: `geoms` has one entry per tile (medui.io.mosaic)
    notes: tuple[str, ...] = ()  # warnings found while reading the header
    label: str = ""  # 'volume k of N' for one of several mosaic files of a series


def parse(src: SourceFile, limits: Limits) -> Instance | Skipped:
    """Read the header of one file; say plainly why it is skipped when it is no usable image."""
    from medui.io.readers import unexpected

    try:
        return read_header(src, limits)
    except MedUIError as exc:
        return Skipped.because(src.name, exc)
    except FATAL:
        raise
    except BaseException as exc:  # a parser bug or a native library's panic: this file only
        return Skipped(src.name, unexpected(exc))


def read_header(src: SourceFile, limits: Limits) -> Instance:
    """The header of one DICOM image file, checked against the memory cap.

    Raises UnreadableFileError (not DICOM, damaged), UnsupportedImageError (a DICOM object that
    is no image: SR, RTSTRUCT, DICOMDIR, ...) or ImageTooLargeError.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with src.open() as raw:
            fp: Any = raw if src.size < DEADLINE_FROM_BYTES else DeadlineReader(raw, limits.header_seconds)
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError as exc:
                fp.seek(0)
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                if "SOPClassUID" not in ds and "Rows" not in ds:
                    raise UnreadableFileError("is not a DICOM file (no DICOM header found) nor a supported image "
                                              "(NIfTI, PNG, JPEG, TIFF)") from exc
            offset = fp.tell()  # pydicom stops at the start of the Pixel Data element
    except MedUIError:
        raise
    except RecursionError as exc:
        raise InvalidHeaderError("nests sequences (SQ) deeper than MedUI reads: a damaged or hostile file. "
                                 "Re-export it from the PACS") from exc
    except Exception as exc:
        raise UnreadableFileError(f"is a damaged or truncated DICOM file ({_first_line(exc)}); "
                                  "re-export it from the PACS") from exc
    _check_is_image(ds)
    n_frames = check_header(ds, src.size, offset, limits)
    limits.check_image(decoded_bytes(ds, n_frames), f"{ds.Rows}x{ds.Columns}, {n_frames} frame(s)")
    try:
        geoms = frame_geometries(ds, n_frames, limits.header_seconds)
    except InvalidHeaderError:
        raise
    except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise InvalidHeaderError(
            f"has a position, orientation, spacing or rescale value that is no number ({_first_line(exc)}), in its "
            "per-frame functional groups (5200,9230) or shared ones (5200,9229). Re-export it from the PACS") from exc
    geoms = geoms.checked_orientation()
    _check_orientations(ds, geoms)
    mosaic: Mosaic | None = None
    notes: list[str] = []
    if is_mosaic(ds):
        mosaic, tiles, notes = layout(ds, n_frames, geoms[:1])  # a mosaic has one frame; more are refused
        if mosaic is not None:
            geoms = FrameTable.of(tiles)
    return Instance(src, ds, geoms, n_frames, hint=_pixel_hint(ds, offset), mosaic=mosaic, notes=tuple(notes))


_BAD_ORIENTATION = ("ImageOrientationPatient (0020,0037) is not two unit, perpendicular direction cosines: the "
                    "image is shown without orientation (no reslicing or millimetre positions)")


def _check_orientations(ds: Any, geoms: FrameTable) -> None:
    """A multi-frame object whose frames lie in more orientations than MAX_SPLIT would become as many
    one-frame stacks: refused (a hostile header, or a localiser set better loaded as separate files)."""
    o = geoms.orientation
    if len(geoms) <= MAX_SPLIT or o.strides[0] == 0:
        return
    count = len(np.unique(np.where(np.isfinite(o), np.round(o, 3) + 0.0, np.inf), axis=0))
    if count > MAX_SPLIT:
        raise InvalidHeaderError(
            f"has frames in {count} different orientations (ImageOrientationPatient (0020,0037) of its per-frame "
            f"functional groups); at most {MAX_SPLIT} are read, each as a stack of its own. Re-export the frames "
            "as separate files")


def _check_is_image(ds: Any) -> None:
    """Raise UnsupportedImageError (or UnreadableFileError) for a DICOM object with no image to show."""
    meta = ds.get("file_meta") or {}
    sop = str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", "") or "")
    if "DirectoryRecordSequence" in ds:
        raise UnsupportedImageError("is a DICOMDIR (an index of other files), not an image; "
                                    "upload the image files it lists")
    for prefix, what in _NON_IMAGE.items():
        if sop.startswith(prefix):
            raise UnsupportedImageError(f"is {what}, not an image; it was skipped")
    if "Rows" not in ds or "Columns" not in ds:
        if not sop:
            raise UnreadableFileError("is a damaged DICOM file or not an image: it has no SOP Class and no image "
                                      "attributes. Re-export it from the PACS or scanner")
        raise UnsupportedImageError("is a DICOM object without pixel data (not an image); it was skipped")


def _pixel_hint(ds: Any, offset: int) -> PixelHint | None:
    """For an encapsulated (compressed) file: the image pixel module and where its pixels start."""
    from pydicom.dataset import Dataset

    meta: Any = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax is None or not tsyntax.is_encapsulated or ds.original_encoding[0] is None:
        return None
    header = Dataset()
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts elements): group 0028 + EOT, raw
        t = int(tag)  # int comparisons: pydicom's Tag ones cost more than the rest of this
        if 0x00280000 <= t < 0x00290000 or t == 0x7FE00001 or t == 0x7FE00002:
            header[tag] = ds.get_item(tag)
    header.file_meta = meta
    return PixelHint(header, offset, bool(ds.original_encoding[0]), bool(ds.original_encoding[1]))


# What grouping, sorting and memory checks read from an instance's header.
_GROUPING = ("SOPInstanceUID", "SeriesInstanceUID", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
             "InstanceNumber", "NumberOfFrames")


def parse_detached(src: SourceFile, limits: Limits) -> Instance | Skipped:
    """`parse`, for a worker process: what goes back is small (no pixels, a slim header).

    Sending whole headers back costs the main process ~0.4 ms per file to unpickle, about half
    what reading them costs; the one full header a series shows is read again by `full_header`.
    """
    from pydicom.dataset import Dataset

    parsed = parse(src, limits)
    if isinstance(parsed, Instance):
        slim = Dataset()
        for keyword in _GROUPING:
            if keyword in parsed.ds:
                slim[keyword] = parsed.ds[keyword]
        parsed.ds, parsed.slim = slim, True
        parsed.src = SourceFile(src.name, path=src.path)  # without the bytes of an upload
    return parsed


def full_header(inst: Instance) -> Any:
    """The instance's whole header (read again if it was parsed in a worker)."""
    if inst.slim:
        import pydicom

        with inst.src.open() as fp:
            inst.ds, inst.slim = pydicom.dcmread(fp, stop_before_pixels=True, force=True), False
    return inst.ds


# What a load keeps per frame besides its pixels (its row of geometry, its slot): charged with them, so
# a header of millions of tiny frames is bounded by the memory budget rather than by a frame count.
FRAME_BOOKKEEPING_BYTES = 160


def decoded_bytes(ds: Any, n_frames: int) -> int:
    """Bytes the float32 pixels of an instance will take once decoded, and their bookkeeping."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        samples = 3
    return int(ds.Rows) * int(ds.Columns) * n_frames * samples * 4 + n_frames * FRAME_BOOKKEEPING_BYTES


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class _Plan:
    """A stack waiting for its pixels: the output volume (a Decoder's, or `pixels` filled here)."""

    stack: Stack
    volume: int = -1
    pixels: np.ndarray | None = None
    ok: np.ndarray | None = None  # slots of `pixels` written
    error: str = ""  # why `pixels` could not be filled


def _native_many_frames(inst: Instance) -> bool:
    """A multi-frame object with native (uncompressed) pixel data: decoded here in one piece and
    written with one vectorised pass, not frame by frame in the Decoder."""
    return inst.hint is None and inst.n_frames > 1 and inst.mosaic is None


def plan_stack(stack: Stack, limits: Limits, decoder: Decoder,
               decoded: dict[int, Decoded | str] | None = None) -> _Plan | list[Skipped]:
    """Check a stack against the memory limits (the series cap, then the load's budget, which it
    is charged to), make its volume and queue its decoding. Refused: every file of it, with why.

    A native multi-frame object is decoded here (once, kept in `decoded` for its other stacks)."""
    first = stack.first
    used = np.bincount(stack.owner, minlength=len(stack.insts))  # frames of a multi-frame object in this stack
    need = sum(decoded_bytes(i.ds, int(k) if i.n_frames > 1 else i.n_frames) for i, k in zip(stack.insts, used,
                                                                                            strict=True))
    try:
        limits.check_series(need, f"its whole series of {len(stack)} frame(s); upload fewer slices")
        limits.charge(need, f"a series of {len(stack)} frame(s)")
    except ImageTooLargeError as exc:
        return [Skipped.because(i.src.name, exc) for i in stack.insts]
    ds = first.ds
    samples = 3 if decoded_bytes(ds, 1) - FRAME_BOOKKEEPING_BYTES > int(ds.Rows) * int(ds.Columns) * 4 else 1
    plane = (first.mosaic.tile_rows, first.mosaic.tile_cols) if first.mosaic else (int(ds.Rows), int(ds.Columns))
    shape = (len(stack), *plane) + ((3,) if samples == 3 else ())
    table = stack.table
    if len(stack.insts) == 1 and _native_many_frames(first):
        cache = {} if decoded is None else decoded
        if first.index not in cache:
            cache[first.index] = decode_dicom(first.src, limits.max_image_bytes, decoder.fast, None)
        result = cache[first.index]
        pixels = alloc_volume(shape)
        if isinstance(result, str):
            return _Plan(stack, pixels=pixels, ok=np.zeros(len(stack), bool), error=result)
        written = write_many(result, pixels, stack.frame, np.arange(len(stack)), table.slope, table.intercept)
        if isinstance(written, str):
            return _Plan(stack, pixels=pixels, ok=np.zeros(len(stack), bool), error=written)
        ok = np.zeros(len(stack), bool)
        ok[written] = True
        return _Plan(stack, pixels=pixels, ok=ok)
    volume = decoder.volume(shape)
    for inst, slots in zip(stack.insts, stack.slots_of(), strict=True):
        frames = -1 - stack.frame[slots] if inst.mosaic else stack.frame[slots]  # mosaic.tile_frame
        targets: list[Target] = list(zip(frames.tolist(), slots.tolist(), table.slope[slots].tolist(),
                                         table.intercept[slots].tolist(), strict=True))
        decoder.add(inst.index, volume, targets, inst.hint)
    return _Plan(stack, volume=volume)


def build_series(plan: _Plan, decoder: Decoder, errors: dict[int, str]) -> tuple[Series | None, list[Skipped]]:
    """Assemble a Series from a decoded stack; undecodable frames are dropped with a reason each."""
    stack = plan.stack
    if plan.pixels is not None and plan.ok is not None:
        errors = {stack.first.index: plan.error} if plan.error else {}
        pixels, ok = plan.pixels, plan.ok
    else:
        pixels, ok = decoder.array(plan.volume), decoder.written(plan.volume)
    skipped = [Skipped(i.src.name, errors[i.index]) for i in stack.insts if i.index in errors]
    if not ok.any():
        return None, skipped
    kept = stack
    if not ok.all():
        pixels = pixels[ok]
        kept = stack.take(ok)
    affine, warnings, has_geometry = stack_affine(kept.table)
    if len(kept) < len(stack):
        warnings.append(f"{len(stack) - len(kept)} of {len(stack)} slices could not be decoded and are missing")
    ds = full_header(stack.first)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 4:
        photometric = "RGB"
    modality = str(ds.get("Modality", "OT") or "OT")
    files = [i.src.name for i in kept.insts]
    voi = voi_module(ds)
    warnings += window_warnings(ds)
    warnings += list(dict.fromkeys(note for i in stack.insts for note in i.notes))
    g0 = kept.table[0]
    if g0.orientation is None and ("ImageOrientationPatient" in ds or "PerFrameFunctionalGroupsSequence" in ds
                                   or "SharedFunctionalGroupsSequence" in ds):
        warnings.append(_BAD_ORIENTATION)
        has_geometry = False
    return Series(
        pixels=pixels, affine=affine, modality=modality, photometric=photometric,
        window=window(ds), voi_lut=voi_lut(voi), voi=voi, body_part=str(ds.get("BodyPartExamined", "") or ""),
        description=described(ds, stack.first.mosaic, stack.first.label),
        uid=str(ds.get("SeriesInstanceUID", "")), source_format="DICOM", header=header_rows(ds),
        files=files, warnings=warnings, has_geometry=has_geometry,
        patient_id=str(ds.get("PatientID", "") or "").strip(),
        pixel_spacing_known=g0.pixel_spacing is not None,
    ), skipped


def read_dicom(sources: Sequence[SourceFile], limits: Limits,
               early: DicomPrefetch | None = None) -> tuple[list[Series], list[Skipped], dict[str, int]]:
    """All series in a set of DICOM files, with a reason for each file left out, and how the
    pixels were decoded (`Decoder.stats`: worker processes, files decoded in them / here).
    `early`: these files were fed to workers as they arrived (`medui.io.prefetch`).

    Every stage is contained per file (headers, duplicates) or per stack (planning, assembly):
    what fails is skipped with its reason and the rest of the batch still loads."""
    skipped: list[Skipped] = []
    ahead = early.decoder if early is not None else None
    with ahead or Decoder(sources, max_image_bytes=limits.max_image_bytes, timeout_s=limits.decode_seconds,
                          shared=limits.workers) as decoder:  # workers start now
        if early is not None and ahead is not None:
            headers = early.headers()
        else:  # in the workers without the server's shared pool (it holds a lock): limits go to them
            headers = decoder.map(parse_detached, dataclasses.replace(limits, workers=None)) if decoder.pooled \
                else [parse(s, limits) for s in sources]
        instances = _kept(headers, sources, skipped)
        plans: list[_Plan] = []
        decoded: dict[int, Decoded | str] = {}  # native multi-frame objects, decoded once for all their stacks
        for stack in group(instances):
            plan = _contained(functools.partial(plan_stack, stack, limits, decoder, decoded), stack)
            if isinstance(plan, list):
                skipped += plan
            else:
                plans.append(plan)
        decoded.clear()
        errors = decoder.run()
    stats = dict(decoder.stats)
    series: list[Series] = []
    for plan in plans:
        built = _contained(functools.partial(build_series, plan, decoder, errors), plan.stack)
        if isinstance(built, list):
            skipped += built
            continue
        s, sk = built
        skipped += sk
        if s is not None:
            series.append(s)
    return series, skipped, stats


T = TypeVar("T")


def _contained(step: Callable[[], T], stack: Stack) -> T | list[Skipped]:
    """`step()`, or when it fails in a way no check foresaw, a skip entry for each file of the stack."""
    from medui.io.readers import unexpected

    try:
        return step()
    except FATAL:
        raise
    except BaseException as exc:
        return [Skipped(i.src.name, unexpected(exc)) for i in stack.insts]


def _kept(headers: Sequence[Instance | Skipped], sources: Sequence[SourceFile],
          skipped: list[Skipped]) -> list[Instance]:
    """The parsed instances, less duplicates (a SOP Instance UID seen before) which are skipped."""
    instances: list[Instance] = []
    seen: dict[str, str] = {}
    for k, parsed in enumerate(headers):
        if isinstance(parsed, Skipped):
            skipped.append(parsed)
            continue
        parsed.src, parsed.index = sources[k], k
        uid = str(parsed.ds.get("SOPInstanceUID", "") or "")
        if uid and uid in seen:
            skipped.append(Skipped(parsed.src.name, f"has the same SOPInstanceUID (0008,0018) as {seen[uid]}; "
                                                    "the duplicate was not used"))
            continue
        if uid:
            seen[uid] = parsed.src.name
        instances.append(parsed)
    return instances
