"""Masking of patient-identifying DICOM attributes for display (PS3.15 Annex E, Basic Application
Level Confidentiality Profile, Table E.1-1). Nothing is written back to files.

The attribute list is not kept by hand: it is the table that the maintained `dicom-anonymizer`
package ships (pinned in requirements.txt), edition `PROFILE_EDITION` (DICOM 2026c, the newest in
dicom-anonymizer 2.1.0), with tags turned into keywords by pydicom's data dictionary. Attributes
newer than pydicom's dictionary are matched by tag, repeating groups (50xx, 60xx) by mask.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from medui.series import HeaderRow

PROFILE_EDITION = "dicomfields_2026c"
MASK = "•••"
_TAG_TEXT = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")


@dataclass(frozen=True)
class Profile:
    """The attributes Table E.1-1 removes, empties or replaces."""

    keywords: frozenset[str]
    tags: frozenset[int]
    repeating: tuple[tuple[int, int, int, int], ...]  # (group, element, group mask, element mask)

    def covers(self, tag: int, keyword: str = "") -> bool:
        if keyword in self.keywords or tag in self.tags:
            return True
        group, element = tag >> 16, tag & 0xFFFF
        return any(group & gm == g and element & em == e for g, e, gm, em in self.repeating)


@functools.cache
def basic_profile() -> Profile:
    """Table E.1-1 from dicom-anonymizer's database (read once)."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
    from pydicom.datadict import keyword_for_tag

    entries = dicom_anonymization_database_selector(PROFILE_EDITION)["ALL_TAGS"]
    tags = frozenset((g << 16) | e for g, e, *_ in (t for t in entries if len(t) == 2))
    repeating = tuple((int(t[0]), int(t[1]), int(t[2]), int(t[3])) for t in entries if len(t) == 4)
    keywords = frozenset(k for k in (keyword_for_tag(t) for t in tags) if k)
    return Profile(keywords, tags, repeating)


def tag_number(text: str) -> int | None:
    """0xGGGGEEEE from '(GGGG,EEEE)', as `HeaderRow.tag` writes it; None for anything else."""
    match = _TAG_TEXT.fullmatch(text.strip())
    return int(match.group(1) + match.group(2), 16) if match else None


def is_identifying(keyword: str, is_private: bool = False, tag: int | None = None) -> bool:
    """True for attributes the basic profile removes or replaces; private attributes always."""
    return is_private or basic_profile().covers(tag if tag is not None else -1, keyword)


def table(rows: list[HeaderRow], reveal: bool = False) -> list[dict[str, str]]:
    """Rows ready for a table widget: values of identifying attributes replaced unless revealed."""
    out = []
    for r in rows:
        hide = not reveal and (r.private or is_identifying(r.keyword, r.private, tag_number(r.tag)))
        out.append({"tag": r.tag, "attribute": r.keyword, "VR": r.vr, "value": MASK if hide else r.value})
    return out
