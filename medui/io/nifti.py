"""NIfTI-1/2 (.nii, .nii.gz) through nibabel, reoriented to DICOM's radiological display convention."""

from __future__ import annotations

import gzip
import io
from typing import Any

import numpy as np

from medui.errors import InvalidHeaderError, MedUIError, UnreadableFileError
from medui.io.sources import Limits, SourceFile, read_bounded
from medui.series import Series

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Target axis codes (nibabel RAS letters) for array axes (slice, row, col), as a DICOM viewer shows them.
_PLANES = {2: ("S", "P", "L"), 1: ("P", "I", "L"), 0: ("R", "I", "P")}  # by world axis of the slice axis
_NIFTI2 = (540).to_bytes(4, "little")


def looks_like_nifti(head: bytes, name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".nii", ".nii.gz")) or (len(head) >= 348 and head[344:347] in (b"n+1", b"n+2"))


def _check_size(shape: tuple[int, ...], limits: Limits, colour: bool = False) -> None:
    """The memory check on the first 3-D volume (the one shown) of a NIfTI image."""
    need = int(np.prod(shape[:3], dtype=np.int64)) * 4 * (3 if colour else 1)
    limits.check_image(need, "x".join(str(n) for n in shape[:3]) + " voxels")


GZIP_MARGIN = 64 * 1024  # inflated bytes read past what the header declares (padding, extensions)


def _header(head: bytes) -> Any:
    """The NIfTI-1/2 header at the start of `head`, its sizes checked."""
    import nibabel as nib

    hdr_cls = nib.Nifti2Header if head[:4] in (_NIFTI2, _NIFTI2[::-1]) else nib.Nifti1Header
    reader: Any = hdr_cls.from_fileobj  # untyped: called through Any
    try:
        header = reader(io.BytesIO(head))
        shape = tuple(int(n) for n in header.get_data_shape())
    except Exception as exc:
        raise UnreadableFileError(f"has no readable NIfTI header ({_first_line(exc)}); save it again as .nii "
                                  "or .nii.gz") from exc
    if not shape or any(n <= 0 for n in shape):
        raise InvalidHeaderError(f"has image dimensions (header field 'dim') of {shape}; every size must be at "
                                 "least 1. Save the image again from the program that made it")
    return header


def _declared_end(header: Any) -> int:
    """Where the first volume's voxels end: vox_offset + voxels x bytes per voxel."""
    shape = header.get_data_shape()
    itemsize = int(header.get_data_dtype().itemsize)
    return int(header.get_data_offset()) + int(np.prod(shape[:3], dtype=np.int64)) * itemsize


def _image(src: SourceFile, limits: Limits) -> Any:
    """A nibabel image from the file's bytes; its header is checked (sizes, memory, the voxel data
    it promises) before any voxel is read, and gzip is inflated only as far as the header declares."""
    import nibabel as nib

    if src.head(2) == b"\x1f\x8b":
        with src.open() as fh, gzip.GzipFile(fileobj=fh) as gz:
            head = gz.read(540)
            header = _header(head)
            _check_size(tuple(header.get_data_shape()), limits, _is_rgb(header))
            end = int(header.get_data_offset()) + _data_bytes(header)
            raw = head + read_bounded(gz, max(end + GZIP_MARGIN - len(head), 0), limits, f"inflating {src.name}")
        _check_extent(_header(raw[:540]), len(raw), limits)
        return nib.Nifti2Image.from_bytes(raw) if raw[:4] == _NIFTI2 else nib.Nifti1Image.from_bytes(raw)
    head = src.head(540)
    _check_extent(_header(head), src.size, limits)
    if src.data is None and src.path is not None:  # on disk: mapped, only the first volume is read
        from nibabel.fileholders import FileHolder

        cls: Any = nib.Nifti2Image if head[:4] == _NIFTI2 else nib.Nifti1Image
        return cls.from_file_map({"image": FileHolder(filename=src.path), "header": FileHolder(filename=src.path)})
    raw = src.read()
    return nib.Nifti2Image.from_bytes(raw) if raw[:4] == _NIFTI2 else nib.Nifti1Image.from_bytes(raw)


def _check_extent(header: Any, size: int, limits: Limits) -> None:
    """The memory check, and that the file holds the voxels its header promises (`size` bytes)."""
    _check_size(tuple(header.get_data_shape()), limits, _is_rgb(header))
    offset = int(header.get_data_offset())
    if offset > size:
        raise InvalidHeaderError(f"has vox_offset = {offset}, past the end of the file ({size} bytes); the file "
                                 "is truncated or its header is wrong. Save it again")
    if size < _declared_end(header):
        raise InvalidHeaderError(
            f"holds {size - offset} bytes of voxel data where its header (dim, bitpix) promises "
            f"{_declared_end(header) - offset} for the first volume; the file is truncated. Save or copy it again")


def _data_bytes(header: Any) -> int:
    return int(np.prod(header.get_data_shape(), dtype=np.int64)) * int(header.get_data_dtype().itemsize)


def _is_rgb(header: Any) -> bool:
    return header.get_data_dtype().names is not None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _affine(img: Any, warnings: list[str]) -> tuple[np.ndarray, bool]:
    """The image's affine, or its voxel sizes alone when the sform/qform matrix is NaN or singular."""
    affine = np.asarray(img.affine, dtype=float)
    if np.all(np.isfinite(affine)) and abs(float(np.linalg.det(affine[:3, :3]))) > 1e-12:
        return affine, True
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    zooms = [z if np.isfinite(z) and z > 0 else 1.0 for z in zooms] + [1.0] * (3 - len(zooms))
    warnings.append("the orientation matrix (sform/qform) is NaN or all zero: the image is shown without "
                    "orientation, with its voxel sizes (pixdim) only")
    return np.diag([*zooms[:3], 1.0]), False


def _voxels(img: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The first 3-D volume as float32; RGB24/RGBA32 voxels as (..., 3) colour."""
    first = img.dataobj[(...,) + (0,) * (len(shape) - 3)] if len(shape) > 3 else img.dataobj
    raw = np.asarray(first)
    if raw.dtype.names is not None:
        data = np.stack([raw[c] for c in ("R", "G", "B")], axis=-1).astype(np.float32)
        while data.ndim < 4:
            data = data[..., np.newaxis, :]
        return data
    data = raw.astype(np.float32)
    while data.ndim < 3:
        data = data[..., np.newaxis]
    return data


def read_nifti(src: SourceFile, limits: Limits) -> Series:
    """One NIfTI file as a Series; raises UnreadableFileError or ImageTooLargeError."""
    from nibabel import orientations

    ornt: Any = orientations  # untyped: called through Any
    try:
        img = _image(src, limits)
        shape = tuple(img.shape)
        warnings: list[str] = []
        if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
            warnings.append(f"4-D image of {int(np.prod(shape[3:]))} volumes: showing the first")
        colour = img.get_data_dtype().names is not None
        data = _voxels(img, shape)  # its size was checked against the limits with the header
        limits.charge(data.nbytes, f"the NIfTI image {src.name}")  # what the load keeps
    except MedUIError:
        raise
    except Exception as exc:
        raise UnreadableFileError(f"is not a readable NIfTI file ({_first_line(exc)}); save it again as .nii or "
                                  ".nii.gz") from exc
    affine, has_geometry = _affine(img, warnings)
    src_ornt = ornt.io_orientation(affine)
    slice_world_axis = int(src_ornt[2, 0]) if not np.isnan(src_ornt[2, 0]) else 2
    # Move nibabel's (i, j, k) so that axis 0 is the slice axis, then flip/permute to the display convention.
    target = ornt.axcodes2ornt(_PLANES[slice_world_axis])
    transform = ornt.ornt_transform(src_ornt, target)
    data = ornt.apply_orientation(data, transform)
    ras = affine @ ornt.inv_ornt_aff(transform, shape[:3] if len(shape) >= 3 else data.shape[:3])
    return Series(
        pixels=np.ascontiguousarray(data, dtype=np.float32), affine=LPS_FROM_RAS @ ras, modality=_modality(img),
        photometric="RGB" if colour else "MONOCHROME2", description=_header_text(img, "descrip"),
        source_format="NIfTI", files=[src.name], warnings=warnings, has_geometry=has_geometry,
    )


def _header_text(img: Any, field: str) -> str:
    """A text field of a NIfTI header ('' when absent)."""
    try:
        value = img.header[field]
    except (KeyError, ValueError):
        return ""
    return str(value.astype(str)).strip() if hasattr(value, "astype") else ""


def _modality(img: Any) -> str:
    return "CT" if "CT" in _header_text(img, "intent_name").upper() else "OT"
