"""Many-frame DICOM objects: native frames are grouped, sorted, rescaled and placed as arrays (no
per-frame Python work), frames handled one by one (compressed, per-frame functional groups) are
capped, and the vectorised code gives the same answers as the frame-by-frame code it replaced."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless

from medui.io import dicom_grouping
from medui.io.decode import Decoded, write_frames
from medui.io.geometry import FrameGeom, FrameTable, stack_affine
from medui.io.loader import load
from medui.io.spacing import MIN_RUN, _runs
from medui.reading.display import slice_position_mm, slice_positions_mm
from tests.hostile_corpus import _encapsulated, _frames, _offsets, _orientations, _set, dicom


def _values(n: int) -> np.ndarray:
    return (np.arange(n) % 251).astype(np.float32)  # what _frames stores, as modality values (slope 1)


def test_200k_native_frames_load_with_their_values():
    start = time.perf_counter()
    result = load([("many.dcm", _frames(200_000))])
    assert time.perf_counter() - start < 5  # a hang guard; the speed is measured by bench/bench_hostile.py
    (series,) = result.series
    assert series.pixels.shape == (200_000, 1, 1)
    np.testing.assert_array_equal(series.pixels[:, 0, 0], _values(200_000) - 1024)  # RescaleIntercept -1024


def test_2m_native_frames_are_charged_to_the_budget_with_their_bookkeeping(monkeypatch):
    monkeypatch.setenv("MEDUI_MAX_LOAD_MB", "64")
    result = load([("huge.dcm", _frames(2_000_000))])
    assert not result.series
    assert "2000000 frame(s)" in result.skipped[0].reason and "MEDUI_MAX_LOAD_MB" in result.skipped[0].reason


def test_grid_offsets_place_and_sort_frames_given_out_of_order():
    order = np.random.default_rng(3).permutation(5000)
    (series,) = load([("dose.dcm", _frames(5000, _offsets(order * 2.0)))]).series
    # frame k lies at 2*order[k] mm: sorted by position, slot j holds the frame whose offset is 2j
    expected = _values(5000)[np.argsort(order)] - 1024
    np.testing.assert_array_equal(series.pixels[:, 0, 0], expected)
    assert np.allclose(series.affine[:3, 0], [0, 0, 2]) and not series.warnings


def test_two_frames_per_position_make_two_stacks():
    result = load([("echoes.dcm", _frames(1000, _offsets(np.arange(1000) // 2)))])
    assert [s.n_slices for s in result.series] == [500, 500]
    first, second = (s.pixels[:, 0, 0] + 1024 for s in result.series)
    np.testing.assert_array_equal(first, _values(1000)[0::2])
    np.testing.assert_array_equal(second, _values(1000)[1::2])


def test_thousands_of_frames_at_one_position_stay_one_stack_in_file_order():
    (series,) = load([("cine.dcm", _frames(dicom_grouping.MAX_SPLIT + 1, _offsets(np.zeros(257))))]).series
    np.testing.assert_array_equal(series.pixels[:, 0, 0] + 1024, _values(257))


def test_frames_in_too_many_orientations_are_refused():
    result = load([("radial.dcm", _frames(300, _orientations(300)))])
    assert not result.series and "300 different orientations" in result.skipped[0].reason


def test_frames_in_a_few_orientations_make_a_stack_each():
    def three_orientations(ds: Dataset) -> None:
        groups = []
        for k in range(6):
            fg, po, pp = Dataset(), Dataset(), Dataset()
            po.ImageOrientationPatient = [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1]][k % 3]
            pp.ImagePositionPatient = [float(k), float(k), float(k)]
            fg.PlaneOrientationSequence, fg.PlanePositionSequence = Sequence([po]), Sequence([pp])
            groups.append(fg)
        ds.PerFrameFunctionalGroupsSequence = Sequence(groups)

    result = load([("three.dcm", _frames(6, three_orientations))])
    assert [s.n_slices for s in result.series] == [2, 2, 2]
    assert [list(s.pixels[:, 0, 0] + 1024) for s in result.series] == [[0, 3], [4, 1], [2, 5]]  # along each normal


def test_compressed_frames_over_the_cap_are_refused_at_once(monkeypatch):
    monkeypatch.setenv("MEDUI_MAX_FRAMES", "50")
    frame = b"\x01\x00\x00\x00" + (64).to_bytes(4, "little") + b"\x00" * 56 + b"\x00\x07"
    result = load([("rle.dcm", _frames(51, syntax=RLELossless, pixel=_encapsulated([frame] * 51)))])
    assert "NumberOfFrames (0028,0008) = 51 of compressed pixel data" in result.skipped[0].reason
    assert "MEDUI_MAX_FRAMES" in result.skipped[0].reason
    (series,) = load([("rle.dcm", _frames(50, syntax=RLELossless, pixel=_encapsulated([frame] * 50)))]).series
    np.testing.assert_array_equal(series.pixels[:, 0, 0], np.full(50, 7 - 1024, np.float32))


def _per_frame(n: int, slope: float = 1.0) -> object:
    def mutate(ds: Dataset) -> None:
        groups = []
        for k in range(n):
            fg, pp, pv = Dataset(), Dataset(), Dataset()
            pp.ImagePositionPatient = [0, 0, float(n - k)]  # stored last slice first
            pv.RescaleSlope, pv.RescaleIntercept = slope * (k + 1), -k
            fg.PlanePositionSequence, fg.PixelValueTransformationSequence = Sequence([pp]), Sequence([pv])
            groups.append(fg)
        ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    return mutate


def test_per_frame_functional_groups_place_and_rescale_each_frame():
    (series,) = load([("enhanced.dcm", _frames(40, _per_frame(40)))]).series
    k = np.arange(40)
    stored = _values(40) * (k + 1) - k  # frame k: value * (k + 1) - k, at z = 40 - k
    np.testing.assert_array_equal(series.pixels[:, 0, 0], stored[::-1])
    assert np.allclose(series.affine[:3, 0], [0, 0, 1])


def test_per_frame_functional_groups_are_capped_and_timed(monkeypatch):
    monkeypatch.setenv("MEDUI_MAX_FRAMES", "30")
    capped = load([("enhanced.dcm", _frames(40, _per_frame(40)))])
    assert "with per-frame functional groups (5200,9230)" in capped.skipped[0].reason
    monkeypatch.setenv("MEDUI_MAX_FRAMES", "20000")
    monkeypatch.setenv("MEDUI_HEADER_TIMEOUT_S", "0")
    slow = load([("enhanced.dcm", _frames(300, _per_frame(300)))])
    assert "to read the per-frame functional groups" in slow.skipped[0].reason


def _runs_one_by_one(steps: np.ndarray, tol: float) -> list[tuple[int, int, float]]:
    """The frame-by-frame version `_runs` replaced (quadratic in a run's length)."""
    runs, start = [], 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or abs(steps[i] - np.mean(steps[start:i])) > tol:
            runs.append((start, i - 1, float(np.mean(steps[start:i]))))
            start = i
    return runs


@pytest.mark.parametrize("seed", range(12))
def test_runs_of_one_spacing_match_the_one_by_one_version(seed):
    rng = np.random.default_rng(seed)
    sections = [np.full(int(rng.integers(1, 200)), float(rng.choice([0.5, 1.0, 1.25, 3.0, 5.0])))
                for _ in range(int(rng.integers(1, 8)))]
    steps = np.concatenate(sections) + rng.normal(0, 0.004, sum(len(s) for s in sections))
    tol = max(0.02 * abs(float(np.median(steps))), 0.05)
    expected = _runs_one_by_one(steps, tol)
    got = _runs(steps, tol)
    assert [r[:2] for r in got] == [r[:2] for r in expected]
    assert np.allclose([r[2] for r in got], [r[2] for r in expected])
    assert MIN_RUN == 3


def test_runs_give_up_on_spacing_without_sections():
    steps = np.tile([1.0, 2.0], 500)  # every gap a run of its own
    assert _runs(steps, 0.05) == []
    table = FrameTable.uniform(FrameGeom((0, 0, 0), (1, 0, 0, 0, 1, 0), (1, 1), 1), 1001)
    z = np.concatenate([[0], np.cumsum(steps)])
    table.position = np.column_stack([np.zeros(1001), np.zeros(1001), z])
    _, warnings, _ = stack_affine(table)
    assert any("irregular slice spacing" in w for w in warnings), warnings


def test_frame_table_gives_back_the_frames_it_was_made_of():
    geoms = [FrameGeom((0, 0, float(k)), (1, 0, 0, 0, 1, 0), (0.5, 0.5), 2.0, 1.0 + k, -k) for k in range(3)]
    geoms.append(FrameGeom(None, None, None, None))
    table = FrameTable.of(geoms)
    assert [table[i] for i in range(4)] == [
        FrameGeom(tuple(map(float, g.position)) if g.position else None,
                  tuple(map(float, g.orientation)) if g.orientation else None,
                  tuple(map(float, g.pixel_spacing)) if g.pixel_spacing else None, g.thickness, g.slope, g.intercept)
        for g in geoms]
    assert table.take(np.array([2, 0]))[0] == table[2] and len(table[1:3]) == 2


def test_write_frames_matches_frame_by_frame_rescaling():
    rng = np.random.default_rng(0)
    arr = rng.integers(-2000, 3000, (7, 4, 5)).astype(np.int16)
    frames, slopes, intercepts = rng.permutation(7), rng.choice([1.0, 0.5, 2.5], 7), rng.choice([0.0, -1024.0], 7)
    targets = [(int(frames[s]), s, float(slopes[s]), float(intercepts[s])) for s in range(7)]
    out = np.zeros((7, 4, 5), np.float32)
    assert write_frames(Decoded(arr, rescale=True), out, targets) == list(range(7))
    for frame, slot, slope, intercept in targets:
        expected = np.multiply(arr[frame], np.float32(slope)) if slope != 1 else arr[frame].astype(np.float32)
        np.testing.assert_array_equal(out[slot], expected.astype(np.float32) + np.float32(intercept))


def test_slice_positions_of_a_stack_are_each_slice_position():
    (series,) = load([("dose.dcm", _frames(12, _offsets(np.arange(12)[::-1] * 2.5)))]).series
    assert slice_positions_mm(series) == [slice_position_mm(series, d) for d in range(series.n_slices)]


def test_a_2m_frame_header_without_pixels_is_refused_at_once():
    one_pixel = _set(BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0)
    start = time.perf_counter()
    result = load([("many.dcm", dicom(one_pixel, rows=1, cols=1, frames=2_000_000, pixel=b"\x01" * 64))])
    assert time.perf_counter() - start < 2
    assert "holds 64 bytes" in result.skipped[0].reason


def test_a_multi_frame_object_split_into_stacks_is_charged_once(monkeypatch):
    monkeypatch.setenv("MEDUI_MAX_LOAD_MB", "10")  # its 400 frames of 64x64 take 6.3 MiB once decoded

    def two_echoes(ds: Dataset) -> None:
        ds.GridFrameOffsetVector = [float(k // 2) for k in range(400)]

    result = load([("echoes.dcm", dicom(two_echoes, rows=64, cols=64, frames=400))])
    assert [s.n_slices for s in result.series] == [200, 200], [k.reason for k in result.skipped]
