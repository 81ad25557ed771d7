"""De-identified copies of DICOM files, for uploads kept on the server (PS3.15 Annex E, the attributes
of Table E.1-1 as `medui.reading.header.basic_profile` lists them).

Every attribute of the table is removed, at any depth (inside sequences too), and so is every private
attribute but the few MedUI's readers need to place a mosaic's slices (`READER_PRIVATE`: Siemens'
NumberOfImagesInMosaic and CSA image header, UIH's NumberOfImagesInGridUIH; they hold image layout and
geometry, no identity) and their private creators. Also except:
- UIDs of the table (Study/Series/SOP Instance, Frame of Reference, ...) are replaced, consistently
  within one upload (`uid_for`): the same original UID gets the same new one, so the slices of a series
  still form that series, but the new UIDs cannot be looked up in the hospital's archive;
- PatientID is set to the upload's pseudonym of the patient, so grouping by PatientID gives the same
  groups as before.
Pixel data, image geometry, modality and the photometric, rescale and VOI attributes are not in the
table and are kept as they are; the file keeps its transfer syntax (compressed pixels are not decoded).
PatientIdentityRemoved (YES) and DeidentificationMethod say what was done.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from medui.reading.header import basic_profile

METHOD = "MedUI: PS3.15 Table E.1-1 + private tags removed, UIDs replaced"  # LO: 64 characters at most
# (group, creator or None for any, element offset in the block) of private attributes the readers need.
READER_PRIVATE = {(0x0019, "SIEMENS MR HEADER", 0x0A), (0x0029, "SIEMENS CSA HEADER", 0x10), (0x0065, None, 0x50)}
_META_KEPT = {0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}


def read_dicom(data: bytes) -> Dataset | None:
    """The dataset of a DICOM file (with or without its 128-byte preamble); None for anything else."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
    except Exception:  # a broken or hostile file raises almost anything in the parser: not DICOM we can use
        return None
    # force=True parses almost anything: a file without preamble counts only when it holds an image
    return ds if data[128:132] == b"DICM" or "PixelData" in ds else None


def _needed_by_readers(dataset: Dataset, elem: DataElement) -> bool:
    """A private attribute in `READER_PRIVATE`, or the private creator of its block."""
    group, element = elem.tag.group, elem.tag.element
    if 0x0010 <= element <= 0x00FF:  # a private creator: kept when a needed attribute lives in its block
        creator = str(elem.value).strip().upper()
        return any(g == group and (c is None or c == creator) for g, c, _ in READER_PRIVATE)
    try:
        creator = str(dataset[(group << 16) | (element >> 8)].value).strip().upper()
    except KeyError:
        return False
    return any(g == group and (c is None or c == creator) and off == element & 0xFF for g, c, off in READER_PRIVATE)


def deidentify(ds: Dataset, patient: str, uid_for: Callable[[str], str]) -> bytes:
    """The file's bytes with the identifying attributes removed, PatientID = `patient`, UIDs mapped."""
    profile = basic_profile()

    def visit(dataset: Dataset, elem: DataElement) -> None:
        tag = int(elem.tag)
        if elem.tag.is_private:
            if not _needed_by_readers(dataset, elem):
                del dataset[elem.tag]
        elif profile.covers(tag, elem.keyword):
            if elem.VR == "UI" and elem.value:
                values = elem.value if isinstance(elem.value, list) else [elem.value]
                new = [uid_for(str(v)) for v in values]
                elem.value = new if len(new) > 1 else new[0]
            else:
                del dataset[elem.tag]

    ds.walk(visit)
    ds.PatientID = patient
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for tag in [e.tag for e in meta if int(e.tag) not in _META_KEPT]:
            del meta[tag]
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.preamble = b"\0" * 128
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=meta is not None and "TransferSyntaxUID" in meta)
    return out.getvalue()
