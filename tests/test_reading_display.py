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
