"""A real Orthanc (tests/orthanc.py): store, search, retrieve and load by DICOMweb and DIMSE; paging; faults."""

from __future__ import annotations

import io
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.association import Association

from medui.errors import PacsAuthError, PacsConnectionError
from medui.io.loader import load
from medui.pacs import dicomweb, dimse, store_reply
from medui.pacs.model import DimsePeer, Node, StudyQuery, WebPeer
from medui.usecases import pacs
from tests import synth
from tests.orthanc import MEDUI_AET, ORTHANC_AET, PASSWORD, USER, free_port, served


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    yield from served(tmp_path_factory, auth=True)


def web_node(server, **kw) -> Node:
    return Node("default", WebPeer(server.dicomweb, **kw))


def dimse_node(server, timeout: float = 20) -> Node:
    return Node("dimse", None, DimsePeer(ORTHANC_AET, "127.0.0.1", server.dicom_port, MEDUI_AET, 0, timeout))


def generated(tmp_path: Path, patient_id: str, name: str, n: int = 5, rows: int = 32, cols: int = 40) -> list[Path]:
    """A generated CT series with its own patient, written to files."""
    paths = synth.write_series(tmp_path / patient_id, synth.phantom_volume(n, rows, cols), name=patient_id)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PatientID, ds.PatientName = patient_id, name
        ds.save_as(p)
    return paths


def test_dicomweb_round_trip(server, tmp_path):
    node = web_node(server)
    paths = generated(tmp_path, "RT-WEB", "Roundtrip^Web")
    extra = [pydicom.dcmread(get_testdata_file(f)) for f in ("CT_small.dcm", "MR_small.dcm")]
    assert len(dicomweb.store(node, [pydicom.dcmread(p) for p in paths] + extra)) == 7
    # '^' and '*' together: Orthanc needs them plain, and urllib3 encodes '^' (see medui/pacs/dicomweb.py)
    found = pacs.search(node, StudyQuery(patient_name="Roundtrip^W*"))
    assert [s.patient_id for s in found.items] == ["RT-WEB"] and not found.more
    assert pacs.search(node, StudyQuery(patient_name="roundtrip*", modality="CT")).items[0].n_instances == 5
    study = found.items[0]
    [info] = pacs.series(node, study.uid)
    assert (info.modality, info.n_instances) == ("CT", 5)
    thumb = pacs.thumbnail(node, info)
    assert thumb is not None and thumb[:2] == b"\xff\xd8"  # a rendered JPEG
    seen: list[tuple[int, int | None]] = []
    got = pacs.retrieve(node, study.uid, info.uid, expected=5, progress=lambda n, total: seen.append((n, total)))
    assert got.complete and len(got.items) == 5 and seen[-1] == (5, 5)
    loaded = pacs.load_retrieved(got)
    direct = load(paths)
    assert len(loaded.series) == 1 and not loaded.skipped
    np.testing.assert_array_equal(loaded.series[0].pixels, direct.series[0].pixels)
    np.testing.assert_allclose(loaded.series[0].affine, direct.series[0].affine)


def test_dicomweb_answers_come_uncompressed_unless_the_node_asks(server, tmp_path):
    # Orthanc gzips what a client accepts gzipped (requests accepts it by default): ~290 ms of its CPU
    # per 8 MB radiograph before the first byte, against ~20 ms sent as is
    paths = generated(tmp_path, "ENC-WEB", "Encoding^Web", n=1, rows=256, cols=256)
    dicomweb.store(web_node(server), [pydicom.dcmread(paths[0])])
    [study] = pacs.search(web_node(server), StudyQuery(patient_id="ENC-WEB")).items
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    for compress, encoding in ((False, None), (True, "gzip")):
        node = web_node(server, compress=compress)
        with dicomweb._raw_get(node, f"/studies/{study.uid}", [], accept) as resp:
            assert resp.headers.get("Content-Encoding") == encoding
        got = pacs.retrieve(node, study.uid)
        assert got.complete and pacs.load_retrieved(got).series[0].pixels.shape == (1, 256, 256)


def test_dimse_round_trip_keeps_compressed_files_as_stored(server, tmp_path, monkeypatch):
    node = dimse_node(server)
    assert "C-ECHO" in dimse.echo(node)
    paths = generated(tmp_path, "RT-DIMSE", "Roundtrip^Dimse", n=4)
    j2k = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    j2k.PatientID, j2k.PatientName = "RT-J2K", "Roundtrip^J2k"
    stored = pacs.send(node, [pydicom.dcmread(p) for p in paths] + [j2k])
    assert len(stored) == 5
    [study] = pacs.search(node, StudyQuery(patient_id="RT-DIMSE")).items
    [info] = pacs.series(node, study.uid)
    assert info.n_instances == 4
    replies = []
    quick = store_reply._reply
    monkeypatch.setattr(store_reply, "_reply", lambda assoc, req: (replies.append(req.MessageID), quick(assoc, req)))
    got = pacs.retrieve(node, study.uid, info.uid, using="dimse")
    assert got.complete and len(got.items) == 4
    assert len(replies) == 4  # every C-STORE sub-operation answered by the quick reply (medui.pacs.store_reply)
    np.testing.assert_array_equal(pacs.load_retrieved(got).series[0].pixels, load(paths).series[0].pixels)
    [j2k_study] = pacs.search(node, StudyQuery(patient_id="RT-J2K")).items
    got = pacs.retrieve(node, j2k_study.uid)  # a whole study; JPEG 2000 comes back as JPEG 2000 (no transcoding)
    [(name, data)] = got.items
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.file_meta.TransferSyntaxUID == j2k.file_meta.TransferSyntaxUID
    assert (back.file_meta.MediaStorageSOPClassUID, back.file_meta.MediaStorageSOPInstanceUID) == \
        (j2k.SOPClassUID, j2k.SOPInstanceUID)
    assert name == f"{j2k.SOPInstanceUID}.dcm" and pacs.load_retrieved(got).series


def test_dimse_asks_for_pdus_of_any_size(server):
    # `AE.associate` has its own max_pdu (16 kB by default): 16 kB PDUs cost a C-GET 4x the trips
    # through pynetdicom's state machine that Orthanc's 128 kB ones do (tests/orthanc.py)
    node = dimse_node(server)
    with dimse._association(node, [(dimse.Verification, dimse.ALL_TRANSFER_SYNTAXES[:3])]) as assoc:
        assert assoc.requestor.maximum_length == 0
        assert assoc.acceptor.maximum_length == 131072
        # and pynetdicom's per-message log handlers, 10-20% of a C-GET's CPU, are not bound
        assert not assoc.get_handlers(evt.EVT_DIMSE_RECV)


def _tiny_study(k: int) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = f"PAGE-{k:03d}", f"Paging^Test{k:03d}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _paging_node(server) -> Node:
    """A node with both protocols on a PACS that holds the 57 studies of patients Paging^*."""
    node = Node("both", WebPeer(server.dicomweb), dimse_node(server).dimse)
    if not pacs.search(node, StudyQuery(patient_name="Paging^*"), limit=1).items:
        dicomweb.store(node, [_tiny_study(k) for k in range(57)])
    return node


@pytest.mark.parametrize("using", ["dicomweb", "dimse"])
def test_search_is_paged(server, using):
    node = _paging_node(server)
    query = StudyQuery(patient_name="Paging^*")
    first = pacs.search(node, query, 0, using=using)
    second = pacs.search(node, query, 50, using=using)
    assert (len(first.items), first.more, len(second.items), second.more) == (50, True, 7, False)
    ids = {s.patient_id for s in first.items} | {s.patient_id for s in second.items}
    assert ids == {f"PAGE-{k:03d}" for k in range(57)}


def test_a_dimse_query_is_aborted_only_when_more_answers_wait(server, monkeypatch):
    # pynetdicom's abort sleeps 0.1 s: a query whose answers all fit (the study's SOP classes before every
    # C-GET) reads the final response and releases; one that matches more than wanted stops unread
    node, query = _paging_node(server), StudyQuery(patient_name="Paging^*")
    aborts = []
    abort = Association.abort
    monkeypatch.setattr(Association, "abort", lambda self, *a, **k: (aborts.append(1), abort(self, *a, **k))[1])
    page = pacs.search(node, query, 0, limit=56, using="dimse")  # asks for 57 (one more tells `more`): all there are
    assert (len(page.items), page.more, aborts) == (56, True, [])
    page = pacs.search(node, query, 0, limit=10, using="dimse")
    assert (len(page.items), page.more, aborts) == (10, True, [1])


def test_pacs_down_says_so(tmp_path):
    port = free_port()
    down = Node("down", WebPeer(f"http://127.0.0.1:{port}/dicom-web", user="u", password="pw-never-shown", timeout=3),
                DimsePeer("ORTHANC", "127.0.0.1", port, "MEDUI", 0, 3))
    with pytest.raises(PacsConnectionError, match="'down' .* cannot be reached") as exc:
        pacs.search(down, StudyQuery())
    assert "pw-never-shown" not in str(exc.value)
    with pytest.raises(PacsConnectionError, match="could not open an association"):
        pacs.search(down, StudyQuery(), using="dimse")
    checks = pacs.echo(down)
    assert [ok for _, ok, _ in checks] == [False, False]
    assert not any("pw-never-shown" in m for _, _, m in checks)


def test_wrong_credentials_are_refused_without_showing_them(auth_server):
    wrong = Node("secured", WebPeer(auth_server.dicomweb, user=USER, password="wrong-pw-123"))
    with pytest.raises(PacsAuthError, match="refused MedUI's credentials .*HTTP 401") as exc:
        pacs.search(wrong, StudyQuery())
    assert "wrong-pw-123" not in str(exc.value)
    right = Node("secured", WebPeer(auth_server.dicomweb, user=USER, password=PASSWORD))
    assert pacs.echo(right) == [("dicomweb", True, f"DICOMweb {auth_server.dicomweb} answers QIDO-RS")]


def test_dimse_peer_that_does_not_know_medui(server):
    stranger = Node("strict", None, DimsePeer(ORTHANC_AET, "127.0.0.1", server.dicom_port, "STRANGER", 0, 10))
    with pytest.raises(PacsConnectionError, match="does not allow STRANGER"):
        pacs.search(stranger, StudyQuery())


def test_timeout_mid_retrieve_keeps_what_arrived(server, tmp_path):
    node = web_node(server, timeout=2.0)
    paths = generated(tmp_path, "RT-STALL", "Stall^Test", n=48, rows=512, cols=512)  # 25 MB: more than buffers hold
    server.upload(paths)
    [study] = pacs.search(node, StudyQuery(patient_id="RT-STALL")).items

    def freeze_after_first(n: int, total: int | None) -> None:
        if n == 1:
            os.kill(server.pid, signal.SIGSTOP)

    try:
        got = pacs.retrieve(node, study.uid, progress=freeze_after_first)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert "stopped answering" in got.error and not got.complete
    assert 1 <= len(got.items) < 48
    result = pacs.load_retrieved(got)  # what arrived is whole and loads
    assert result.series and result.series[0].n_slices == len(got.items)


def test_non_image_and_rejected_instances_are_listed_and_the_rest_loads(server, tmp_path):
    node = web_node(server)
    paths = generated(tmp_path, "RT-MIXED", "Mixed^Test", n=3)
    study_uid = pydicom.dcmread(paths[0]).StudyInstanceUID
    plan = pydicom.dcmread(get_testdata_file("rtplan.dcm"))  # no image: an RT Plan in the same study
    plan.StudyInstanceUID, plan.PatientID, plan.PatientName = study_uid, "RT-MIXED", "Mixed^Test"
    broken = pydicom.dcmread(paths[0])  # the loader rejects it: its pixel data is cut short
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    broken.SeriesInstanceUID = generate_uid()
    broken.PixelData = broken.PixelData[:100]
    dicomweb.store(node, [pydicom.dcmread(p) for p in paths] + [plan, broken])
    got = pacs.retrieve(node, study_uid)
    assert got.complete and len(got.items) == 5
    result = pacs.load_retrieved(got)
    assert [s.n_slices for s in result.series] == [3]
    reasons = {name: reason for name, reason in ((k.file, k.reason) for k in result.skipped)}
    assert f"{plan.SOPInstanceUID}.dcm" in reasons and f"{broken.SOPInstanceUID}.dcm" in reasons


@pytest.mark.parametrize("using", ["dicomweb", "dimse"])
def test_cancel_stops_a_retrieval(server, tmp_path, using):
    node = Node("both", WebPeer(server.dicomweb), dimse_node(server).dimse)
    server.upload(generated(tmp_path, f"RT-CANCEL-{using}", "Cancel^Test", n=30, rows=128, cols=128))
    [study] = pacs.search(node, StudyQuery(patient_id=f"RT-CANCEL-{using}")).items
    cancel = threading.Event()

    def cancel_at_third(n: int, _total: int | None) -> None:
        if n == 3:
            cancel.set()

    got = pacs.retrieve(node, study.uid, progress=cancel_at_third, cancel=cancel, using=using)
    assert got.cancelled and not got.complete and len(got.items) == 3
    assert "cancelled" in got.summary()
    assert dimse.echo(node)  # the PACS still answers after the abort
