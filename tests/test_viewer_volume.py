"""The series as the browser reader receives it (medui.reading.volume): encoding, chunks, affine and
the plane layout, held to the server's own display (`plane_view`, `slice_label`, the Viewer's presets)."""

from __future__ import annotations

import numpy as np
import pytest

from medui.reading import volume
from medui.reading.display import (
    PLANES,
    display_order,
    plane_count,
    plane_view,
    slice_positions_mm,
)
from medui.series import Series, VoiLut, Window


def _affine(slice_dir, row_dir, col_dir, spacing=(2.5, 0.8, 0.7), origin=(-100.0, -120.0, 50.0)) -> np.ndarray:
    a = np.eye(4)
    a[:3, 0] = np.asarray(slice_dir, float) * spacing[0]
    a[:3, 1] = np.asarray(row_dir, float) * spacing[1]
    a[:3, 2] = np.asarray(col_dir, float) * spacing[2]
    a[:3, 3] = origin
    return a


# (slice, row, col) directions in LPS: axial feet->head and head->feet, coronal, sagittal, flipped rows
GEOMETRIES = {
    "axial-ascending": ((0, 0, 1), (0, 1, 0), (1, 0, 0)),
    "axial-descending": ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
    "coronal": ((0, 1, 0), (0, 0, -1), (1, 0, 0)),
    "sagittal": ((-1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "axial-flipped": ((0, 0, 1), (0, -1, 0), (-1, 0, 0)),
}


def _series(geometry: str, n: int = 7, rows: int = 9, cols: int = 11, values: np.ndarray | None = None) -> Series:
    rng = np.random.default_rng(3)
    px = values if values is not None else rng.integers(-1024, 2000, size=(n, rows, cols)).astype(np.float32)
    return Series(pixels=px, affine=_affine(*GEOMETRIES[geometry]), modality="CT", window=Window(40, 400))


def _decode(series: Series, vol: volume.Volume) -> np.ndarray:
    raw = b"".join(volume.chunk(series, vol, k) for k in range(vol.n_chunks))
    dtype = {"int16": "<i2", "float32": "<f4", "uint8": "u1"}[vol.dtype]
    shape = tuple(vol.shape) + ((3,) if series.is_color else ())
    return np.frombuffer(raw, dtype).reshape(shape).astype(np.float64) + vol.intercept


def _extract(voxels: np.ndarray, plane: dict, index: int) -> np.ndarray:
    """What frontend/src/volume.js `extract` shows: the same rule, written with numpy indexing."""
    vol = np.transpose(voxels, (2, 1, 0))  # NIfTI axes (col, row, slice)
    n = vol.shape[plane["axis"]]
    k = n - 1 - index if plane["reverse"] else index
    img = np.take(vol, k, axis=plane["axis"])  # the two other axes, in increasing axis order
    rest = [a for a in range(3) if a != plane["axis"]]
    img = img if rest.index(plane["v"]["axis"]) == 0 else img.T  # rows = vertical axis
    if plane["v"]["reverse"]:
        img = img[::-1]
    if plane["h"]["reverse"]:
        img = img[:, ::-1]
    return img


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_every_plane_shows_what_the_server_shows(geometry):
    """Orientation identical to today's radiological display: each plane and slice of the browser's
    layout is, pixel for pixel, `plane_view` of the same index, and the native plane is numbered as
    every page numbers it (display order)."""
    s = _series(geometry)
    v = volume.describe(s)
    voxels = _decode(s, v)
    np.testing.assert_array_equal(voxels, s.pixels[display_order(s)])
    planes = v.meta["planes"]
    assert set(planes) == set(PLANES)
    for name in PLANES:
        p = planes[name]
        assert p["n"] == plane_count(s, name)
        for i in range(p["n"]):
            np.testing.assert_array_equal(_extract(voxels, p, i), plane_view(s, name, i).image, err_msg=f"{name} {i}")
    native = v.meta["native_plane"]
    assert not planes[native]["reverse"] and planes[native]["axis"] == 2  # browser slice d = display slice d


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_affine_places_each_voxel_where_the_series_does(geometry):
    s = _series(geometry)
    v = volume.describe(s)
    ras = np.asarray(v.meta["affine"])
    order = display_order(s)
    for c, r, d in [(0, 0, 0), (10, 8, 6), (3, 5, 2)]:
        lps = s.affine @ np.array([order[d], r, c, 1.0])
        got = ras @ np.array([c, r, d, 1.0])
        np.testing.assert_allclose(got[:3], [-lps[0], -lps[1], lps[2]], atol=1e-5)
    assert v.meta["positions_mm"] == pytest.approx(slice_positions_mm(s), abs=1e-3)


def test_orientation_labels_are_radiological():
    planes = volume.describe(_series("axial-ascending")).meta["planes"]
    assert planes["axial"]["labels"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert planes["coronal"]["labels"] == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert planes["sagittal"]["labels"] == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


def test_values_travel_as_int16_when_they_allow_else_float32():
    ct = _series("axial-ascending")
    assert (volume.describe(ct).dtype, volume.describe(ct).intercept) == ("int16", 0.0)
    ramp = np.linspace(0, 60000, 7 * 9 * 11, dtype=np.float32).round().reshape(7, 9, 11)
    wide = _series("axial-ascending", values=ramp)
    v = volume.describe(wide)
    assert v.dtype == "int16" and v.intercept == 32768.0
    np.testing.assert_array_equal(_decode(wide, v), wide.pixels[display_order(wide)])
    mr = _series("axial-ascending", values=np.full((7, 9, 11), 0.25, np.float32))
    v = volume.describe(mr)
    assert v.dtype == "float32"
    np.testing.assert_array_equal(_decode(mr, v), mr.pixels)


def test_colour_is_sent_as_rgb_bytes_in_stored_layout():
    rgb = np.random.default_rng(1).integers(0, 256, size=(1, 6, 5, 3)).astype(np.float32)
    s = Series(pixels=rgb, affine=np.eye(4), modality="XC", photometric="RGB", has_geometry=False)
    v = volume.describe(s)
    assert v.dtype == "uint8" and v.meta["rgb"] and list(v.meta["planes"]) == ["native"]
    np.testing.assert_array_equal(_decode(s, v), rgb)
    p = v.meta["planes"]["native"]
    assert (p["h"], p["v"]) == ({"axis": 0, "reverse": False}, {"axis": 1, "reverse": False})


def test_image_without_geometry_is_shown_as_stored():
    s = Series(pixels=np.arange(12, dtype=np.float32).reshape(1, 3, 4), affine=np.eye(4), modality="CR",
               has_geometry=False, pixel_spacing_known=False)
    v = volume.describe(s)
    assert v.meta["native_plane"] == "native" and v.meta["pixel_unit"] == "px" and v.meta["positions_mm"] is None
    np.testing.assert_array_equal(_extract(_decode(s, v), v.meta["planes"]["native"], 0), s.pixels[0])


def test_a_volume_too_large_for_a_browser_is_subsampled_with_a_note():
    """1,500 slices of 512 x 512 arrive as 750 of 256 x 256 (49 M voxels), with a note that says so."""
    assert volume._strides((1500, 512, 512), volume.MAX_VOXELS) == (2, 2, 2)
    assert volume._strides((255, 512, 512), volume.MAX_VOXELS) == (1, 1, 1)  # the real chest CT: whole
    s = _series("axial-ascending", n=40, rows=512, cols=512)
    v = volume.describe(s, max_voxels=40 * 256 * 256)
    assert v.stride == (1, 2, 2) and v.shape == (40, 256, 256)
    assert "subsampled" in v.meta["note"] and "40 of 40 slices" in v.meta["note"]
    np.testing.assert_array_equal(_decode(s, v), s.pixels[display_order(s)][:, ::2, ::2])
    ras = np.asarray(v.meta["affine"])
    np.testing.assert_allclose(np.linalg.norm(ras[:3, :3], axis=0), [1.4, 1.6, 2.5])
    few = volume.describe(s, max_voxels=10 * 256 * 256)
    assert few.stride[0] > 1 and few.shape[0] * few.shape[1] * few.shape[2] <= 10 * 256 * 256


def test_four_k_radiograph_is_sent_whole_and_a_larger_one_halved():
    assert volume._strides((1, 4096, 4096), volume.MAX_VOXELS) == (1, 1, 1)
    assert volume._strides((1, 10000, 9000), volume.MAX_VOXELS) == (1, 2, 2)


def test_chunks_cover_the_volume_once_and_refuse_others():
    s = _series("axial-descending", n=30, rows=300, cols=300)
    v = volume.describe(s)
    assert v.chunk_slices * 300 * 300 * 2 <= volume.CHUNK_BYTES and v.n_chunks == -(-30 // v.chunk_slices)
    with pytest.raises(IndexError, match="does not exist"):
        volume.chunk(s, v, v.n_chunks)


def test_presets_and_default_are_the_viewers():
    from medui.ui.viewer import _presets

    class Item:
        def __init__(self, series: Series) -> None:
            self.series = series

    for s in (_series("axial-ascending"), Series(pixels=np.ones((3, 4, 4), np.float32), affine=np.eye(4),
                                                 modality="MR")):
        names = [p["name"] for p in volume.presets(s)]
        assert names == list(_presets(Item(s)))  # type: ignore[arg-type]
    no_window = _series("axial-ascending")
    no_window.window = None
    assert volume.default_preset(no_window) == "Mediastinum / soft tissue"
    assert volume.default_preset(_series("axial-ascending")) == "DICOM default"


def test_voi_lut_is_sampled_through_pydicom():
    from medui.reading.display import apply_voi_lut

    table = np.clip(np.arange(200) * 20, 0, 4095).astype(np.uint16)
    s = Series(pixels=np.arange(300, dtype=np.float32).reshape(3, 10, 10), affine=np.eye(4), modality="CR",
               voi_lut=VoiLut(first=50, table=table, bits=12), has_geometry=False)
    v = volume.describe(s)
    voi = v.meta["voi"]
    assert (voi["low"], voi["high"]) == (50.0, 249.0) and v.meta["presets"][0]["voi_lut"]
    values = np.array([[60.0, 100.0, 240.0]], np.float32)
    expected = apply_voi_lut(values, s)[0]
    k = (len(voi["greys"]) - 1) / (voi["high"] - voi["low"])
    got = [voi["greys"][round((x - voi["low"]) * k)] for x in values[0]]
    assert got == expected.tolist()
