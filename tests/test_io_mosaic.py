"""Siemens MOSAIC and UIH grids: de-tiling, placement against nibabel's MosaicWrapper and dcm2niix, tile order,
several mosaic files of one series as separate volumes, and malformed mosaic headers."""

from __future__ import annotations

import gzip
import subprocess
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medui.io.loader import load
from tests.synth import write_mosaic, write_uih_mosaic
from tests.test_io_formats import LPS, _canonical, _dcm2niix

NIBABEL_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"
DWI = ("siemens_dwi_0.dcm.gz", "siemens_dwi_1000.dcm.gz")


def _siemens(tmp_path: Path, names: tuple[str, ...] = DWI) -> Path:
    folder = tmp_path / "dwi"
    folder.mkdir()
    for name in names:
        (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress((NIBABEL_DATA / name).read_bytes()))
    return folder


def _wrapper(path: Path):  # type: ignore[no-untyped-def]
    from nibabel.nicom import dicomwrappers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "DICOM readers are highly experimental"
        return dicomwrappers.wrapper_from_file(str(path))


def test_siemens_dwi_mosaics_match_nibabel(tmp_path):
    folder = _siemens(tmp_path)
    result = load([folder])
    assert result.skipped == []
    assert len(result.series) == 2  # two files, two volumes (b=0 and b=1000), not one interleaved stack
    for s, name, k in zip(result.series, ("siemens_dwi_0.dcm", "siemens_dwi_1000.dcm"), (1, 2), strict=True):
        assert s.files[0].endswith(name)
        assert s.pixels.shape == (48, 128, 128)  # 896 / ceil(sqrt(48)) = 128
        assert f"mosaic of 48 slices, volume {k} of 2" in s.description
        assert s.has_geometry and s.warnings == []
        w = _wrapper(folder / name)
        ref = np.asarray(w.get_data(), np.float32)  # (rows, cols, slices)
        np.testing.assert_array_equal(s.pixels, np.transpose(ref, (2, 0, 1)))
        # nibabel's affine maps (row, col, slice); ours (slice, row, col); both LPS
        np.testing.assert_allclose(s.affine[:3, [1, 2, 0, 3]], w.affine[:3], atol=1e-4)


def _dcm2niix_volume(folder: Path, out: Path) -> Any:
    """dcm2niix's NIfTI of the one series in `folder` (the reference geometry), loaded with nibabel."""
    out.mkdir()
    subprocess.run([_dcm2niix(), "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    return nib.load(next(out.glob("*.nii")))


def test_siemens_dwi_mosaic_matches_dcm2niix(tmp_path):
    folder = _siemens(tmp_path, DWI[1:])
    ours = load([folder]).series[0]
    ref = _dcm2niix_volume(folder, tmp_path / "nii")
    ref_data, ref_aff = _canonical(np.squeeze(ref.get_fdata(dtype=np.float32)), ref.affine)
    our_data, our_aff = _canonical(ours.pixels, LPS @ ours.affine)
    assert our_data.shape == ref_data.shape
    np.testing.assert_allclose(our_aff, ref_aff, atol=1e-3)
    np.testing.assert_array_equal(our_data, ref_data)


def test_generated_mosaic_tile_order_and_position(tmp_path):
    tiles = np.stack([np.full((6, 8), 100 + k, np.int16) for k in range(7)])  # 7 slices on a 3x3 grid
    tiles[:, 0, 0] = -5  # a corner marker: rows and columns keep their direction
    path = write_mosaic(tmp_path / "m.dcm", tiles, spacing=(2.0, 1.5), slice_step=4.0)
    s = load([path]).series[0]
    assert s.pixels.shape == (7, 6, 8)
    assert [float(s.pixels[k, 3, 3]) for k in range(7)] == [100.0 + k for k in range(7)]
    assert np.all(s.pixels[:, 0, 0] == -5)
    # ImagePositionPatient is the mosaic's top-left: slice 0 moves by half the grid less one tile
    first = np.array([-100.0, -80.0, 20.0]) + np.array([0, 2.0, 0]) * (18 - 6) / 2 \
        + np.array([1.5, 0, 0]) * (24 - 8) / 2
    np.testing.assert_allclose(s.affine[:3, 3], first)
    np.testing.assert_allclose(s.affine[:3, 0], [0, 0, 4.0])
    np.testing.assert_allclose(s.affine[:3, 1], [0, 2.0, 0])
    np.testing.assert_allclose(s.affine[:3, 2], [1.5, 0, 0])


def test_mosaic_volumes_of_one_series_in_instance_order(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.999"
    for t in (3, 1, 2):  # an fMRI run: one file per time point, written out of order
        tiles = np.stack([np.full((4, 4), 10 * t + k, np.int16) for k in range(4)])
        write_mosaic(tmp_path / f"t{t}.dcm", tiles, series_uid=uid, instance=t)
    series = load([tmp_path]).series
    assert [s.description for s in series] == [f"mosaic (mosaic of 4 slices, volume {t} of 3)" for t in (1, 2, 3)]
    assert [float(s.pixels[0, 0, 0]) for s in series] == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("case", ["n_too_large", "n_huge", "n_zero", "non_square", "no_orientation", "no_count"])
def test_malformed_mosaic_is_read_as_plain_image_with_a_warning(tmp_path, case):
    tiles = np.stack([np.full((4, 6), k, np.int16) for k in range(4)])  # 2x2 grid: 8x12
    kwargs: dict = {}
    if case == "n_too_large":
        kwargs["n_declared"] = 9  # a 3x3 grid, which 8x12 pixels do not divide into
    elif case == "n_huge":
        kwargs["n_declared"] = 65535
    elif case == "n_zero":
        kwargs["n_declared"] = 0
    elif case == "non_square":
        kwargs["rows_cols"] = (8, 13)
    elif case == "no_orientation":
        kwargs["orientation"] = False
    path = write_mosaic(tmp_path / "bad.dcm", tiles, **kwargs)
    if case == "no_count":
        import pydicom

        ds = pydicom.dcmread(path)
        del ds[0x0019, 0x100A]
        ds.save_as(path)
    result = load([path])
    assert result.skipped == []
    s = result.series[0]
    assert s.pixels.shape[0] == 1 and s.pixels.shape[1:] == ((8, 13) if case == "non_square" else (8, 12))
    assert any("MOSAIC image" in w and "2-D image" in w for w in s.warnings), s.warnings


def test_mosaics_decoded_in_worker_processes_match_one_process(tmp_path, monkeypatch):
    from medui.io import parallel

    folder = _siemens(tmp_path)
    monkeypatch.setenv("MEDUI_DECODE_WORKERS", "1")
    single = load([folder]).series
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 2)
    monkeypatch.setattr(parallel, "_is_compressed", lambda src: True)
    monkeypatch.setenv("MEDUI_DECODE_WORKERS", "2")
    result = load([folder])
    assert result.workers == 2, result.summary()
    assert [s.description for s in result.series] == [s.description for s in single]
    for pooled, one in zip(result.series, single, strict=True):
        np.testing.assert_array_equal(pooled.pixels, one.pixels)
        np.testing.assert_array_equal(pooled.affine, one.affine)


def test_oblique_csa_mosaic_header_placed_like_nibabel():
    """csa_slice_norm.dcm: an oblique 32-slice mosaic header (no pixels) with a CSA SliceNormalVector."""
    import pydicom

    from medui.io.geometry import frame_geometries, stack_affine
    from medui.io.mosaic import layout

    path = NIBABEL_DATA / "csa_slice_norm.dcm"
    ds = pydicom.dcmread(path)
    mosaic, geoms, notes = layout(ds, 1, frame_geometries(ds, 1))
    assert mosaic is not None and (mosaic.n, mosaic.tile_rows, mosaic.tile_cols, mosaic.grid) == (32, 64, 64, 6)
    assert notes == []
    affine, _, _ = stack_affine(geoms)
    np.testing.assert_allclose(affine[:3, [1, 2, 0, 3]], _wrapper(path).affine[:3], atol=1e-4)
    # the whole load reports the missing pixels instead of failing
    result = load([path])
    assert result.series == [] and "no Pixel Data" in result.skipped[0].reason


def test_garbage_csa_header_falls_back_to_the_private_tag(tmp_path):
    import pydicom

    tiles = np.stack([np.full((4, 6), k, np.int16) for k in range(4)])
    path = write_mosaic(tmp_path / "m.dcm", tiles)
    ds = pydicom.dcmread(path)
    ds.add_new((0x0029, 0x0010), "LO", "SIEMENS CSA HEADER")
    ds.add_new((0x0029, 0x1010), "OB", b"SV10\x04\x03\x02\x01" + bytes(range(256)) * 3)
    ds.save_as(path)
    s = load([path]).series[0]
    assert s.pixels.shape == (4, 4, 6)
    assert [float(s.pixels[k, 0, 0]) for k in range(4)] == [0.0, 1.0, 2.0, 3.0]


def test_csa_normal_against_the_orientation_is_placed_like_dcm2niix_and_nibabel(tmp_path):
    """SliceNormalVector opposite to the cross product of ImageOrientationPatient (dcm2niix's
    'negative determinant' mosaics, e.g. Siemens sagittal): tile k lies k spacings along the CSA normal."""
    import pydicom

    folder = _siemens(tmp_path, DWI[1:])
    path = folder / "siemens_dwi_1000.dcm"
    ds = pydicom.dcmread(path)
    csa = ds[0x0029, 0x1010].value  # the CSA items are text: negate the normal in place (same lengths)
    assert csa.count(b"0.00523632") == 1 and csa.count(b"0.99998629") == 1
    ds[0x0029, 0x1010].value = csa.replace(b"0.00523632", b"-0.0052363").replace(b"0.99998629", b"-0.9999863")
    ds.save_as(path)
    ours = load([folder]).series[0]
    assert ours.pixels.shape == (48, 128, 128) and ours.warnings == []
    our_data, our_aff = _canonical(ours.pixels, LPS @ ours.affine)
    w = _wrapper(path)
    assert w.slice_normal[2] < 0
    nib_data, nib_aff = _canonical(np.asarray(w.get_data(), np.float32), LPS @ w.affine)
    np.testing.assert_allclose(our_aff, nib_aff, atol=1e-4)
    np.testing.assert_array_equal(our_data, nib_data)
    ref = _dcm2niix_volume(folder, tmp_path / "nii")
    ref_data, ref_aff = _canonical(np.squeeze(ref.get_fdata(dtype=np.float32)), ref.affine)
    np.testing.assert_allclose(our_aff, ref_aff, atol=1e-3)
    np.testing.assert_array_equal(our_data, ref_data)


def test_mosaic_without_position_is_cut_in_tile_order(tmp_path):
    import pydicom

    tiles = np.stack([np.full((4, 6), 7 - k, np.int16) for k in range(5)])
    path = write_mosaic(tmp_path / "m.dcm", tiles)
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.save_as(path)
    s = load([path]).series[0]
    assert s.pixels.shape == (5, 4, 6)
    assert [float(s.pixels[k, 1, 1]) for k in range(5)] == [7.0, 6.0, 5.0, 4.0, 3.0]
    assert "MR · mosaic (mosaic of 5 slices) · 5 x 4x6" in s.summary()
    assert any("no slice positions" in w for w in s.warnings), s.warnings


# --- UIH (United Imaging) grids: dcm2niix is the reference (nibabel does not read them) -----------------

UIH_CASES = {  # name: (orientation, whether dcm2niix's guess negates the normal of the orientation)
    "axial": (((1, 0, 0), (0, 1, 0)), False),
    "sagittal": (((0, 1, 0), (0, 0, -1)), True),  # normal (-1, 0, 0): components sum below 0
    "oblique": (((0.8, 0.6, 0), (0, 0, -1)), False),  # normal (-0.6, 0.8, 0)
}


def _uih_tiles(n: int = 7) -> np.ndarray:
    tiles = np.stack([np.full((6, 8), 100 + k, np.int16) for k in range(n)])  # 7 slices: 3 rows of 3 tiles
    tiles[:, 0, 0] = -5  # a corner marker: rows and columns keep their direction
    return tiles


@pytest.mark.parametrize("case", list(UIH_CASES))
def test_generated_uih_grid_tile_order_size_and_position(tmp_path, case):
    (row_cos, col_cos), negated = UIH_CASES[case]
    path = write_uih_mosaic(tmp_path / "u.dcm", _uih_tiles(), spacing=(2.0, 1.5), slice_step=4.0,
                            row_cos=row_cos, col_cos=col_cos)
    s = load([path]).series[0]
    assert s.pixels.shape == (7, 6, 8)  # 24x24 pixels: ceil(sqrt(7)) = 3 tiles a row, ceil(7 / 3) = 3 rows
    values = [float(s.pixels[i, 3, 3]) for i in range(7)]  # the stack is sorted along the orientation's normal
    assert values == [100.0 + k for k in (range(6, -1, -1) if negated else range(7))]
    assert np.all(s.pixels[:, 0, 0] == -5) and np.all(s.pixels[:, 5, 7] != -5)
    assert "mosaic of 7 slices" in s.description
    assert any("UIH grid" in w and "dcm2niix" in w for w in s.warnings), s.warnings
    # tile k sits at ImagePositionPatient (the first tile's own top-left voxel: no mosaic correction) plus
    # k spacings along the normal, negated where dcm2niix's guess negates it
    normal = np.cross(row_cos, col_cos) * (-1 if negated else 1)
    for i, v in enumerate(values):
        np.testing.assert_allclose((s.affine @ [i, 0, 0, 1])[:3],
                                   np.array([-100.0, -80.0, 20.0]) + (v - 100) * 4.0 * normal, atol=1e-6)
    np.testing.assert_allclose(s.affine[:3, 2], 1.5 * np.asarray(row_cos, float), atol=1e-6)


def test_uih_grid_of_twenty_is_four_rows_of_five(tmp_path):
    """dcm2niix nii_demosaic: 'Siemens store 20 images as 5x5 grid, UIH as 5rows, 4 Col' (issue 225)."""
    tiles = np.stack([np.full((4, 6), k, np.int16) for k in range(20)])
    path = write_uih_mosaic(tmp_path / "u.dcm", tiles)
    import pydicom

    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (4 * 4, 5 * 6)
    s = load([path]).series[0]
    assert s.pixels.shape == (20, 4, 6)
    assert [float(s.pixels[k, 1, 1]) for k in range(20)] == [float(k) for k in range(20)]


@pytest.mark.parametrize(("case", "n"), [(case, 7) for case in UIH_CASES] + [("oblique", 20)])
def test_uih_grid_matches_dcm2niix(tmp_path, case, n):
    (row_cos, col_cos), _ = UIH_CASES[case]
    folder = tmp_path / "uih"
    folder.mkdir()
    write_uih_mosaic(folder / "u.dcm", _uih_tiles(n), spacing=(2.0, 1.5), slice_step=4.0,
                     row_cos=row_cos, col_cos=col_cos)  # 7: 3 rows of 3 tiles; 20: 4 rows of 5
    ours = load([folder]).series[0]
    ref = _dcm2niix_volume(folder, tmp_path / "nii")
    assert ref.shape == (8, 6, n)  # dcm2niix cut the same n tiles of 6x8
    ref_data, ref_aff = _canonical(np.squeeze(ref.get_fdata(dtype=np.float32)), ref.affine)
    our_data, our_aff = _canonical(ours.pixels, LPS @ ours.affine)
    assert our_data.shape == ref_data.shape
    np.testing.assert_allclose(our_aff, ref_aff, atol=1e-3)
    np.testing.assert_array_equal(our_data, ref_data)


@pytest.mark.parametrize("declared", ["9", "0", "-3", "65535", "1e9", "4.5", "four", "", "4\\4"])
def test_malformed_uih_grid_is_read_as_plain_image_with_a_warning(tmp_path, declared):
    tiles = np.stack([np.full((4, 6), k, np.int16) for k in range(4)])  # 2x2 grid: 8x12
    path = write_uih_mosaic(tmp_path / "bad.dcm", tiles, n_declared=declared)  # 9: a 3x3 grid
    result = load([path])
    assert result.skipped == []
    s = result.series[0]
    assert s.pixels.shape == (1, 8, 12)
    assert any("UIH grid" in w and "2-D image" in w for w in s.warnings), s.warnings


def test_uih_grid_of_one_and_other_makers_are_plain_images(tmp_path):
    one = write_uih_mosaic(tmp_path / "one.dcm", np.full((1, 4, 6), 3, np.int16))
    other = write_uih_mosaic(tmp_path / "other.dcm", _uih_tiles(4), manufacturer="ACME")  # tag, but not UIH
    for path, shape in ((one, (1, 4, 6)), (other, (1, 12, 16))):
        s = load([path]).series[0]
        assert s.pixels.shape == shape
        assert not any("UIH" in w or "MOSAIC" in w for w in s.warnings), s.warnings
        assert "mosaic" not in s.description


def test_uih_grids_of_one_series_are_volumes_in_instance_order(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.998"
    for t in (2, 1):  # an fMRI run: one grid per time point, written out of order
        tiles = np.stack([np.full((4, 4), 10 * t + k, np.int16) for k in range(5)])
        write_uih_mosaic(tmp_path / f"t{t}.dcm", tiles, series_uid=uid, instance=t)
    series = load([tmp_path]).series
    assert [s.description for s in series] == [f"uih grid (mosaic of 5 slices, volume {t} of 2)" for t in (1, 2)]
    assert [s.pixels.shape for s in series] == [(5, 4, 4)] * 2
    assert [float(s.pixels[0, 0, 0]) for s in series] == [10.0, 20.0]
