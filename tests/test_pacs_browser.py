"""In a real browser: open a study from a real Orthanc in the Viewer, score it on Diagnose, send the
AI results back, and find them on the PACS."""

from __future__ import annotations

import pydicom
import pytest

from medui.pacs.model import Node, StudyQuery, WebPeer
from medui.usecases import pacs
from tests.conftest import ROOT, launch_server, stop_server
from tests.orthanc import served

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory)


def test_open_from_pacs_and_send_results_back(server, page, tmp_path, artifacts):
    node = Node("default", WebPeer(server.dicomweb))
    ds = pydicom.dcmread(ROOT / "medui" / "reading" / "sample_data" / "phantom_chest_nodule.dcm")
    ds.PatientID = "BROWSER-1"
    pacs.send(node, [ds])
    proc, info = launch_server(tmp_path / "app", MEDUI_DICOMWEB_URL=server.dicomweb, MEDUI_PACS_CONFIG="",
                               MEDUI_DATA_ROOTS=str(tmp_path))
    try:
        page.goto(info["url"], wait_until="networkidle")
        page.get_by_role("tab", name="From PACS").click()
        page.get_by_label("Patient ID").fill("BROWSER-1")
        page.get_by_role("button", name="Search").click()
        page.get_by_text("Phantom^900300 (BROWSER-1)").wait_for(timeout=30_000)
        page.get_by_role("button", name="Open the whole study").click()
        page.locator("[data-testid=reader-loading][data-done='1']").first.wait_for(timeout=60_000)
        page.screenshot(path=str(artifacts / "e2e-pacs-viewer.png"), full_page=True)
        page.get_by_role("link", name="Diagnose").click()
        page.get_by_role("button", name="Build results").wait_for(timeout=120_000)
        page.get_by_role("button", name="Build results").click()
        page.get_by_role("button", name="Send to PACS").wait_for(timeout=120_000)
        page.get_by_role("button", name="Send to PACS").click()
        page.get_by_text("default stored 4 object(s)").wait_for(timeout=60_000)
        page.screenshot(path=str(artifacts / "e2e-pacs-results.png"), full_page=True)
        assert "Traceback" not in page.content()
    finally:
        stop_server(proc)
    [study] = pacs.search(node, StudyQuery(patient_id="BROWSER-1")).items
    assert sorted(s.modality for s in pacs.series(node, study.uid)) == ["DOC", "DX", "OT", "SEG", "SR"]
