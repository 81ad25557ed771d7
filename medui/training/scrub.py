"""Identifying text removed from the non-DICOM images of an upload before they are kept on the server.

- TIFF: every page is decoded (OpenCV, as `medui.io.raster` reads it) and written again as a plain
  lossless TIFF with only the tags an image needs, so ImageDescription, Artist, DocumentName, PageName,
  HostComputer, Software, DateTime, XMP, EXIF, IPTC and private tags are gone; the pixels read the same.
- NIfTI (.nii, .nii.gz): descrip, aux_file, intent_name (and the ANALYZE db_name and data_type) are
  blanked and the header extensions (which can hold whole DICOM headers) dropped; the voxel bytes are
  copied as they are, at the same offset, so the image reads bit for bit the same. A .nii.gz is
  re-compressed without the gzip header's original file name.
- JPEG: `medui.reading.metadata.jpeg_without_text` drops the text segments before the first scan;
  `jpeg_tail_without_text` drops comments and APPn segments between later scans and anything after EOI.

Text burned into the pixels is not removed (that needs OCR, and is not attempted). Each function returns
None when the file cannot be followed or is too large to rewrite: it is then not kept.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any

import numpy as np

from medui.io.raster import declared_size

_TIFF = (b"II*\x00", b"MM\x00*")
_GZIP = b"\x1f\x8b"
_JPEG_TEXT_MARKERS = {0xFE, *range(0xE0, 0xF0)}  # COM, APP0..APP15
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn


def tiff_without_text(data: bytes, max_bytes: int) -> bytes | None:
    """The TIFF's pages, decoded and written again without metadata (LZW, lossless)."""
    import cv2

    declared = declared_size(data, max_pages=100_000)
    if declared is None or declared[0] * max(declared[3], 1) * 8 > max_bytes:
        return None  # unreadable, or more pixels than one image may have: not kept
    ok, pages = cv2.imdecodemulti(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if not ok or not pages:
        return None
    try:
        ok, encoded = cv2.imencodemulti(".tiff", list(pages))
    except cv2.error:
        return None
    return bytes(encoded) if ok else None


def _inflated(data: bytes, max_bytes: int) -> bytes | None:
    """A gzip stream inflated, or None when it is damaged or inflates past `max_bytes`."""
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            while chunk := gz.read(1024**2):
                out.write(chunk)
                if out.tell() > max_bytes:
                    return None
    except (OSError, EOFError, zlib.error):
        return None
    return out.getvalue()


def nifti_without_text(data: bytes, max_bytes: int) -> bytes | None:
    """The NIfTI-1/2 file (gzip or not) with its text fields blank and no header extensions."""
    import nibabel as nib
    from nibabel.spatialimages import HeaderDataError

    packed = data.startswith(_GZIP)
    raw = _inflated(data, max_bytes) if packed else data
    if raw is None or len(raw) < 352:
        return None
    sizes = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
    cls = nib.Nifti1Header if 348 in sizes else nib.Nifti2Header if 540 in sizes else None
    if cls is None:
        return None
    reader: Any = cls.from_fileobj  # untyped: called through Any
    try:
        hdr = reader(io.BytesIO(raw), check=False)
        for field in ("descrip", "aux_file", "intent_name", "db_name", "data_type"):
            if field in hdr:
                hdr[field] = b""
        start, offset = hdr.sizeof_hdr, int(hdr["vox_offset"])
        nbytes = int(np.prod(hdr.get_data_shape(), dtype=np.int64)) * hdr.get_data_dtype().itemsize
    except (HeaderDataError, ValueError, TypeError, OverflowError):
        return None
    if offset < start + 4 or offset > len(raw):
        return None
    # the header, an extension flag of 0, zeros where the extensions were, then the voxels as they are
    out = hdr.binaryblock + b"\x00" * (offset - start) + raw[offset:offset + nbytes]
    return gzip.compress(out, compresslevel=6, mtime=0) if packed else out


def jpeg_tail_without_text(data: bytes) -> bytes:
    """A JPEG without the comment and APPn segments that follow its first scan (between the scans of a
    progressive JPEG) and without anything after its end marker (EOI)."""
    sos = _first_scan(data)
    if sos < 0:
        return data
    out, pos, n = [data[:sos]], sos, len(data)
    while pos < n:
        at = data.find(b"\xff", pos)
        if at < 0 or at + 1 >= n:
            out.append(data[pos:])
            break
        marker = data[at + 1]
        if marker == 0x00 or marker == 0xFF or marker in _NO_LENGTH:  # stuffed byte, fill, restart
            out.append(data[pos:at + 2])
            pos = at + 2
            continue
        out.append(data[pos:at])
        if marker == 0xD9:  # EOI: the image ends here
            out.append(b"\xff\xd9")
            break
        end = at + 2 + int.from_bytes(data[at + 2:at + 4], "big")
        if marker not in _JPEG_TEXT_MARKERS:
            out.append(data[at:end])
        pos = end
    return b"".join(out)


def _first_scan(data: bytes) -> int:
    """Where the segments after the first start-of-scan header begin (its entropy-coded data), or -1."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            return end
        pos = end
    return -1
