"""In a real browser: the Worklist page lists a scored batch highest score first with its flags, and
clicking a row opens that study in Diagnose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medui.usecases import batch
from medui.usecases.batch_run import run
from tests.batch_data import study_folder
from tests.conftest import DEMO_MODEL, launch_server, stop_server

pytestmark = pytest.mark.browser


def test_the_worklist_sorts_flags_and_opens_a_study(page, tmp_path, artifacts, monkeypatch):
    app = tmp_path / "app"
    monkeypatch.setenv("MEDUI_JOBS", str(app / "jobs"))  # the server's jobs folder, so its database
    data = tmp_path / "studies"
    study_folder(data, n=6, n_ct=2, corrupt=(3,))
    job = batch.start(batch.BatchRequest(model=DEMO_MODEL, folder=str(data)), launch=False)
    assert run(job.path) == 0
    rows = batch.worklist()
    proc, info = launch_server(app, MEDUI_DATA_ROOTS=str(tmp_path))
    try:
        page.goto(info["url"] + "/worklist", wait_until="networkidle")
        grid = page.get_by_test_id("stDataFrame")
        grid.wait_for(timeout=60_000)
        page.get_by_text(f"{len(rows)} studies, {sum(r.flagged for r in rows)} flagged").wait_for(timeout=30_000)
        cells = page.locator('[data-testid="stDataFrame"] table [role="gridcell"]')
        cells.first.wait_for(state="attached", timeout=30_000)
        text = " ".join(cells.all_text_contents())
        # the accessible table of the grid: the accession numbers in score order, the flag, the failed one
        accessions = re.findall(r"ACC\d{5}", text)
        assert accessions == [r.accession for r in rows], (accessions, [r.accession for r in rows])
        assert text.count("above threshold") == sum(r.flagged for r in rows)
        assert "failed: " in text
        page.screenshot(path=str(artifacts / "e2e-worklist.png"), full_page=True)
        wanted = rows[1]
        box = grid.bounding_box()
        assert box is not None
        # the row's selection box at the left edge of the grid: header row, then 35 px a row
        page.mouse.click(box["x"] + 12, box["y"] + 35 + 35 * 1 + 17)
        page.get_by_role("heading", name="Diagnose").wait_for(timeout=120_000)
        # the series picker: the study's series is chosen
        picker = page.get_by_test_id("stSelectbox").filter(has_text="Series").first
        picker.wait_for(timeout=60_000)
        shown = picker.inner_text() + " ".join(i.input_value() for i in picker.locator("input").all()) + " ".join(
            v or "" for v in (i.get_attribute("aria-label") for i in picker.locator("input").all()))
        assert f"{wanted.modality} · " in shown, shown
        page.get_by_text("the operating threshold").first.wait_for(timeout=180_000)  # scored
        # the study in Diagnose's reader, with its saliency overlay
        page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=180_000)
        page.screenshot(path=str(artifacts / "e2e-worklist-diagnose.png"), full_page=True)
        assert "Traceback" not in page.content()
    finally:
        stop_server(proc)
    log = Path(info["log"]).read_text()
    assert "Traceback" not in log, log[-3000:]
