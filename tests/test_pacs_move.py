"""Retrieval by C-MOVE (MedUI's storage SCP on own_port) and decoding while instances arrive, against a
real Orthanc (tests/orthanc.py): the loaded series equal loading the same files."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from medui.cli import main
from medui.errors import PacsConfigError
from medui.io.loader import load
from medui.pacs.config import load_nodes
from medui.pacs.model import DimsePeer, Node, StudyQuery, WebPeer
from medui.usecases import pacs
from tests import synth
from tests.orthanc import MEDUI_AET, ORTHANC_AET, free_port, served, store_series


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory)


@pytest.fixture(scope="module")
def study(server, tmp_path_factory) -> tuple[str, str, list[Path]]:
    """A JPEG Lossless CT of 20 slices stored out of order: (study UID, series UID, its files)."""
    tmp = tmp_path_factory.mktemp("move")
    raw = synth.write_series(tmp / "raw", synth.phantom_volume(20, 48, 56), name="mv",
                             order=list(np.random.default_rng(5).permutation(20)))
    paths = [synth.jpeg_lossless_copy(p, tmp / p.name) for p in raw]
    return store_series(server, paths, ("MOVE-1", "Move^Test"))


def mover(server, own_ae: str = MEDUI_AET, port: int | None = None) -> Node:
    return Node("mover", None, DimsePeer(ORTHANC_AET, "127.0.0.1", server.dicom_port, own_ae,
                                         server.medui_port if port is None else port, 20, "c-move"))


def getter(server) -> Node:
    return Node("getter", WebPeer(server.dicomweb), DimsePeer(ORTHANC_AET, "127.0.0.1", server.dicom_port, MEDUI_AET))


@pytest.mark.parametrize(("how", "ahead"), [("c-move", False), ("c-move", True), ("c-get", True), ("wado", True)])
def test_retrieve_and_load_equal_loading_the_files(server, study, how, ahead):
    study_uid, series_uid, paths = study
    node = mover(server) if how == "c-move" else getter(server)
    seen: list[int] = []
    got = pacs.retrieve(node, study_uid, series_uid, expected=20, progress=lambda n, _t: seen.append(n),
                        using="dicomweb" if how == "wado" else "dimse", decode_ahead=ahead)
    assert got.complete and len(got.items) == 20 and seen[-1] == 20, got.error
    loaded, direct = pacs.load_retrieved(got), load(paths)
    assert len(loaded.series) == 1 and not loaded.skipped
    np.testing.assert_array_equal(loaded.series[0].pixels, direct.series[0].pixels)
    np.testing.assert_array_equal(loaded.series[0].affine, direct.series[0].affine)
    assert got.loading is None  # the load started while instances arrived was finished (not read again)


def test_move_to_an_unknown_destination_names_the_fix(server, study):
    got = pacs.retrieve(mover(server, "STRANGER", free_port()), study[0], study[1])
    assert not got.complete and not got.items
    assert "refused the C-MOVE to STRANGER" in got.error and "unknown destination AE" in got.error
    assert "add MedUI's AE title STRANGER" in got.error and "DicomModalities" in got.error


def test_own_port_in_use_is_a_clear_error(server, study):
    port = free_port()
    with socket.create_server(("", port)):
        got = pacs.retrieve(mover(server, port=port), study[0], study[1])
    assert f"cannot listen on port {port}" in got.error and "own_port" in got.error and not got.items
    # the port is free again after a move: two moves in a row
    for _ in range(2):
        assert pacs.retrieve(mover(server), study[0], study[1]).complete


def test_cancel_a_move(server, study):
    cancel = threading.Event()
    got = pacs.retrieve(mover(server), study[0], study[1], cancel=cancel, progress=lambda n, _t: cancel.set(),
                        decode_ahead=True)
    assert got.cancelled and 1 <= len(got.items) < 20
    assert pacs.load_retrieved(got).series  # what arrived is whole and loads


def test_cli_get_by_c_move_from_the_config_file(server, study, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "pacs.toml"
    cfg.write_text(f'[[node]]\nname = "orthanc"\nae_title = "{ORTHANC_AET}"\nhost = "127.0.0.1"\n'
                   f'port = {server.dicom_port}\nown_ae_title = "{MEDUI_AET}"\nown_port = {server.medui_port}\n'
                   'retrieve = "c-move"\n')
    monkeypatch.setenv("MEDUI_PACS_CONFIG", str(cfg))
    monkeypatch.delenv("MEDUI_DICOMWEB_URL", raising=False)
    assert load_nodes()["orthanc"].dimse.retrieve == "c-move"  # type: ignore[union-attr]
    assert main(["pacs", "get", study[0], "--series", study[1], "--node", "orthanc", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["complete"] and doc["retrieved"] == 20 and len(doc["series"]) == 1 and not doc["skipped"]
    [found] = pacs.search(load_nodes()["orthanc"], StudyQuery(patient_id="MOVE-1")).items
    assert found.uid == study[0]


@pytest.mark.parametrize(("extra", "message"), [('retrieve = "c-move"\n', "needs own_port"),
                                                ('retrieve = "c-store"\nown_port = 104\n', "expected one of c-get")])
def test_config_checks_the_retrieve_choice(tmp_path, monkeypatch, extra, message):
    cfg = tmp_path / "pacs.toml"
    cfg.write_text('[[node]]\nname = "x"\nae_title = "PACS"\nhost = "pacs"\nport = 104\n' + extra)
    monkeypatch.setenv("MEDUI_PACS_CONFIG", str(cfg))
    with pytest.raises(PacsConfigError, match=message):
        load_nodes()
