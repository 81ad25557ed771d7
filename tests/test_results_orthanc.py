"""AI results back to a real Orthanc: retrieve a radiograph, score it, build SR/SEG/SC/PDF, send them
(STOW-RS and C-STORE), find and retrieve them, parse them with highdicom, check them with dciodvfy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medui.cli import main
from medui.pacs.model import DimsePeer, Node, StudyQuery, WebPeer
from medui.results import codes
from medui.results.model import SERIES_DESCRIPTION
from medui.usecases import pacs, results
from medui.usecases.diagnose import load_model, overlay, score
from tests.conftest import DEMO_MODEL, ROOT
from tests.orthanc import MEDUI_AET, ORTHANC_AET, dciodvfy_errors, served

SAMPLES = ROOT / "medui" / "reading" / "sample_data"
KINDS = {"1.2.840.10008.5.1.4.1.1.88.34": "sr", "1.2.840.10008.5.1.4.1.1.66.4": "seg",
         "1.2.840.10008.5.1.4.1.1.7": "sc", "1.2.840.10008.5.1.4.1.1.104.1": "pdf"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory)


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO_MODEL, ROOT / "models")


def _patient(path: Path, patient_id: str) -> pydicom.Dataset:
    """A sample radiograph as its own patient and study (new UIDs), so tests do not see each other's results."""
    ds = pydicom.dcmread(path)
    ds.PatientID = patient_id
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    return ds


def _measurement(sr: hd.sr.Comprehensive3DSR, name: hd.sr.CodedConcept) -> float:
    [group] = sr.content.get_image_measurement_groups()
    [m] = group.get_measurements(name=name)
    return float(m.value)


def _algorithm_names(ds: pydicom.Dataset) -> list[str]:
    found = []

    def walk(items: pydicom.Sequence) -> None:
        for item in items:
            concept = item.get("ConceptNameCodeSequence")
            if concept and concept[0].CodeValue == "111001" and "TextValue" in item:
                found.append(str(item.TextValue))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return found


@pytest.mark.parametrize("using", ["dicomweb", "dimse"])
def test_results_round_trip(server, model, tmp_path, using):
    node = Node("both", WebPeer(server.dicomweb),
                DimsePeer(ORTHANC_AET, "127.0.0.1", server.dicom_port, MEDUI_AET, 0, 20))
    source = _patient(SAMPLES / "phantom_chest_nodule.dcm", f"RES-{using}")
    pacs.send(node, [source], using)
    [study] = pacs.search(node, StudyQuery(patient_id=f"RES-{using}"), using=using).items
    got = pacs.retrieve(node, study.uid, using=using)
    loaded = pacs.load_retrieved(got)
    dx = score(loaded.series[0], model)
    ov = overlay(dx, 0, "gradcam")
    src, srcs = results.source_headers(dx, results.headers_from_bytes(got.items), 0)
    built = results.build(results.result_input(dx, ov, src, srcs))
    assert [o.kind for o in built.objects] == ["sr", "seg", "sc", "pdf"] and not built.notes
    assert built.pdf.startswith(b"%PDF")
    sent = results.send(built, node, using)
    assert sorted(sent) == sorted(o.sop_instance_uid for o in built.objects)

    series = pacs.series(node, study.uid, using)
    assert sorted(s.modality for s in series) == sorted(["DX", "SR", "SEG", "OT", "DOC"])
    back = pacs.retrieve(node, study.uid, using=using)
    objects = {}
    for _name, data in back.items:
        assert data[128:132] == b"DICM", (_name, len(data), data[:200])
        ds = pydicom.dcmread(io.BytesIO(data))
        if ds.SOPClassUID in KINDS:
            objects[KINDS[ds.SOPClassUID]] = ds
            assert ds.StudyInstanceUID == source.StudyInstanceUID
            assert ds.SeriesInstanceUID != source.SeriesInstanceUID
            assert ds.SeriesDescription.startswith(SERIES_DESCRIPTION)
            assert (ds.Manufacturer, ds.SoftwareVersions[:5]) == ("MedUI", "MedUI")
            path = tmp_path / f"{KINDS[ds.SOPClassUID]}.dcm"
            path.write_bytes(data)
            assert dciodvfy_errors(path) == [], KINDS[ds.SOPClassUID]
    assert sorted(objects) == ["pdf", "sc", "seg", "sr"]

    sr = hd.sr.Comprehensive3DSR.from_dataset(objects["sr"])
    card = model.entry.card
    assert _measurement(sr, codes.PROBABILITY) == pytest.approx(dx.prediction.probabilities[card.positive_class],
                                                                rel=1e-6, abs=1e-9)
    assert _measurement(sr, codes.THRESHOLD) == pytest.approx(card.threshold, rel=1e-6)
    assert _algorithm_names(objects["sr"]) and set(_algorithm_names(objects["sr"])) == {card.id}
    assert (objects["sr"].PreliminaryFlag, objects["sr"].VerificationFlag) == ("PRELIMINARY", "UNVERIFIED")
    assert objects["sr"].CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
        .ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID

    seg = hd.seg.Segmentation.from_dataset(objects["seg"])
    mask = seg.get_segment_mask([1]) if hasattr(seg, "get_segment_mask") else seg.pixel_array
    assert np.asarray(mask).shape[-2:] == (source.Rows, source.Columns)
    assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert objects["sc"].file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    assert objects["pdf"].EncapsulatedDocument[:4] == b"%PDF"


def test_report_cli_writes_and_sends(server, tmp_path, monkeypatch, capsys):
    source = _patient(SAMPLES / "phantom_chest_consolidation.dcm", "RES-CLI")
    source.save_as(tmp_path / "cxr.dcm")
    monkeypatch.setenv("MEDUI_DICOMWEB_URL", server.dicomweb)
    monkeypatch.setenv("MEDUI_PACS_CONFIG", "")
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "cxr.dcm"), "--model", DEMO_MODEL, "--out", str(out),
                 "--send", "default", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [o["kind"] for o in doc["objects"]] == ["sr", "seg", "sc", "pdf"] and not doc["errors"]
    for row in doc["objects"]:
        ds = pydicom.dcmread(row["path"])
        assert (str(ds.SOPClassUID), str(ds.SOPInstanceUID)) == (row["sop_class_uid"], row["sop_instance_uid"])
    assert Path(doc["objects"][-1]["document"]).read_bytes().startswith(b"%PDF")
    assert sorted(doc["sent"]["stored"]) == sorted(o["sop_instance_uid"] for o in doc["objects"])
    assert main(["pacs", "search", "--patient-id", "RES-CLI", "--json"]) == 0
    [study] = json.loads(capsys.readouterr().out)["studies"]
    assert study["n_instances"] == 4  # the results; the source was read from a file
    assert main(["pacs", "echo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checks"][0]["ok"] is True
    assert main(["pacs", "get", study["uid"], "--out", str(tmp_path / "got"), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["files"]) == 4
