"""The imagecodecs decoding plugin gives exactly the pixels pydicom's own plugins give."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medui.io import codecs
from medui.io.loader import load
from tests.synth import _base, jpeg_lossless_copy, phantom_volume

pytestmark = pytest.mark.skipif(not codecs.REGISTERED, reason="imagecodecs is not installed")

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-chest-covid-255"

# pydicom / pydicom-data files in the plugin's transfer syntaxes (greyscale ones use it; the
# colour one is declined and must still come back right through pydicom's plugins).
FILES = ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "MR_small_jpeg_ls_lossless.dcm",
         "emri_small_jpeg_ls_lossless.dcm", "bad_sequence.dcm", "SC_rgb_jpeg_gdcm.dcm"]


def _reference(ds: pydicom.Dataset) -> np.ndarray:
    """Pixels from pydicom's own plugins (the imagecodecs one comes last and is not reached)."""
    ds.pixel_array_options(decoding_plugin="gdcm")
    try:
        return ds.pixel_array
    finally:
        ds.pixel_array_options(decoding_plugin="")


def _with_plugin(ds: pydicom.Dataset) -> np.ndarray:
    ds.pixel_array_options(decoding_plugin=codecs.LABEL)
    try:
        return ds.pixel_array
    finally:
        ds.pixel_array_options(decoding_plugin="")


@pytest.mark.parametrize("name", FILES)
def test_plugin_matches_pydicom_on_test_files(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
        if path is None:
            pytest.skip(f"{name} is not available (pydicom-data missing)")
        ref = _reference(pydicom.dcmread(path))
        got = codecs.pixel_array(pydicom.dcmread(path))
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    ds = pydicom.dcmread(path)
    if int(ds.SamplesPerPixel) == 1:  # greyscale really went through the plugin
        np.testing.assert_array_equal(_with_plugin(ds), ref)
    else:
        with pytest.raises(RuntimeError, match="greyscale"):
            _with_plugin(ds)


@pytest.mark.parametrize("bits,signed", [(16, True), (12, True), (12, False), (16, False)])
@pytest.mark.parametrize("syntax", ["JPEGLosslessProcess14", "JPEGLosslessProcess14_1"])
def test_generated_jpeg_lossless_round_trips(tmp_path, bits, signed, syntax):
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    vol = phantom_volume(2, 48, 56).astype(np.float64)
    vol = np.clip(lo + (vol - vol.min()) / np.ptp(vol) * (hi - lo), lo, hi)
    vol[:, :4, :4] = lo  # the extremes, where a missing sign extension shows
    vol[:, -4:, -4:] = hi
    raw = []
    for k, img in enumerate(vol):
        ds = _base(generate_uid(), generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
        ds.Rows, ds.Columns = img.shape
        ds.PixelData = img.astype("<i2" if signed else "<u2").tobytes()
        raw.append(tmp_path / f"raw{k}.dcm")
        ds.save_as(raw[-1], enforce_file_format=True)
    for k, path in enumerate(raw):
        ds = pydicom.dcmread(jpeg_lossless_copy(path, tmp_path / f"j{k}.dcm", syntax))
        assert ds.file_meta.TransferSyntaxUID.is_compressed
        got = _with_plugin(ds)  # no silent fallback here
        np.testing.assert_array_equal(got, vol[k].astype(got.dtype))
        np.testing.assert_array_equal(codecs.pixel_array(ds), got)
        np.testing.assert_array_equal(got, _reference(pydicom.dcmread(tmp_path / f"j{k}.dcm")))


def test_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("MEDUI_DECODER", "pydicom")
    assert not codecs.enabled()
    ds = pydicom.dcmread(get_testdata_file("JPEG-LL.dcm"))
    np.testing.assert_array_equal(codecs.pixel_array(ds), _reference(pydicom.dcmread(get_testdata_file("JPEG-LL.dcm"))))


def test_a_damaged_stream_is_reported_not_raised(tmp_path):
    data = bytearray(Path(get_testdata_file("JPEG-LL.dcm")).read_bytes())
    cut = data[: len(data) - len(data) // 3]  # truncated inside the pixel data
    result = load([("cut.dcm", bytes(cut))])
    assert not result.series and result.skipped and "decoded" in result.skipped[0].reason


@pytest.mark.slow
def test_real_compressed_ct_identical_to_gdcm():
    if not SHARED_CT.is_dir():
        pytest.skip("../shared/data/ct-chest-covid-255 is absent")
    for path in sorted(SHARED_CT.glob("*.dcm"))[::5]:
        ds = pydicom.dcmread(path)
        np.testing.assert_array_equal(_with_plugin(ds), _reference(pydicom.dcmread(path)))
