"""The reader's server side: the registry of published series (weak, unguessable), the HTTP routes
(voxels gzip-compressed, cached; the bundle by content hash), and the committed bundle matching
frontend/ (rebuilt with esbuild when Node is here)."""

from __future__ import annotations

import gc
import gzip
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from medui.reading import volume
from medui.series import Series, Window
from medui.ui import server
from medui.ui.volumes import Registry

ROOT = Path(__file__).resolve().parents[1]


def _series(n: int = 20) -> Series:
    a = np.eye(4)
    a[:3, 0] = (0, 0, -2.0)
    px = np.random.default_rng(0).integers(-1000, 1000, size=(n, 64, 48)).astype(np.float32)
    return Series(pixels=px, affine=a, modality="CT", window=Window(40, 400))


def test_registry_tokens_are_unguessable_stable_and_weak():
    reg = Registry()
    s = _series()
    token = reg.publish(s)
    assert len(token) >= 24 and reg.publish(s) == token
    other = _series()
    assert reg.publish(other) != token
    found = reg.lookup(token)
    assert found is not None and found[0] is s and found[1].shape == (20, 64, 48)
    assert reg.lookup("not-a-token") is None
    del s, found
    gc.collect()
    assert reg.lookup(token) is None and len(reg) == 1  # the registry never keeps a session's pixels alive


def test_registry_forgets_a_cleared_series():
    reg = Registry()
    s = _series()
    token = reg.publish(s)
    s.pixels = np.empty((0, 64, 48), np.float32)  # what 'Clear all' does (medui.ui.state.clear)
    assert reg.lookup(token) is None


def test_a_series_the_store_moved_to_disk_is_read_back_for_the_browser(tmp_path, monkeypatch):
    from medui.io.loader import LoadResult
    from medui.io.store import SeriesStore, StoreConfig

    store = SeriesStore(StoreConfig(2**30, 60, tmp_path / "spill"))
    monkeypatch.setattr("medui.ui.resources.store", lambda: store)
    key = store.add("load", LoadResult([_series()])).keys[0]
    reg = Registry()
    token = reg.publish(store.get(key)[0], key)
    expected = np.array(store.get(key)[0].pixels)
    with store._lock:
        store._spill(key)  # memory pressure: the store keeps it on disk only
    gc.collect()
    found = reg.lookup(token)
    assert found is not None and store.get(key)[1] is False  # read back once, by the lookup
    np.testing.assert_array_equal(found[0].pixels, expected)
    store.sweep(now=1e12)  # dropped by the store: gone for the browser too
    del found
    gc.collect()
    assert reg.lookup(token) is None


@pytest.fixture()
def client(monkeypatch):
    reg = Registry()
    monkeypatch.setattr("medui.ui.volumes.registry", lambda: reg)
    with TestClient(Starlette(routes=server.routes())) as c:
        yield c, reg


def test_chunks_come_gzipped_cached_and_exact(client):
    c, reg = client
    s = _series()
    token = reg.publish(s)
    vol = volume.describe(s)
    got = b""
    for k in range(vol.n_chunks):
        res = c.get(f"{server.volume_url(token)}/{k}", headers={"Accept-Encoding": "identity"})
        assert res.status_code == 200 and res.headers["content-encoding"] == "gzip"
        assert "immutable" in res.headers["cache-control"] and "private" in res.headers["cache-control"]
        got += gzip.decompress(res.content) if res.content[:2] == b"\x1f\x8b" else res.content
    assert got == b"".join(volume.chunk(s, vol, k) for k in range(vol.n_chunks))
    assert c.get(f"{server.volume_url(token)}/{vol.n_chunks}").status_code == 404
    assert c.get(f"{server.volume_url('nope')}/0").status_code == 404


def test_bytes_per_series_stay_near_zlib_of_the_int16_volume(client):
    """What the browser receives for a series is at most 1.2x the int16 volume compressed with zlib."""
    c, reg = client
    s = _series(40)
    token = reg.publish(s)
    vol = volume.describe(s)
    sent = 0
    for k in range(vol.n_chunks):
        res = c.get(f"{server.volume_url(token)}/{k}")
        sent += int(res.headers.get("content-length", len(res.content)))
    reference = len(zlib.compress(s.pixels[::-1].astype("<i2").tobytes()))
    assert sent <= 1.2 * reference


def test_bundle_is_served_by_content_hash(client):
    c, _ = client
    url = server.bundle_url()
    res = c.get(url)
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/javascript")
    assert "max-age=31536000" in res.headers["cache-control"]
    assert res.content.startswith(b"\x1f\x8b") or b"export" in res.content
    assert c.get(url.replace(server.bundle()[0], "0" * 16)).status_code == 404


def test_committed_bundle_matches_its_sources(tmp_path):
    """`make frontend` output equals the committed medui/ui/static/reader.js (deterministic esbuild)."""
    frontend = ROOT / "frontend"
    esbuild = frontend / "node_modules" / ".bin" / "esbuild"
    if shutil.which("node") is None:
        pytest.skip("Node is not installed: the committed bundle cannot be rebuilt here (make frontend needs Node 18+)")
    if not esbuild.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot install esbuild to rebuild the bundle")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=frontend, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm ci failed (no registry access?): {done.stderr[-300:]}")
    out = tmp_path / "reader.js"
    cmd = [str(esbuild), "src/index.js", "--bundle", "--minify", "--format=esm", "--target=es2020",
           "--legal-comments=none", "--loader:.css=text", f"--outfile={out}"]
    import json

    script = json.loads((frontend / "package.json").read_text())["scripts"]["build"]
    assert script.split()[1:-1] == cmd[1:-1], "tests build the bundle as package.json does"
    subprocess.run(cmd, cwd=frontend, check=True, capture_output=True, timeout=120)
    committed = (ROOT / "medui" / "ui" / "static" / "reader.js").read_bytes()
    assert out.read_bytes() == committed, "medui/ui/static/reader.js is stale: run `make frontend` and commit it"
