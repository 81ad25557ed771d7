"""Hostile input, one rule at a time: containment, header checks, time caps and the load's memory budget."""

from __future__ import annotations

import gzip
import io
import time
import zipfile
from dataclasses import dataclass
from unittest import mock

import numpy as np
import pytest

from medui.io import budget as budget_mod
from medui.io import codecs, parallel
from medui.io.loader import load
from medui.io.readers import REGISTRY
from medui.io.sources import Limits, SourceFile
from tests.hostile_corpus import (
    _encapsulated,
    _j2k_stream,
    _modality_lut,
    _nifti,
    _palette,
    _png_header_only,
    _raw,
    _set,
    dicom,
)

MiB = 1024**2


class FakePanic(BaseException):
    """Like pyo3's PanicException: a BaseException, not an Exception."""


def _series_files(n: int, rows: int = 16, cols: int = 16) -> list[tuple[str, bytes]]:
    uid = "1.2.826.0.1.3680043.8.498.1"

    def at(k: int):
        return _set(SeriesInstanceUID=uid, ImagePositionPatient=[0, 0, 2 * k], InstanceNumber=k + 1)

    return [(f"s/{k}.dcm", dicom(at(k), rows=rows, cols=cols)) for k in range(n)]


def _reason(result, name: str) -> str:
    return next(k.reason for k in result.skipped if k.file.endswith(name))


# --- containment -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _PanickingReader:
    name: str = "panics"

    def claims(self, head: bytes, name: str) -> bool:
        return name.endswith(".boom")

    def read(self, sources, limits):
        raise FakePanic("a native decoder panicked")


def test_a_reader_that_panics_costs_only_its_own_files():
    result = load([("x.boom", b"12345678"), *_series_files(2)], readers=(_PanickingReader(), *REGISTRY))
    assert [s.n_slices for s in result.series] == [2]
    assert "FakePanic" in _reason(result, "x.boom")


def test_a_decoder_panic_skips_that_file_and_keeps_the_rest_of_the_batch(monkeypatch):
    real = codecs.pixel_array
    calls = []

    def flaky(ds, fast=True):
        calls.append(1)
        if len(calls) == 2:
            raise FakePanic("called `Result::unwrap()` on an `Err` value")
        return real(ds, fast)

    monkeypatch.setattr(codecs, "pixel_array", flaky)
    result = load(_series_files(3))
    assert [s.n_slices for s in result.series] == [2]
    assert len(result.skipped) == 1 and "FakePanic" in result.skipped[0].reason


def test_a_worker_task_contains_panics_but_not_interrupts(monkeypatch):
    task = parallel.Task(0, SourceFile("a.dcm", data=b""), {0: [(0, 0, 1.0, 0.0)]})
    monkeypatch.setattr(parallel, "decode_dicom", mock.Mock(side_effect=FakePanic("boom")))
    assert "FakePanic" in parallel._fill(task, lambda v, lo, hi: np.zeros((1, 1, 1), np.float32), 2**30, True)
    monkeypatch.setattr(parallel, "decode_dicom", mock.Mock(side_effect=KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        parallel._fill(task, lambda v, lo, hi: np.zeros((1, 1, 1), np.float32), 2**30, True)


@pytest.mark.skipif(not hasattr(__import__("os"), "memfd_create"), reason="worker processes need Linux")
def test_a_stuck_worker_is_timed_out_and_the_other_files_still_load(monkeypatch):
    from medui.io.dicom import parse_detached

    slow = dicom(pixel=b"")[:-12] + b"\x00" * 3_000_000  # ~1 s of header parsing
    srcs = [SourceFile(f"z{k}.dcm", data=slow) for k in range(2)] + [SourceFile(f"g{k}.dcm", data=dicom())
                                                                       for k in range(4)]
    monkeypatch.setattr(parallel, "worth_a_pool", lambda s, n: True)
    with parallel.Decoder(srcs, workers=2, timeout_s=0.2) as dec:
        time.sleep(1.0)  # let the workers start, so that the first chunk runs in one
        out = dec.map(parse_detached, Limits())
    assert "took longer than 0.2 s" in out[0].reason and "MEDUI_DECODE_TIMEOUT_S" in out[0].reason
    assert all(type(o).__name__ == "Instance" for o in out[2:])


# --- header values -----------------------------------------------------------------------------

@pytest.mark.parametrize(("mutate", "words"), [
    (_raw(0x00281053, "DS", "abc"), "RescaleSlope (0028,1053)"),
    (_raw(0x00281052, "DS", "NaN"), "RescaleIntercept (0028,1052)"),
    (_set(Rows=0), "Rows (0028,0010) = 0"),
    (_raw(0x00280008, "IS", "-5"), "NumberOfFrames (0028,0008)"),
    (_raw(0x00280008, "IS", "many"), "NumberOfFrames (0028,0008)"),
    (_set(BitsAllocated=12), "BitsAllocated (0028,0100) = 12"),
    (_set(SamplesPerPixel=3), "SamplesPerPixel (0028,0002) = 3"),
    (_palette(256, 10), "RedPaletteColorLookupTableData (0028,1201)"),
    (_modality_lut([4096, 0, 16], [0, 1, 2]), "LUTData (0028,3006)"),
    (lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5"), "TransferSyntaxUID (0002,0010)"),
])
def test_bad_header_values_are_refused_naming_the_tag(mutate, words):
    result = load([("bad.dcm", dicom(mutate)), *_series_files(2)])
    assert [s.n_slices for s in result.series] == [2]
    assert words in _reason(result, "bad.dcm")


def test_pixel_data_shorter_than_the_header_promises_is_refused():
    result = load([("short.dcm", dicom(pixel=b"\x00" * 100))])
    assert "Pixel Data (7FE0,0010) holds" in result.skipped[0].reason and "promise 128" in result.skipped[0].reason


def test_a_window_that_is_no_number_is_a_warning_not_a_failure():
    result = load([("w.dcm", dicom(_raw(0x00281050, "DS", "abc")))])
    assert result.series[0].window is None
    assert any("WindowCenter (0028,1050)" in w for w in result.series[0].warnings)


def test_jpeg2000_codestream_size_is_checked_against_rows_columns_and_the_limit():
    from pydicom.uid import JPEG2000Lossless

    other = load([("j.dcm", dicom(pixel=_encapsulated([_j2k_stream(16, 16)]), syntax=JPEG2000Lossless))])
    assert "declares 16x16 pixels but Rows (0028,0010)" in other.skipped[0].reason
    huge = load([("j.dcm", dicom(pixel=_encapsulated([_j2k_stream(60000, 60000)]), syntax=JPEG2000Lossless))])
    assert "60000x60000" in huge.skipped[0].reason and "memory limit" in huge.skipped[0].reason


# --- time ------------------------------------------------------------------------------------------

def test_a_header_promising_too_many_compressed_frames_is_refused_at_once():
    from pydicom.uid import RLELossless

    start = time.perf_counter()
    result = load([("many.dcm", dicom(rows=1, cols=1, frames=200_000, syntax=RLELossless,
                                      pixel=_encapsulated([b"\x00" * 66] * 4)))])
    assert time.perf_counter() - start < 2
    assert "NumberOfFrames (0028,0008) = 200000 of compressed pixel data" in result.skipped[0].reason
    assert "MEDUI_MAX_FRAMES" in result.skipped[0].reason


def test_a_header_of_millions_of_tiny_elements_is_given_up(monkeypatch):
    monkeypatch.setenv("MEDUI_HEADER_TIMEOUT_S", "0.3")
    zeros = dicom(pixel=b"")[:-12] + b"\x00" * 8_000_000
    start = time.perf_counter()
    result = load([("zeros.dcm", zeros), *_series_files(2)])
    assert time.perf_counter() - start < 4
    assert [s.n_slices for s in result.series] == [2]
    assert "to parse its header" in _reason(result, "zeros.dcm")


# --- memory budget ---------------------------------------------------------------------------------

def test_default_budget_is_half_the_available_memory_capped_by_the_environment(monkeypatch):
    monkeypatch.delenv("MEDUI_MAX_LOAD_MB", raising=False)
    monkeypatch.setattr(budget_mod, "available_bytes", lambda: 1000 * MiB)
    assert Limits().max_load_bytes == 500 * MiB
    monkeypatch.setenv("MEDUI_MAX_LOAD_MB", "64")
    assert Limits().max_load_bytes == 64 * MiB


def test_the_sum_of_the_series_of_a_load_is_held_to_its_budget():
    first = [(f"a/{n}", d) for n, d in _series_files(4, 64, 64)]  # 4 x 64 x 64 x 4 bytes = 64 KiB
    second = [("b/s/0.dcm", dicom(_set(SeriesInstanceUID="1.2.3.9"), rows=64, cols=64))]  # 16 KiB more
    result = load([*first, *second], Limits(max_load_bytes=72 * 1024, max_image_bytes=40 * 1024))
    assert [s.n_slices for s in result.series] == [4]
    reason = _reason(result, "b/s/0.dcm")
    assert "memory budget" in reason and "MEDUI_MAX_LOAD_MB" in reason


def _zip(members: dict[str, bytes]) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return bio.getvalue()


def test_archives_share_one_running_total():
    noise = np.random.default_rng(0).integers(0, 255, 300_000, dtype=np.uint8).tobytes()
    one = _zip({"a.bin": noise})
    result = load([("one.zip", one), ("two.zip", _zip({"outer.zip": one}))], Limits(max_load_bytes=500_000))
    reasons = {k.file: k.reason for k in result.skipped}
    assert "memory budget" in reasons["two.zip"]
    assert "memory budget" not in reasons.get("one.zip/a.bin", "")


def test_a_png_declaring_13000_squared_rgb_is_refused_before_decoding():
    result = load([("big.png", _png_header_only(13000, 13000))])
    assert not result.series and "MEDUI_MAX_IMAGE_MB" in result.skipped[0].reason


def test_gzip_nifti_inflates_only_as_far_as_its_header_declares():
    good = _nifti()
    bomb = gzip.compress(good + b"\x00" * 20_000_000)
    result = load([("stream.nii.gz", bomb)], Limits(max_load_bytes=2 * MiB))
    assert result.series and result.series[0].pixels.shape[0] > 0


def test_nifti_with_nan_orientation_loads_without_geometry():
    import struct

    good = _nifti()
    nan_sform = good[:280] + struct.pack("<12f", *([float("nan")] * 12)) + good[328:]
    nan_sform = nan_sform[:254] + struct.pack("<h", 1) + nan_sform[256:]
    series = load([("nan.nii", nan_sform)]).series[0]
    assert not series.has_geometry and np.all(np.isfinite(series.affine))
    assert any("sform/qform" in w for w in series.warnings)


def test_rgb24_nifti_is_read_as_colour():
    series = load([("rgb.nii", _nifti(dtype="RGB"))]).series[0]
    assert series.photometric == "RGB" and series.pixels.shape[-1] == 3 and series.pixels[..., 0].max() == 200


def test_truncated_nifti_is_refused_naming_what_is_missing():
    result = load([("cut.nii", _nifti()[:400])])
    assert "truncated" in result.skipped[0].reason


# --- gzip DICOM, archives ------------------------------------------------------------------------------

def test_gzipped_dicom_is_read_transparently():
    result = load([("one.dcm.gz", gzip.compress(dicom()))])
    assert result.series and result.series[0].files == ["one.dcm"]


def test_a_gzip_bomb_is_stopped_by_the_budget_while_it_inflates():
    bomb = gzip.compress(b"\x00" * 128 + b"DICM" + b"\x00" * 30_000_000)
    start = time.perf_counter()
    result = load([("bomb.dcm.gz", bomb), *_series_files(2)], Limits(max_load_bytes=4 * MiB))
    assert time.perf_counter() - start < 3
    assert [s.n_slices for s in result.series] == [2]
    assert "memory budget" in _reason(result, "bomb.dcm.gz")


def test_an_empty_zip_or_one_of_folders_only_is_reported():
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as zf:
        zf.writestr(zipfile.ZipInfo("folder/"), b"")
    result = load([("empty.zip", _zip({})), ("folders.zip", bio.getvalue())])
    assert {k.file for k in result.skipped} == {"empty.zip", "folders.zip"}
    assert all("no files" in k.reason for k in result.skipped)


def test_control_characters_in_names_are_not_passed_on():
    result = load([("a\nb\x1b[31m.dcm", dicom())])
    assert result.series[0].files == ["a?b?[31m.dcm"]


def test_duplicate_sop_instance_uids_are_reported():
    one = dicom(_set(SOPInstanceUID="1.2.3.4.5.6"))
    result = load([("a.dcm", one), ("b.dcm", one)])
    assert len(result.series) == 1 and "SOPInstanceUID (0008,0018)" in _reason(result, "b.dcm")


@pytest.mark.parametrize("iop", [[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [2, 0, 0, 0, 1, 0]])
def test_degenerate_orientation_is_dropped_with_a_warning_not_a_singular_affine(iop):
    series = load([("o.dcm", dicom(_set(ImageOrientationPatient=iop)))]).series[0]
    assert not series.has_geometry and abs(np.linalg.det(series.affine[:3, :3])) > 0
    assert any("ImageOrientationPatient (0020,0037)" in w for w in series.warnings)


def test_nifti_on_disk_is_mapped_not_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "vol.nii"
    path.write_bytes(_nifti(shape=(8, 8, 4, 6)))  # 6 volumes: only the first is shown
    monkeypatch.setattr(SourceFile, "read", mock.Mock(side_effect=AssertionError("read whole")))
    series = load([path]).series[0]
    assert series.pixels.shape[0] > 0


def test_a_zip_on_disk_is_read_member_by_member(tmp_path, monkeypatch):
    path = tmp_path / "a.zip"
    path.write_bytes(_zip({"s/1.dcm": dicom()}))
    monkeypatch.setattr(SourceFile, "read", mock.Mock(side_effect=AssertionError("read whole")))
    assert load([path]).series


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    from pathlib import Path

    folder = tmp_path / "locked"
    folder.mkdir()

    def denied(self, pattern):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rglob", denied)
    result = load([folder, ("good.dcm", dicom())])
    assert result.series and "could not be listed (Permission denied)" in result.skipped[0].reason


def _dies_on_bad(src: SourceFile, main_pid: int) -> str:
    """In a worker: a native crash on files named 'bad' (never in the test's own process)."""
    import os

    if "bad" in src.name:
        if os.getpid() == main_pid:
            raise AssertionError("a crashing file was run in the main process")
        os._exit(134)  # what a segfault or an abort in a native decoder looks like to the pool
    return src.name


@pytest.mark.skipif(not hasattr(__import__("os"), "memfd_create"), reason="worker processes need Linux")
def test_a_worker_killed_by_a_file_costs_that_file_only(monkeypatch):
    import os

    from medui.io.pool import CRASHED

    names = [f"f{k}.dcm" for k in range(12)]
    names[5] = "bad5.dcm"
    srcs = [SourceFile(n, data=b"x") for n in names]
    monkeypatch.setattr(parallel, "worth_a_pool", lambda s, n: True)
    with parallel.Decoder(srcs, workers=2) as dec:
        time.sleep(1.0)  # workers up: every chunk goes to them
        out = dec.map(_dies_on_bad, os.getpid())
    assert [o for o in out if isinstance(o, str)] == [n for n in names if n != "bad5.dcm"]
    (crashed,) = [o for o in out if not isinstance(o, str)]
    assert crashed.file == "bad5.dcm" and crashed.reason == CRASHED


def test_raster_and_nifti_images_add_up_in_the_budget():
    import cv2

    png = cv2.imencode(".png", (np.arange(64 * 48) % 255).astype(np.uint8).reshape(64, 48))[1].tobytes()
    nii = _nifti(shape=(8, 8, 4))  # 1 KiB of float32
    inputs = [("n.nii", nii), ("a.png", png), ("b.png", png), ("c.png", png)]
    result = load(inputs, Limits(max_load_bytes=1024 + 2 * 64 * 48 * 4 + 100))
    assert sorted(s.files[0] for s in result.series) == ["a.png", "b.png", "n.nii"]
    assert "memory budget" in _reason(result, "c.png")
