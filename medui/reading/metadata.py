"""Text metadata removed from PNG and JPEG files kept on the server (uploads): PNG text, EXIF and time
chunks; JPEG comments, EXIF/XMP (APP1) and IPTC (APP13) segments. The compressed pixels, the colour
profile and every other chunk or segment are copied byte for byte, so the image decodes the same.
None when the file's structure cannot be followed (then it is not kept: it may carry anything)."""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}
_JPEG_TEXT = {0xFE, 0xE1, 0xED}  # COM, APP1 (EXIF, XMP), APP13 (IPTC / Photoshop)
_JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn


def png_without_text(data: bytes) -> bytes | None:
    """The PNG without its text chunks, ending at IEND."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return None
        if kind not in _PNG_TEXT:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)
    return None


def jpeg_without_text(data: bytes) -> bytes | None:
    """The JPEG without comment, EXIF/XMP and IPTC segments before its first scan."""
    if not data.startswith(b"\xff\xd8"):
        return None
    out, pos = [data[:2]], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            out.append(data[pos:pos + 2])
            pos += 2
            continue
        end = pos + 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if end > len(data):
            return None
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data and later scans
            out.append(data[pos:])
            return b"".join(out)
        if marker not in _JPEG_TEXT:
            out.append(data[pos:end])
        pos = end
    return None
