"""DICOM reading: ordering, geometry, multi-frame, transfer syntaxes, colour and non-image objects."""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medui.io.loader import load
from medui.io.sources import Limits
from tests.synth import phantom_volume, write_enhanced, write_series


def _only(result):
    assert len(result.series) == 1, [s.summary() for s in result.series]
    return result.series[0]


def test_shuffled_files_are_ordered_by_position(tmp_path):
    vol = phantom_volume(12)
    order = list(range(12))
    random.Random(3).shuffle(order)
    write_series(tmp_path, vol, order=order)
    s = _only(load([tmp_path]))
    np.testing.assert_array_equal(s.pixels, vol.astype(np.float32) - 1024)
    np.testing.assert_allclose(s.affine[:3, 3], (-100, -120, 50))
    np.testing.assert_allclose(s.affine[:3, 0], (0, 0, 2.5))
    np.testing.assert_allclose(s.spacing, (2.5, 0.7, 0.8))
    assert s.modality == "CT" and s.window is not None and s.window.width == 400
    assert s.warnings == []


def test_descending_stack_is_sorted_along_the_normal(tmp_path):
    vol = phantom_volume(8)
    write_series(tmp_path, vol, slice_step=-2.0)  # file k sits 2 mm *below* file k-1
    s = _only(load([tmp_path]))
    np.testing.assert_array_equal(s.pixels, vol[::-1].astype(np.float32) - 1024)
    np.testing.assert_allclose(s.affine[:3, 0], (0, 0, 2.0))
    np.testing.assert_allclose(s.affine[2, 3], 50 - 7 * 2.0)


def test_oblique_stack_affine(tmp_path):
    a = np.deg2rad(30)
    row_cos = (np.cos(a), np.sin(a), 0.0)
    col_cos = (0.0, 0.0, -1.0)  # oblique sagittal-ish
    vol = phantom_volume(6)
    write_series(tmp_path, vol, row_cos=row_cos, col_cos=col_cos, slice_step=1.5)
    s = _only(load([tmp_path]))
    normal = np.cross(row_cos, col_cos)
    np.testing.assert_allclose(s.affine[:3, 2], np.asarray(row_cos) * 0.8, atol=1e-5)
    np.testing.assert_allclose(s.affine[:3, 1], np.asarray(col_cos) * 0.7, atol=1e-5)
    np.testing.assert_allclose(s.affine[:3, 0], normal * 1.5, atol=1e-5)


def test_gantry_tilt_is_reported(tmp_path):
    vol = phantom_volume(6)
    positions = [(-100.0, -120.0 + k * 0.5, 50.0 + k * 2.5) for k in range(6)]  # 11 degree tilt
    write_series(tmp_path, vol, positions=positions)
    s = _only(load([tmp_path]))
    assert any("gantry tilt of 11.3 degrees" in w for w in s.warnings), s.warnings


def test_missing_slice_and_irregular_spacing_are_reported(tmp_path):
    vol = phantom_volume(10)
    paths = write_series(tmp_path / "gap", vol)
    paths[4].unlink()
    s = _only(load([tmp_path / "gap"]))
    assert s.n_slices == 9
    assert any("missing slice" in w and "about 1 slice" in w for w in s.warnings), s.warnings
    positions = [(-100.0, -120.0, 50.0 + z) for z in (0, 2.5, 5.0, 7.2, 9.9, 12.5)]
    write_series(tmp_path / "irregular", phantom_volume(6), positions=positions)
    s = _only(load([tmp_path / "irregular"]))
    assert any("irregular slice spacing" in w for w in s.warnings), s.warnings


def test_two_series_in_one_folder_and_orientation_split(tmp_path):
    write_series(tmp_path, phantom_volume(5, seed=1), name="a", description="first")
    write_series(tmp_path, phantom_volume(7, seed=2), name="b", description="second")
    uid = pydicom.uid.generate_uid()
    write_series(tmp_path, phantom_volume(4, seed=3), name="c", series_uid=uid)
    write_series(tmp_path, phantom_volume(3, seed=4), name="d", series_uid=uid, row_cos=(0, 1, 0), col_cos=(0, 0, -1))
    result = load([tmp_path])
    sizes = sorted(s.n_slices for s in result.series)
    assert sizes == [3, 4, 5, 7]


def test_enhanced_multiframe_uses_functional_groups(tmp_path):
    vol = phantom_volume(9)
    order = [4, 0, 8, 2, 6, 1, 3, 7, 5]
    path = write_enhanced(tmp_path / "enh.dcm", vol, frame_order=order)
    s = _only(load([path]))
    np.testing.assert_array_equal(s.pixels, vol.astype(np.float32) - 1024)
    np.testing.assert_allclose(s.affine[:3, 0], (0, 0, 3.0))
    np.testing.assert_allclose(s.spacing, (3.0, 0.7, 0.8))


def test_every_transfer_syntax_decodes_to_the_same_pixels():
    names = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
             "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_expb.dcm"]
    ref = None
    for name in names:
        s = _only(load([get_testdata_file(name)]))
        if ref is None:
            ref = s.pixels
        np.testing.assert_array_equal(s.pixels, ref, err_msg=name)


@pytest.mark.parametrize("name", ["JPGLosslessP14SV1_1s_1f_8b.dcm", "693_J2KR.dcm", "emri_small_jpeg_2k_lossless.dcm",
                                  "image_dfl.dcm", "JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_compressed_files_load(name):
    path = get_testdata_file(name)
    assert path, f"{name} missing: install requirements-test.txt (pydicom-data)"
    s = _only(load([path]))
    assert s.pixels.dtype == np.float32 and np.isfinite(s.pixels).all()
    assert s.pixels.std() > 0


def test_lossless_jpeg2000_matches_uncompressed():
    a = _only(load([get_testdata_file("693_J2KR.dcm")]))
    b = _only(load([get_testdata_file("693_UNCR.dcm")]))
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_ct_hounsfield_units():
    s = _only(load([get_testdata_file("CT_small.dcm")]))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(s.pixels[0], expected.astype(np.float32))
    assert s.modality == "CT"


def test_colour_ybr_rgb_and_palette():
    rgb = _only(load([get_testdata_file("SC_rgb.dcm")]))
    ybr = _only(load([get_testdata_file("SC_ybr_full_uncompressed.dcm")]))
    assert rgb.is_color and ybr.is_color and rgb.photometric == "RGB"
    assert np.abs(rgb.pixels - ybr.pixels).max() <= 8  # YBR converted to RGB (rounding)
    pal = _only(load([get_testdata_file("examples_palette.dcm")]))
    assert pal.is_color and pal.pixels.shape[-1] == 3 and pal.pixels.max() <= 255
    cine = _only(load([get_testdata_file("examples_ybr_color.dcm")]))
    assert cine.pixels.shape == (30, 240, 320, 3)


def test_multiframe_without_positions():
    s = _only(load([get_testdata_file("emri_small.dcm")]))
    assert s.pixels.shape == (10, 64, 64)
    assert any("no slice positions" in w for w in s.warnings)


def test_voi_lut_and_monochrome1(tmp_path):
    s = _only(load([get_testdata_file("vlut_04.dcm")]))
    assert s.voi_lut is not None and len(s.voi_lut.table) > 0
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    s = _only(load([tmp_path / "m1.dcm"]))
    assert s.photometric == "MONOCHROME1"


def test_non_images_are_skipped_with_a_note():
    files = [get_testdata_file(n) for n in ("test-SR.dcm", "rtstruct.dcm", "rtplan.dcm", "CT_small.dcm")]
    files.append(get_testdata_file("DICOMDIR"))
    result = load(files)
    assert len(result.series) == 1
    reasons = {k.file: k.reason for k in result.skipped}
    assert "structured report" in reasons["test-SR.dcm"]
    assert "RT structure set" in reasons["rtstruct.dcm"]
    assert "DICOMDIR" in reasons["DICOMDIR"]


def test_bad_file_among_good_ones(tmp_path):
    write_series(tmp_path, phantom_volume(4))
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage" * 10)
    (tmp_path / "notes.txt").write_text("hello")
    truncated = get_testdata_file("MR_truncated.dcm")
    result = load([tmp_path, truncated])
    assert sorted(s.n_slices for s in result.series) == [4]
    reasons = {k.file.split("/")[-1]: k.reason for k in result.skipped}
    assert set(reasons) == {"broken.dcm", "notes.txt", "MR_truncated.dcm"}
    assert "could not be decoded" in reasons["MR_truncated.dcm"]


def test_memory_cap_refuses_before_decoding(tmp_path):
    write_series(tmp_path, phantom_volume(3, rows=64, cols=64))
    result = load([tmp_path], Limits(max_image_bytes=10_000))
    assert not result.series
    assert all("memory" in k.reason and "MEDUI_MAX_IMAGE_MB" in k.reason for k in result.skipped)
    result = load([tmp_path], Limits(max_series_bytes=20_000))
    assert not result.series and "MEDUI_MAX_SERIES_MB" in result.skipped[0].reason


def test_header_masks_identifying_attributes(tmp_path):
    from medui.reading import header as deid

    write_series(tmp_path, phantom_volume(2))
    s = _only(load([tmp_path]))
    masked = {r["attribute"]: r["value"] for r in deid.table(s.header)}
    revealed = {r["attribute"]: r["value"] for r in deid.table(s.header, reveal=True)}
    assert masked["PatientName"] == deid.MASK and revealed["PatientName"] == "Doe^Jane"
    assert masked["PatientID"] == deid.MASK and masked["PatientBirthDate"] == deid.MASK
    assert masked["Modality"] == "CT" and masked["Rows"] == "32"



def test_header_rows_are_raw_and_masked_only_for_display(tmp_path):
    from medui.reading import header as deid

    write_series(tmp_path, phantom_volume(1))
    s = _only(load([tmp_path]))
    rows = {r.keyword: r for r in s.header}
    assert rows["PatientName"].value == "Doe^Jane" and not rows["PatientName"].private
    assert {r["attribute"]: r["value"] for r in deid.table(s.header, False)}["PatientName"] == deid.MASK
