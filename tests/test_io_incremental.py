"""A load fed file by file (`Loading`, as a PACS retrieval feeds it) gives what `load` gives."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medui.io.loader import Loading, LoadResult, load
from tests.synth import jpeg_lossless_copy, phantom_volume, png_bytes, write_series

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="decoding ahead needs Linux memfd")


@pytest.fixture(scope="module")
def arriving(tmp_path_factory) -> list[tuple[str, bytes]]:
    """Two compressed series of different frame sizes (slices stored out of order), an uncompressed one,
    an SR, a PNG, a truncated compressed file and a duplicate: shuffled, as a whole-study retrieval."""
    tmp = tmp_path_factory.mktemp("incremental")
    items: list[tuple[str, bytes]] = []
    for name, (n, rows, cols) in {"a": (20, 48, 56), "b": (9, 32, 40)}.items():
        raw = write_series(tmp / f"raw-{name}", phantom_volume(n, rows, cols, seed=n), name=name,
                           order=list(np.random.default_rng(n).permutation(n)))
        for path in raw:
            items.append((f"{name}/{path.name}", jpeg_lossless_copy(path, tmp / f"{name}-{path.name}").read_bytes()))
    items += [(f"plain/{p.name}", p.read_bytes()) for p in write_series(tmp / "plain", phantom_volume(4, 16, 16))]
    items.append(("sr.dcm", Path(get_testdata_file("test-SR.dcm")).read_bytes()))  # type: ignore[arg-type]
    items.append(("photo.png", png_bytes(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))))
    items.append(("cut.dcm", items[3][1][: len(items[3][1]) // 2]))
    items.append(("again.dcm", items[5][1]))
    random.Random(7).shuffle(items)
    return items


def _same(a: LoadResult, b: LoadResult) -> None:
    assert [s.files for s in a.series] == [s.files for s in b.series]
    for x, y in zip(a.series, b.series, strict=True):
        np.testing.assert_array_equal(x.pixels, y.pixels)
        assert x.pixels.dtype == y.pixels.dtype
        np.testing.assert_array_equal(x.affine, y.affine)
        assert (x.uid, x.modality, x.warnings, x.window) == (y.uid, y.modality, y.warnings, y.window)
    assert a.skipped == b.skipped


def test_file_by_file_equals_load(arriving):
    expected = load(arriving)
    assert len(expected.series) == 4 and len(expected.skipped) >= 3  # the SR, the truncated file, the duplicate
    with Loading(expected=len(arriving)) as loading:
        for item in arriving:
            loading.add(item)
        got = loading.finish()
    _same(expected, got)
    # the frames of the first file's size were decoded while the others arrived, and placed exactly
    assert loading.decoded_ahead >= 15, loading.decoded_ahead
    assert got.workers > 0


def test_without_expected_count_and_after_close(arriving):
    """Decoding starts on its own after a few compressed files; a Loading closed before `finish`
    (its workers stopped) still reads everything, the ordinary way."""
    expected = load(arriving)
    loading = Loading()
    for item in arriving:
        loading.add(item)
    loading.close()
    _same(expected, loading.finish())
    assert loading.decoded_ahead == 0
    with pytest.raises(RuntimeError, match="finished"):
        loading.add(arriving[0])


def test_small_or_uncompressed_sets_load_at_the_end(tmp_path):
    paths = write_series(tmp_path / "s", phantom_volume(30, 16, 16))
    with Loading(expected=30) as loading:
        for p in paths:
            loading.add((p.name, p.read_bytes()))
        got = loading.finish()
    assert loading.decoded_ahead == 0 and got.workers == 0
    _same(load([(p.name, p.read_bytes()) for p in paths]), got)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_a_whole_series_decoded_ahead_is_put_in_order_in_place(tmp_path, monkeypatch):
    """One series of the expected size: its staging volume becomes the series volume, the frames
    reordered in place from their arrival order to the slice order."""
    from medui.io import staging

    vol = phantom_volume(18, 40, 48, seed=3)
    raw = write_series(tmp_path / "raw", vol, order=list(np.random.default_rng(1).permutation(18)))
    items = [(p.name, jpeg_lossless_copy(p, tmp_path / p.name).read_bytes()) for p in raw]
    random.Random(2).shuffle(items)
    orders: list[list[int]] = []
    real = staging.permute
    monkeypatch.setattr(staging, "permute", lambda arr, order: (orders.append(list(order)), real(arr, order)))
    with Loading(expected=18) as loading:
        for item in items:
            loading.add(item)
        got = loading.finish()
    assert loading.decoded_ahead == 18 and got.workers > 0
    assert len(orders) == 1 and sorted(orders[0]) == list(range(18)) and orders[0] != list(range(18))
    _same(load(items), got)
    np.testing.assert_array_equal(got.series[0].pixels, vol.astype(np.float32) - 1024)
