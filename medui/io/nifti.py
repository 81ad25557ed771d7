"""NIfTI-1/2 (.nii, .nii.gz) through nibabel, reoriented to DICOM's radiological display convention."""

from __future__ import annotations

import gzip
import io

import numpy as np

from medui.io.sources import Limits, Skipped, SourceFile
from medui.series import Series

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Target axis codes (nibabel RAS letters) for array axes (slice, row, col), as a DICOM viewer shows them.
_PLANES = {2: ("S", "P", "L"), 1: ("P", "I", "L"), 0: ("R", "I", "P")}  # by world axis of the slice axis


def looks_like_nifti(head: bytes, name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".nii", ".nii.gz")) or (len(head) >= 348 and head[344:347] in (b"n+1", b"n+2"))


def read_nifti(src: SourceFile, limits: Limits) -> tuple[Series | None, Skipped | None]:
    import nibabel as nib
    from nibabel import orientations as ornt

    raw = src.read()
    try:
        if raw[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                head = gz.read(540)
            hdr_cls = nib.Nifti2Header if head[:4] == (540).to_bytes(4, "little") else nib.Nifti1Header
            header = hdr_cls.from_fileobj(io.BytesIO(head))
            need = int(np.prod(header.get_data_shape()[:3], dtype=np.int64)) * 4
            if need > limits.max_image_bytes:
                return None, Skipped(src.name, f"would need {need / 2**20:.0f} MiB once decoded; the limit is "
                                               f"{limits.max_image_bytes / 2**20:.0f} MiB (raise MEDUI_MAX_IMAGE_MB)")
            raw = gzip.decompress(raw)
        img = nib.Nifti2Image.from_bytes(raw) if raw[:4] == (540).to_bytes(4, "little") else nib.Nifti1Image.from_bytes(raw)
    except Exception as exc:
        return None, Skipped(src.name, f"is not a readable NIfTI file ({exc}); save it again as .nii or .nii.gz")
    shape = img.shape
    warnings: list[str] = []
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        warnings.append(f"4-D image of {int(np.prod(shape[3:]))} volumes: showing the first")
    need = int(np.prod(shape[:3], dtype=np.int64)) * 4
    if need > limits.max_image_bytes:
        return None, Skipped(src.name, f"would need {need / 2**20:.0f} MiB once decoded; the limit is "
                                       f"{limits.max_image_bytes / 2**20:.0f} MiB (raise MEDUI_MAX_IMAGE_MB)")
    data = np.asarray(img.dataobj[(...,) + (0,) * (len(shape) - 3)] if len(shape) > 3 else img.dataobj, dtype=np.float32)
    while data.ndim < 3:
        data = data[..., np.newaxis]
    affine = img.affine
    src_ornt = ornt.io_orientation(affine)
    slice_world_axis = int(src_ornt[2, 0]) if not np.isnan(src_ornt[2, 0]) else 2
    # Move nibabel's (i, j, k) so that axis 0 is the slice axis, then flip/permute to the display convention.
    target = ornt.axcodes2ornt(_PLANES[slice_world_axis])
    transform = ornt.ornt_transform(src_ornt, target)
    data = ornt.apply_orientation(data, transform)
    ras = affine @ ornt.inv_ornt_aff(transform, img.shape[:3] if len(img.shape) >= 3 else data.shape)
    pixels = np.ascontiguousarray(data, dtype=np.float32)
    return Series(
        pixels=pixels, affine=LPS_FROM_RAS @ ras, modality=_modality(img), photometric="MONOCHROME2",
        description=str(img.header.get("descrip", b"").astype(str)).strip() if hasattr(img.header.get("descrip", b""), "astype") else "",
        source_format="NIfTI", files=[src.name], warnings=warnings,
    ), None


def _modality(img) -> str:  # type: ignore[no-untyped-def]
    intent = str(img.header.get("intent_name", b"").astype(str)).upper() if "intent_name" in img.header else ""
    return "CT" if "CT" in intent else "OT"
