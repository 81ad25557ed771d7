"""C-GET over several associations at once (a node's `parallel`) against a real Orthanc (tests/orthanc.py):
the same files and the same loaded series as one association; cancel stops them all; the setting is checked."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medui.errors import PacsConfigError, PacsConnectionError
from medui.io.loader import load
from medui.pacs import dimse
from medui.pacs.config import load_nodes
from medui.pacs.model import DimsePeer, Node
from medui.usecases import pacs
from tests import synth
from tests.orthanc import MEDUI_AET, ORTHANC_AET, served, store_series

N = 41  # above dimse.PARALLEL_MIN: retrieved in groups


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory)


@pytest.fixture(scope="module")
def series(server, tmp_path_factory) -> tuple[str, str, list[Path]]:
    """A generated CT of N slices, half of them JPEG Lossless: (study UID, series UID, its files)."""
    tmp = tmp_path_factory.mktemp("cget")
    raw = synth.write_series(tmp / "raw", synth.phantom_volume(N, 40, 48), name="pg")
    paths = [synth.jpeg_lossless_copy(p, tmp / p.name) if k % 2 else p for k, p in enumerate(raw)]
    return store_series(server, paths, ("CGET-PAR", "Parallel^Get"))


def node(server, parallel: int) -> Node:
    return Node("par", None, DimsePeer(ORTHANC_AET, "127.0.0.1", server.dicom_port, MEDUI_AET, 0, 20,
                                       parallel=parallel))


def test_parallel_gives_the_same_files_and_series_as_one_association(server, series):
    study_uid, series_uid, paths = series
    got = {k: pacs.retrieve(node(server, k), study_uid, series_uid, expected=N, using="dimse", decode_ahead=True)
           for k in (1, 3)}
    assert all(g.complete and len(g.items) == N for g in got.values())
    assert dict(got[1].items) == dict(got[3].items)  # byte-identical, named by SOP Instance UID
    assert {name for name, _ in got[3].items} == {f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in paths}
    one, three, direct = pacs.load_retrieved(got[1]), pacs.load_retrieved(got[3]), load(paths)
    assert [s.n_slices for s in three.series] == [N] and not three.skipped
    for other in (one, direct):
        np.testing.assert_array_equal(three.series[0].pixels, other.series[0].pixels)
        np.testing.assert_allclose(three.series[0].affine, other.series[0].affine)


def test_a_whole_study_in_groups_and_the_group_count(server, series, monkeypatch):
    """A study-level retrieval names its instances per series; each association opens once."""
    study_uid, _series_uid, _paths = series
    opened: list[int] = []
    real = dimse._association

    def counting(*args, **kw):  # the real association, counted
        opened.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(dimse, "_association", counting)
    seen: list[str] = []
    lock = threading.Lock()

    def on_item(name: str, data: bytes) -> None:
        assert lock.acquire(blocking=False), "on_item is called one at a time"
        try:
            seen.append(name)
        finally:
            lock.release()

    assert dimse.retrieve(node(server, 4), study_uid, None, on_item) == N
    assert len(set(seen)) == N and len(opened) == 2 + 4  # the two queries (classes, instances), then 4


def test_cancel_stops_every_association_and_opens_nothing(server, series):
    study_uid, series_uid, _paths = series
    n = node(server, 3)
    cancel = threading.Event()

    def cancel_at_fifth(k: int, _total: int | None) -> None:
        if k == 5:
            cancel.set()

    got = pacs.retrieve(n, study_uid, series_uid, progress=cancel_at_fifth, cancel=cancel, using="dimse",
                        decode_ahead=True)
    assert got.cancelled and not got.complete and len(got.items) == 5  # nothing passed on after the cancel
    got.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("medui-cget")]  # every association ended
    assert dimse.echo(n)  # the PACS still answers after the aborts
    ahead = threading.Event()
    ahead.set()
    assert dimse.retrieve(n, study_uid, series_uid, lambda *_: pytest.fail("nothing opens"), ahead) == 0


def test_an_error_in_one_association_stops_the_others_and_keeps_what_arrived(server, series, monkeypatch):
    study_uid, series_uid, _paths = series
    real = dimse._association
    calls: list[int] = []

    def third_refused(*args, **kw):
        calls.append(1)
        if len(calls) == 5:  # the two queries, two groups, then the third group's association fails
            raise PacsConnectionError("the PACS 'par' refused the third association (test)")
        return real(*args, **kw)

    monkeypatch.setattr(dimse, "_association", third_refused)
    got = pacs.retrieve(node(server, 3), study_uid, series_uid, using="dimse")
    assert "refused the third association" in got.error and not got.complete
    assert len(got.items) < N and len({name for name, _ in got.items}) == len(got.items)
    assert not [t for t in threading.enumerate() if t.name.startswith("medui-cget")]


@pytest.mark.parametrize(("value", "message"), [("0", "parallel is 0; expected a whole number"),
                                                ("17", "parallel is 17; expected .* from 1 to 16"),
                                                ('"3"', "parallel is '3'; expected a whole number"),
                                                ("2.5", "parallel is 2.5; expected"),
                                                ("true", "parallel is True; expected")])
def test_config_checks_parallel(tmp_path, monkeypatch, value, message):
    cfg = tmp_path / "pacs.toml"
    cfg.write_text(f'[[node]]\nname = "x"\nae_title = "PACS"\nhost = "pacs"\nport = 104\nparallel = {value}\n')
    monkeypatch.setenv("MEDUI_PACS_CONFIG", str(cfg))
    monkeypatch.delenv("MEDUI_DICOMWEB_URL", raising=False)
    with pytest.raises(PacsConfigError, match=message):
        load_nodes()


def test_config_reads_parallel(tmp_path, monkeypatch):
    cfg = tmp_path / "pacs.toml"
    cfg.write_text('[[node]]\nname = "x"\nae_title = "PACS"\nhost = "pacs"\nport = 104\nparallel = 4\n'
                   '[[node]]\nname = "y"\nae_title = "PACS"\nhost = "pacs"\nport = 104\n')
    monkeypatch.setenv("MEDUI_PACS_CONFIG", str(cfg))
    monkeypatch.delenv("MEDUI_DICOMWEB_URL", raising=False)
    nodes = load_nodes()
    assert [n.dimse.parallel for n in nodes.values() if n.dimse] == [4, 1]  # one association unless asked
    assert nodes["x"].describe().endswith(", C-GET on 4 associations") and "associations" not in nodes["y"].describe()
