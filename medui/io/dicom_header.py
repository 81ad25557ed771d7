"""A DICOM header as plain rows for display. Nothing is masked here: what to hide is decided when
the rows are shown (`medui.reading.header.table`), so the reader keeps the raw values."""

from __future__ import annotations

from typing import Any

from medui.series import HeaderRow

_BINARY_VRS = ("OB", "OW", "OF", "OD", "OL", "OV", "UN")


def value_text(elem: Any, limit: int = 160) -> str:
    """A short text for one element's value: sequences and binary data are summarised."""
    if elem.VR == "SQ":
        return f"<sequence of {len(elem.value)} item(s)>"
    if elem.VR in _BINARY_VRS or elem.tag == 0x7FE00010:
        n = len(elem.value) if elem.value is not None else 0
        return f"<{n} bytes of binary data>"
    text = str(elem.value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header_rows(ds: Any) -> list[HeaderRow]:
    """The file meta and top-level attributes of a pydicom Dataset, unmasked, one row each."""
    meta = getattr(ds, "file_meta", None)
    rows = []
    for elem in [*(meta or []), *ds]:
        private = bool(elem.tag.is_private)
        rows.append(HeaderRow(
            tag=f"({elem.tag.group:04X},{elem.tag.element:04X})",
            keyword=elem.keyword or ("private" if private else elem.name),
            vr=str(elem.VR),
            value=value_text(elem),
            private=private,
        ))
    return rows
