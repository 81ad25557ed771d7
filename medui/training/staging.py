"""De-identified layout of an uploaded labelled dataset, before it is written to the server's disk.

Each file goes to `[<split>/]<class>/<patient pseudonym>/<n>.<ext>`: the split and class folders as
given (labels, not identifiers); the patient decided as `index_dataset` decides it
(`medui.training.data.patient_key`) and replaced by a salted HMAC whose salt is never kept, so files
of one patient share a folder and patient-grouped splits group them the same way; file names replaced
by sequence numbers within their folder. DICOM files are rewritten by `medui.reading.deidentify`
(PatientID = the pseudonym). Other images lose their text metadata (`medui.reading.metadata` for PNG and
JPEG, `medui.training.scrub` for TIFF, NIfTI and what follows a JPEG's first scan), their pixels unchanged.
Files that are neither DICOM nor an image MedUI reads, or whose structure cannot be followed, are not kept.
Text burned into the pixels is not removed: that would need OCR, and is not attempted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass
from pathlib import PurePosixPath

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medui.io.sources import Limits, SourceFile
from medui.reading.deidentify import deidentify, read_dicom
from medui.reading.metadata import PNG_SIGNATURE, jpeg_without_text, png_without_text
from medui.training.data import layout, patient_key
from medui.training.scrub import jpeg_tail_without_text, nifti_without_text, tiff_without_text

_RASTER = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class StagedFile:
    parts: tuple[str, ...]  # relative path under the staged folder
    data: bytes


@dataclass(frozen=True)
class Pseudonyms:
    """Salted HMACs for one upload (the salt lives only as long as this object)."""

    salt: bytes

    @classmethod
    def fresh(cls) -> Pseudonyms:
        return cls(secrets.token_bytes(32))

    def _mac(self, kind: str, text: str) -> str:
        return hmac.new(self.salt, f"{kind}\0{text}".encode(), hashlib.sha256).hexdigest()

    def patient(self, key: str) -> str:
        return "p-" + self._mac("patient", key)[:12]

    def uid(self, uid: str) -> str:
        return generate_uid(entropy_srcs=[self._mac("uid", uid)])


def _suffix(name: str) -> str:
    """The file's extension (lower case, letters and digits only; '.nii.gz' kept whole), or ''."""
    low = name.lower()
    if low.endswith(".nii.gz"):
        return ".nii.gz"
    suffix = PurePosixPath(low).suffix
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def _is_image(data: bytes, name: str) -> bool:
    """PNG, JPEG, TIFF, BMP or NIfTI (by content or name): kept as they are."""
    return data.startswith(_RASTER) or name.lower().endswith(_IMAGE_SUFFIXES)


def _image(data: bytes, name: str) -> bytes | None:
    """The image without its text metadata, pixels unchanged: PNG, JPEG, TIFF and NIfTI rewritten, BMP
    (no text fields) as it is. None (not kept): broken, too large to rewrite, or no image format known."""
    max_bytes = Limits().max_image_bytes
    if data.startswith(PNG_SIGNATURE):
        return png_without_text(data)
    if data.startswith(b"\xff\xd8\xff"):
        head = jpeg_without_text(data)
        return None if head is None else jpeg_tail_without_text(head)
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return tiff_without_text(data, max_bytes)
    if data.startswith(b"BM"):
        return data
    if name.lower().endswith((".nii", ".nii.gz")):
        return nifti_without_text(data, max_bytes)
    return None


def _deidentified(ds: Dataset, patient: str, names: Pseudonyms) -> bytes | None:
    """The de-identified file; None for a header too broken to rewrite (then it is not kept: its
    bytes may name the patient)."""
    try:
        return deidentify(ds, patient, names.uid)
    except Exception:  # a broken header raises almost anything while it is read lazily or written
        return None


def stage_files(files: list[SourceFile], pattern: str | None) -> list[StagedFile]:
    """The de-identified files of an upload (`expand`ed), in a stable order."""
    if not files:
        return []
    files = sorted(files, key=lambda f: f.name)
    depth, has_splits = layout(files)
    names = Pseudonyms.fresh()
    folders: dict[tuple[str, ...], list[tuple[str, bytes]]] = defaultdict(list)
    for src in files:
        parts = [p for p in PurePosixPath(src.name).parts if p][depth:]
        top: list[str] = []
        if has_splits and len(parts) > 1:
            top, parts = [parts[0]], parts[1:]
        data = src.read()
        dicom = data[128:132] == b"DICM" or not data.startswith(_RASTER)  # a TIFF preamble is still DICOM
        ds = read_dicom(data) if dicom else None
        if ds is None and (data[128:132] == b"DICM" or not _is_image(data, src.name)):
            continue  # a DICOM file that cannot be parsed, or not an image (a list of patients?): not kept
        if len(parts) < 2:  # not inside a class folder: kept there, for the check to say so
            folder, pseudonym = tuple(top), names.patient(src.name)
        else:
            patient_id = str(ds.get("PatientID", "") or "").strip() if ds is not None else ""
            pseudonym = names.patient(patient_key(patient_id, parts, pattern)[0])
            folder = (*top, parts[0], pseudonym)
        content = _image(data, src.name) if ds is None else _deidentified(ds, pseudonym, names)
        if content is not None:
            folders[folder].append((_suffix(src.name), content))
    return [StagedFile((*folder, f"{n:04d}{suffix}"), content)
            for folder, items in folders.items() for n, (suffix, content) in enumerate(items, start=1)]
