"""NIfTI-1/2 (.nii, .nii.gz) through nibabel, reoriented to DICOM's radiological display convention."""

from __future__ import annotations

import gzip
import io
from typing import Any

import numpy as np

from medui.errors import ImageTooLargeError, UnreadableFileError
from medui.io.sources import Limits, SourceFile
from medui.series import Series

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Target axis codes (nibabel RAS letters) for array axes (slice, row, col), as a DICOM viewer shows them.
_PLANES = {2: ("S", "P", "L"), 1: ("P", "I", "L"), 0: ("R", "I", "P")}  # by world axis of the slice axis
_NIFTI2 = (540).to_bytes(4, "little")


def looks_like_nifti(head: bytes, name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".nii", ".nii.gz")) or (len(head) >= 348 and head[344:347] in (b"n+1", b"n+2"))


def _check_size(shape: tuple[int, ...], limits: Limits) -> None:
    """The memory check on the first 3-D volume (the one shown) of a NIfTI image."""
    need = int(np.prod(shape[:3], dtype=np.int64)) * 4
    limits.check_image(need, "x".join(str(n) for n in shape[:3]) + " voxels")


def _image(raw: bytes, limits: Limits) -> Any:
    """A nibabel image from the file's bytes; gzip is inflated only after its header passed the check."""
    import nibabel as nib

    if raw[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            head = gz.read(540)
        hdr_cls = nib.Nifti2Header if head[:4] == _NIFTI2 else nib.Nifti1Header
        header: Any = hdr_cls.from_fileobj  # untyped: called through Any
        _check_size(tuple(header(io.BytesIO(head)).get_data_shape()), limits)
        raw = gzip.decompress(raw)
    return nib.Nifti2Image.from_bytes(raw) if raw[:4] == _NIFTI2 else nib.Nifti1Image.from_bytes(raw)


def read_nifti(src: SourceFile, limits: Limits) -> Series:
    """One NIfTI file as a Series; raises UnreadableFileError or ImageTooLargeError."""
    from nibabel import orientations

    ornt: Any = orientations  # untyped: called through Any
    try:
        img = _image(src.read(), limits)
    except ImageTooLargeError:
        raise
    except Exception as exc:
        raise UnreadableFileError(f"is not a readable NIfTI file ({exc}); save it again as .nii or .nii.gz") from exc
    shape = tuple(img.shape)
    warnings: list[str] = []
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        warnings.append(f"4-D image of {int(np.prod(shape[3:]))} volumes: showing the first")
    _check_size(shape, limits)
    first = img.dataobj[(...,) + (0,) * (len(shape) - 3)] if len(shape) > 3 else img.dataobj
    data = np.asarray(first, dtype=np.float32)
    while data.ndim < 3:
        data = data[..., np.newaxis]
    affine = img.affine
    src_ornt = ornt.io_orientation(affine)
    slice_world_axis = int(src_ornt[2, 0]) if not np.isnan(src_ornt[2, 0]) else 2
    # Move nibabel's (i, j, k) so that axis 0 is the slice axis, then flip/permute to the display convention.
    target = ornt.axcodes2ornt(_PLANES[slice_world_axis])
    transform = ornt.ornt_transform(src_ornt, target)
    data = ornt.apply_orientation(data, transform)
    ras = affine @ ornt.inv_ornt_aff(transform, shape[:3] if len(shape) >= 3 else data.shape)
    return Series(
        pixels=np.ascontiguousarray(data, dtype=np.float32), affine=LPS_FROM_RAS @ ras, modality=_modality(img),
        photometric="MONOCHROME2", description=_header_text(img, "descrip"), source_format="NIfTI",
        files=[src.name], warnings=warnings,
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
