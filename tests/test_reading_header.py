"""Header masking: every attribute of PS3.15 Table E.1-1 (dicom-anonymizer's newest edition) is
masked at display, private attributes too, and ordinary image attributes stay visible."""

from __future__ import annotations

import pydicom
import pytest
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.datadict import dictionary_VR, keyword_for_tag

from medui.io.loader import load
from medui.reading import header as deid
from tests.synth import phantom_volume, write_series

EDITION = "dicomfields_2026c"  # the newest table dicom-anonymizer 2.1.0 ships
# Concrete tags for the table's repeating-group entries (group mask 0xFF00).
_REPEATING_EXAMPLES = {(0x5000, 0x0000): [0x50000010, 0x50020030], (0x6000, 0x4000): [0x60004000, 0x60024000],
                       (0x6000, 0x3000): [0x60003000]}
_VALUES = {"AE": "AE", "AS": "030Y", "CS": "X", "DA": "20000101", "DS": "1", "DT": "20000101120000", "IS": "1",
           "TM": "120000", "UI": "1.2.3", "AT": 0x00100010, "SQ": []}


def _table_tags() -> list[int]:
    tags = []
    for entry in dicom_anonymization_database_selector(EDITION)["ALL_TAGS"]:
        if len(entry) == 2:
            tags.append((entry[0] << 16) | entry[1])
        else:
            tags.extend(_REPEATING_EXAMPLES[(entry[0], entry[2] and entry[1])])
    return tags


TABLE_TAGS = _table_tags()


def _value(vr: str) -> object:
    if vr in _VALUES:
        return _VALUES[vr]
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
        return 1
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b"\0" * 8
    return "identifying text"


@pytest.fixture(scope="module")
def shown(tmp_path_factory) -> tuple[dict[str, str], dict[str, str]]:
    """Masked and revealed values by tag text, of a CT slice that holds every attribute of the table."""
    folder = tmp_path_factory.mktemp("every")
    path = write_series(folder, phantom_volume(1))[0]
    ds = pydicom.dcmread(path)
    for tag in TABLE_TAGS:
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command set (never in a file; checked by keyword below) and file meta (pydicom writes it)
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            vr = "LO"  # newer than pydicom's dictionary
        if tag not in ds:
            ds.add_new(tag, vr, _value(vr))
    ds.add_new(0x00090010, "LO", "ACME private creator")
    ds.add_new(0x00091001, "LO", "private secret")
    ds.save_as(path, enforce_file_format=True)
    s = load([path]).series[0]
    masked = {r["tag"]: r["value"] for r in deid.table(s.header)}
    revealed = {r["tag"]: r["value"] for r in deid.table(s.header, reveal=True)}
    return masked, revealed


def _text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def test_every_attribute_of_table_e1_1_is_masked(shown):
    masked, revealed = shown
    present = [t for t in TABLE_TAGS if _text(t) in masked]
    assert len(present) > 600, f"only {len(present)} of {len(TABLE_TAGS)} table attributes reached the header"
    shown_plain = [f"{_text(t)} {keyword_for_tag(t) or '(not in pydicom dictionary)'}"
                   for t in present if masked[_text(t)] != deid.MASK]
    assert not shown_plain, f"{len(shown_plain)} attribute(s) of Table E.1-1 shown unmasked: {shown_plain}"
    assert revealed["(0008,1030)"] != deid.MASK  # StudyDescription can still be revealed
    command_set = [keyword_for_tag(t) for t in TABLE_TAGS if t >> 16 == 0]
    assert command_set and all(deid.is_identifying(k) for k in command_set), command_set


def test_named_gaps_of_the_old_list_are_masked(shown):
    masked, _ = shown
    for keyword in ("StudyDescription", "SeriesDescription", "ClinicalTrialSponsorName", "ClinicalTrialSubjectID",
                    "ClinicalTrialProtocolID", "InstitutionName", "PatientName", "PatientID"):
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert tag is not None and masked[_text(tag)] == deid.MASK, f"{keyword} is shown unmasked"


def test_private_attributes_are_masked_and_ordinary_ones_visible(shown):
    masked, revealed = shown
    assert masked["(0009,1001)"] == deid.MASK and revealed["(0009,1001)"] == "private secret"
    for keyword, value in (("Rows", "32"), ("Columns", "40"), ("Modality", "CT"), ("PixelSpacing", "[0.7, 0.8]"),
                           ("BitsStored", "16"), ("PhotometricInterpretation", "MONOCHROME2")):
        assert masked[_text(pydicom.datadict.tag_for_keyword(keyword))] == value, f"{keyword} should stay visible"
