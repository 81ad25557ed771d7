"""An instance received by C-STORE, as a DICOM file (PS3.10): preamble, "DICM", the File Meta Information
group and the data set as the peer sent it.

pynetdicom's `Event.encoded_dataset(include_meta=True)` builds the meta group through a pydicom Dataset
(validated attribute by attribute) and copies the data set twice: a quarter of the Python time of a
C-GET of a 255-instance series. The group has seven fixed elements, encoded here directly; a
test checks the bytes equal pydicom's `write_file_meta_info` for the same values."""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element of group 0002 (UI values padded with NUL, SH with space)."""
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """The File Meta Information group (0002,0000)-(0002,0013), as pynetdicom's receiver writes it."""
    body = b"".join((
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", sop_class_uid.encode("ascii")),
        _element(0x0003, b"UI", sop_instance_uid.encode("ascii")),
        _element(0x0010, b"UI", transfer_syntax_uid.encode("ascii")),
        _element(0x0012, b"UI", PYNETDICOM_IMPLEMENTATION_UID.encode("ascii")),
        _element(0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")),
    ))
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


def part10(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, dataset: bytes | memoryview) -> bytes:
    """The file: preamble, meta group, then `dataset` (the encoded data set, as received), in one copy."""
    return b"".join((PREAMBLE, file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid), dataset))
