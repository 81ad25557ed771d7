"""Results for images without DICOM headers (the PDF report alone, and why), and the Results panel's
downloads in the audit trail (AppTest of the Diagnose page)."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medui.accounts.actions import EXPORT_RESULT
from medui.accounts.audit import Query, events
from medui.io.loader import load
from medui.usecases import results
from medui.usecases.diagnose import load_model, overlay, score
from tests.conftest import DEMO_MODEL, ROOT
from tests.synth import png_bytes

NODULE = ROOT / "medui" / "reading" / "sample_data" / "phantom_chest_nodule.dcm"


def _chest_png() -> bytes:
    y, x = np.mgrid[:128, :128]
    img = (120 + 80 * np.sin(x / 9.0) * np.cos(y / 13.0)).astype(np.uint8)
    return png_bytes(img)


def _pdf_text(pdf: bytes) -> bytes:
    """The page content of an fpdf2 document (its streams inflated)."""
    out = b""
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out += zlib.decompress(stream)
        except zlib.error:
            out += stream
    return out


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO_MODEL, ROOT / "models")


def test_a_png_gets_the_pdf_report_naming_only_its_file(model):
    series = load([("ward-7/private folder/chest photo.png", _chest_png())]).series[0]
    dx = score(series, model)
    assert not results.has_dicom_source(dx, {})
    made = results.report_only(dx, overlay(dx, 0, "gradcam"))
    assert made.objects == [] and made.pdf.startswith(b"%PDF")
    assert made.notes == [results.DICOM_NEEDED] and "need a DICOM source" in made.notes[0]
    text = _pdf_text(made.pdf)
    assert b"non-DICOM image \\(chest photo.png\\); no DICOM study" in text
    assert b"ward-7" not in text and b"private folder" not in text
    assert b"not a medical device" in text


def test_a_download_is_recorded_with_kind_and_uid():
    results.record_download("sr", "1.2.3.4", "1.2.3")
    results.record_download("report")
    rows = events(Query(actions=(EXPORT_RESULT,)))
    assert {(r.target, r.outcome, r.details["kind"], r.details["sop_instance_uid"], r.details["to"]) for r in rows} \
        == {("study 1.2.3", "ok", "sr", "1.2.3.4", "download"), ("non-DICOM image", "ok", "report", "-", "download")}


def _diagnose(name: str, data: bytes, mime: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=180).run()
    at.file_uploader[0].set_value([(name, data, mime)])
    return at.run()


def test_panel_offers_the_pdf_for_a_png_and_says_why_not_the_rest():
    at = _diagnose("chest.png", _chest_png(), "image/png")
    assert not at.exception
    assert any("only the PDF report can be made" in i.value and "need a DICOM source" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Send to PACS"]
    at.button(key="pacs.build").click().run()
    assert not at.exception
    assert [d.label for d in at.download_button if d.key and d.key.startswith("pacs.")] == ["PDF report"]
    at.download_button(key="pacs.dl.report").click().run()
    [row] = events(Query(actions=(EXPORT_RESULT,)))
    assert (row.target, row.outcome, row.details["kind"]) == ("non-DICOM image", "ok", "report")


def test_panel_downloads_of_dicom_results_are_audited():
    """A series whose headers are at hand (as when opened from a PACS) gets SR/SEG/SC/PDF; each
    download button writes an audit row with its kind and SOP Instance UID."""
    at = AppTest.from_file(str(ROOT / "pages" / "diagnose.py"), default_timeout=180).run()
    at.session_state["pacs.headers"] = results.headers_from_bytes([(NODULE.name, NODULE.read_bytes())])
    at.file_uploader[0].set_value([(NODULE.name, NODULE.read_bytes(), "application/dicom")])
    at.run()
    assert not at.exception and not any("only the PDF report" in i.value for i in at.info)
    at.button(key="pacs.build").click().run()
    assert not at.exception
    [made] = at.session_state["pacs.results"].values()
    uids = {o.kind: o.sop_instance_uid for o in made.objects}
    assert set(uids) == {"sr", "seg", "sc", "pdf"}
    at.download_button(key="pacs.dl.sr").click().run()
    at.download_button(key="pacs.dl.report").click().run()
    rows = events(Query(actions=(EXPORT_RESULT,)))
    study = str(made.objects[0].dataset.StudyInstanceUID)
    assert sorted((r.details["kind"], r.details["sop_instance_uid"], r.target, r.outcome) for r in rows) == [
        ("report", uids["pdf"], f"study {study}", "ok"), ("sr", uids["sr"], f"study {study}", "ok")]
