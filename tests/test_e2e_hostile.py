"""End to end in a real browser: a dozen of the nastiest hostile inputs (tests/hostile_corpus.py),
uploaded together with one good series through the Viewer's uploader. The server stays up, the good
series renders, every bad file is listed with its reason under 'not loaded', no traceback shows,
and the page loads again afterwards."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.hostile_corpus import cases
from tests.synth import phantom_volume, write_series

pytestmark = pytest.mark.browser

# One or two per category, each refused for a different reason.
WORST = {
    "trunc100_": "a DICOM file cut short after its header",
    "value003_": "RescaleSlope = inf",
    "frames005_": "2000000 frames declared over 64 bytes of pixels",
    "value064_": "a JPEG 2000 codestream declaring 60000x60000 pixels",
    "value073_": "random bytes named .dcm",
    "nifti011_": "a NIfTI declaring 30000^3 voxels",
    "zip003_": "a zip whose member climbs out with ../..",
    "zip007_": "a zip bomb (20 MB of zeros)",
    "zip001_": "an empty zip",
    "raster018_": "a JPEG whose SOF declares 65000x65000",
    "gzip004_": "a gzip that inflates to millions of header elements",
    "name003_": "a newline in the file name",
}


def test_hostile_uploads_are_listed_and_the_server_survives(app_url, page, tmp_path, artifacts):
    picked = [c for c in cases() if any(c.name.startswith(p) for p in WORST)]
    assert len(picked) == len(WORST)
    good = write_series(tmp_path / "good", phantom_volume(6, rows=64, cols=64, seed=3), name="good")
    payloads = [{"name": p.name, "mimeType": "application/octet-stream", "buffer": p.read_bytes()} for p in good]
    payloads += [{"name": c.name, "mimeType": "application/octet-stream", "buffer": c.data} for c in picked]
    payloads = payloads[:3] + payloads[6:] + payloads[3:6]  # the good series' files among the bad ones

    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(payloads)
    main = page.get_by_test_id("stMainBlockContainer")
    main.get_by_text(re.compile(r"Loaded 1 series from 6 file\(s\)")).wait_for(timeout=120_000)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=60_000)  # the good series is read
    assert page.get_by_test_id("reader-slice").first.inner_text() == "slice 4/6"
    assert "6 x 64x64" in page.content()

    expander = main.get_by_text(re.compile(r"^\d+ file\(s\) not loaded$"))
    shown = int(re.match(r"(\d+)", expander.inner_text()).group(1))  # type: ignore[union-attr]
    assert shown == len(WORST), expander.inner_text()
    expander.click()
    listed = main.locator("li")
    listed.first.wait_for(timeout=10_000)
    items = [t for t in listed.all_inner_texts() if any(t.startswith(p) for p in WORST)]
    page.screenshot(path=str(artifacts / "e2e-hostile.png"), full_page=True)
    for prefix, what in WORST.items():
        mine = [t for t in items if t.startswith(prefix)]
        assert len(mine) == 1, (prefix, what, items)
        reason = mine[0].split(" ", 1)[1] if " " in mine[0] else ""
        assert len(reason) > 20, (prefix, what, mine[0])  # a reason in words, not just the name
    assert "Traceback" not in page.content()

    # the server still answers: health check, and the app loads again in a fresh page
    assert urllib.request.urlopen(app_url + "/_stcore/health", timeout=10).read() == b"ok"
    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    assert "Traceback" not in page.content()
