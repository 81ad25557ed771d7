"""Display records and maths: plane views, VOI LUT / VOI LUT function, the cached value range."""

from __future__ import annotations

import numpy as np
from pydicom.data import get_testdata_file

from medui.io.loader import load
from medui.reading.display import plane_view
from tests.synth import phantom_volume, write_series


def test_single_dicom_slice_native_view_is_not_approximate():
    s = load([get_testdata_file("CT_small.dcm")]).series[0]
    assert s.has_geometry and not s.is_volume
    view = plane_view(s, "native", 0)
    assert view.approximate is False, "a single CT slice is shown as acquired, not 'on the nearest axes'"
    assert view.vertical_up is False and view.n_slices == 1


def test_oblique_volume_is_still_flagged_approximate(tmp_path):
    a = np.deg2rad(20)
    write_series(tmp_path, phantom_volume(5), row_cos=(np.cos(a), np.sin(a), 0.0), col_cos=(0.0, 0.0, -1.0))
    s = load([tmp_path]).series[0]
    assert plane_view(s, "axial", 0).approximate is True
    straight = tmp_path / "straight"
    write_series(straight, phantom_volume(5))
    assert plane_view(load([straight]).series[0], "coronal", 3).approximate is False


def test_value_range_is_computed_once(monkeypatch):
    from medui.series import Series

    s = Series(pixels=np.array([[[-5.0, 3.0]]], np.float32), affine=np.eye(4))
    calls = []
    real_min = np.min
    monkeypatch.setattr(np, "min", lambda *a, **k: calls.append(1) or real_min(*a, **k))
    assert s.value_range == (-5.0, 3.0)
    assert s.value_range == (-5.0, 3.0) and s.to_json()["value_range"] == [-5.0, 3.0]
    assert len(calls) == 1, f"np.min ran {len(calls)} times for one series"
    s.pixels = np.zeros((0, 0, 0), np.float32)  # what the UI's 'Clear all' does
    assert s.value_range == (-5.0, 3.0) and s.n_slices == 0


def _voi_file(path, values: np.ndarray, **attrs) -> None:
    """A one-slice unsigned 16-bit MR image with the given VOI attributes (no rescale)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.Rows, ds.Columns = values.shape
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = values.astype("<u2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_voi_lut_scales_by_its_output_range_not_its_maximum(tmp_path):
    from pydicom.dataset import Dataset

    from medui.reading.display import render
    from medui.series import Window

    values = np.array([[0, 1024, 2048, 4095]], np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])
    item.add_new(0x00283006, "US", (np.arange(4096) * 4).tolist())  # 0..16380: a quarter of 0..65535
    _voi_file(tmp_path / "lut.dcm", values, VOILUTSequence=[item])
    s = load([tmp_path / "lut.dcm"]).series[0]
    u8 = render(s, plane_view(s, "native", 0), Window(0, 1), False, use_voi_lut=True)
    expected = np.rint(values.astype(float) * 4 * 255 / 65535)
    assert int(u8.max()) <= 64, f"a LUT using a quarter of its range shows {int(u8.max())} (full white is 255)"
    np.testing.assert_allclose(u8.astype(int), expected.astype(int), atol=1)
    inverted = render(s, plane_view(s, "native", 0), Window(0, 1), True, use_voi_lut=True)
    np.testing.assert_array_equal(inverted, 255 - u8)


def test_sigmoid_window_follows_the_dicom_formula(tmp_path):
    from medui.reading.display import default_window, render

    values = np.array([[0, 600, 800, 1000, 1200, 1400, 4095]], np.uint16)
    _voi_file(tmp_path / "sig.dcm", values, WindowCenter=1000, WindowWidth=400, VOILUTFunction="SIGMOID")
    s = load([tmp_path / "sig.dcm"]).series[0]
    window = default_window(s)
    u8 = render(s, plane_view(s, "native", 0), window, False)
    expected = 255.0 / (1 + np.exp(-4 * (values.astype(float) - 1000) / 400))  # PS3.3 C.11.2.1.3.1
    np.testing.assert_allclose(u8.astype(float), expected, atol=1.0)
    assert u8[0, 3] in (127, 128) and u8[0, 1] > 0  # a sigmoid never reaches black inside the window's reach
