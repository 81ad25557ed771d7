"""AI result objects without a PACS: finding codes from the card, a CT slice's SEG, the PDF, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from medui.ai.card import ModelCard
from medui.errors import CardError, ResultsError
from medui.results import codes
from medui.usecases import results
from medui.usecases.diagnose import load_model
from tests import synth
from tests.conftest import DEMO_MODEL, ROOT

CARD = {"name": "m", "version": 1, "class_names": ["normal", "pneumonia"], "input_size": [64, 64], "channels": 1,
        "architecture": "x", "cam_layer": "c"}


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO_MODEL, ROOT / "models")


def test_finding_codes_from_card_known_names_and_a_local_default():
    old = ModelCard.from_json(dict(CARD))  # a card without finding_codes still loads
    assert codes.finding_code(old, "pneumonia") == hd.sr.CodedConcept("233604007", "SCT", "Pneumonia")
    assert codes.finding_code(old, "Pleural effusion (left)").scheme_designator == codes.LOCAL
    own = ModelCard.from_json({**CARD, "finding_codes": {"pneumonia": {"scheme": "SCT", "value": "1234",
                                                                        "meaning": "Own"}}})
    assert codes.finding_code(own, "pneumonia").value == "1234"
    with pytest.raises(CardError, match="finding_codes names the class 'cat'"):
        ModelCard.from_json({**CARD, "finding_codes": {"cat": {"scheme": "SCT", "value": "1", "meaning": "x"}}})
    with pytest.raises(CardError, match="expected"):
        ModelCard.from_json({**CARD, "finding_codes": {"pneumonia": {"scheme": "SCT"}}})


def test_ct_slice_results_reference_that_slice(model, tmp_path):
    paths = synth.write_series(tmp_path / "ct", synth.phantom_volume(6, 64, 64))
    items = results.read_inputs([tmp_path / "ct"])
    [scored], _ = results.report(items, model, "gradcam", index=2)
    assert scored.results is not None, scored.error
    source = pydicom.dcmread(paths[scored.diagnosis.native_index(2)])
    out = results.write(scored.results, tmp_path / "out")
    by_kind = {row["kind"]: pydicom.dcmread(row["path"]) for row in out}
    seg = by_kind["seg"]
    assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    sr = by_kind["sr"]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert len(evidence) == 6  # every instance of the scored series
    if shutil.which("dciodvfy"):
        from tests.orthanc import dciodvfy_errors

        for row in out:
            assert dciodvfy_errors(Path(row["path"])) == [], row["kind"]
    pdf = Path(out[-1]["document"]).read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) < 2_000_000


def test_results_need_dicom_headers(model, tmp_path):
    png = tmp_path / "cxr.png"
    png.write_bytes(synth.png_bytes(synth.phantom_volume(1, 64, 64)[0].astype("uint8")))
    [scored], _ = results.report(results.read_inputs([png]), model)
    assert scored.results is None and "need the DICOM headers" in scored.error
    with pytest.raises(ResultsError, match="cannot read"):
        results.read_inputs([tmp_path / "missing.dcm"])
