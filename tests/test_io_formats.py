"""NIfTI, raster images, zip archives, dcm2niix geometry agreement and the real scans in ../shared/data."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medui.io.loader import load
from medui.io.sources import Limits
from tests.synth import phantom_volume, png_bytes, write_series, zip_bytes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _only(result):
    assert len(result.series) == 1, ([s.summary() for s in result.series], result.skipped)
    return result.series[0]


# --- dcm2niix agreement ---------------------------------------------------------------------

def _dcm2niix() -> str:
    exe = shutil.which("dcm2niix")
    if exe is None:
        try:
            import dcm2niix  # the PyPI package ships the binary

            exe = str(Path(dcm2niix.__file__).parent / "dcm2niix")
        except ImportError:
            pytest.skip("dcm2niix not installed (pip install -r requirements-test.txt)")
    return exe


def _canonical(data: np.ndarray, affine_ras: np.ndarray):
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine_ras))
    return np.asarray(img.dataobj, np.float32), img.affine


def _agree_with_dcm2niix(folder: Path, tmp_path: Path) -> None:
    ours = _only(load([folder]))
    out = tmp_path / "nii"
    out.mkdir()
    subprocess.run([_dcm2niix(), "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    ref = nib.load(next(out.glob("*.nii")))
    ref_data, ref_aff = _canonical(ref.get_fdata(dtype=np.float32), ref.affine)
    our_data, our_aff = _canonical(ours.pixels, LPS @ ours.affine)
    assert our_data.shape == ref_data.shape
    np.testing.assert_allclose(our_aff, ref_aff, atol=1e-3)
    np.testing.assert_array_equal(our_data, ref_data)
    # NIfTI written by dcm2niix reads back onto the same grid, in the same display orientation.
    back = _only(load([next(out.glob("*.nii"))]))
    np.testing.assert_array_equal(back.pixels, ours.pixels)
    np.testing.assert_allclose(back.affine, ours.affine, atol=1e-3)


@pytest.mark.parametrize("kind", ["shuffled", "descending", "oblique"])
def test_geometry_matches_dcm2niix(tmp_path, kind):
    vol = phantom_volume(10, rows=24, cols=30)
    folder = tmp_path / kind
    if kind == "shuffled":
        order = [3, 7, 1, 9, 0, 5, 2, 8, 4, 6]
        write_series(folder, vol, order=order)
    elif kind == "descending":
        write_series(folder, vol, slice_step=-3.0)
    else:
        a = np.deg2rad(20)
        col_cos = (-np.sin(a) * 0.2, np.cos(a) * 0.2, -np.sqrt(1 - 0.04))
        write_series(folder, vol, row_cos=(np.cos(a), np.sin(a), 0), col_cos=col_cos, slice_step=2.0)
    _agree_with_dcm2niix(folder, tmp_path)


# --- NIfTI ---------------------------------------------------------------------------------

def test_nifti_reoriented_like_dicom(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # i, j, k in LAS order below
    affine = np.diag([-2.0, 3.0, 4.0, 1.0])  # i toward L, j toward A, k toward S
    affine[:3, 3] = (10, -20, 30)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    s = _only(load([tmp_path / "v.nii.gz"]))
    assert s.pixels.shape == (6, 5, 4)  # (slices toward S, rows toward P, cols toward L)
    vox = np.array([2, 1, 3, 1.0])  # our (slice, row, col) -> world must equal nibabel's for that voxel
    world_lps = s.affine @ vox
    i, j, k = 3, 5 - 1 - 1, 2  # col=3 -> i=3 (L grows with i); row=1 -> j=3 (P grows as j falls); slice=2 -> k=2
    world_ras = affine @ np.array([i, j, k, 1.0])
    np.testing.assert_allclose(world_lps[:3], (LPS @ world_ras)[:3])
    assert s.pixels[2, 1, 3] == data[i, j, k]
    assert s.source_format == "NIfTI"


def test_nifti_4d_and_bytes_upload(tmp_path):
    data = np.random.default_rng(0).random((8, 8, 3, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "t.nii")
    s = _only(load([("upload/t.nii", (tmp_path / "t.nii").read_bytes())]))
    assert s.pixels.shape[0] == 3 and any("4-D" in w for w in s.warnings)


def test_broken_nifti_is_reported(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b" + b"nonsense" * 20)
    result = load([tmp_path / "bad.nii.gz"])
    assert not result.series and "NIfTI" in result.skipped[0].reason


# --- raster ------------------------------------------------------------------------------

def test_png_8_and_16_bit_grey_and_colour(tmp_path):
    import cv2

    g16 = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 20)
    g8 = (np.arange(32 * 32, dtype=np.uint8).reshape(32, 32))
    colour = np.zeros((20, 30, 3), np.uint8)
    colour[..., 2] = 200  # BGR: red
    files = [("g16.png", png_bytes(g16)), ("g8.png", png_bytes(g8)), ("c.png", png_bytes(colour))]
    ok, jpg = cv2.imencode(".jpg", g8)
    files.append(("g8.jpg", jpg.tobytes()))
    ok, tif = cv2.imencodemulti(".tiff", [g16, g16 // 2])
    files.append(("stack.tiff", tif.tobytes()))
    result = load(files)
    by = {s.files[0]: s for s in result.series}
    np.testing.assert_array_equal(by["g16.png"].pixels[0], g16.astype(np.float32))
    assert by["g16.png"].pixels.max() > 255  # 16-bit kept
    np.testing.assert_array_equal(by["g8.png"].pixels[0], g8)
    assert by["c.png"].is_color and by["c.png"].pixels[0, 0, 0, 0] == 200  # converted to RGB
    assert by["g8.jpg"].pixels.shape == (1, 32, 32)
    assert by["stack.tiff"].pixels.shape == (2, 64, 48)


# --- archives and safety -------------------------------------------------------------------

def test_zip_with_folders_and_a_bad_member(tmp_path):
    write_series(tmp_path / "ser", phantom_volume(5))
    files = {f"patient/ser/{p.name}": p.read_bytes() for p in (tmp_path / "ser").iterdir()}
    files["patient/readme.txt"] = b"not an image"
    files["__MACOSX/._x"] = b"junk"
    inner = zip_bytes({"deep/img.png": png_bytes(np.zeros((4, 4), np.uint8))})
    files["nested.zip"] = inner
    result = load([("study.zip", zip_bytes(files))])
    assert sorted(s.n_slices for s in result.series) == [1, 5]
    assert [k.file for k in result.skipped] == ["study.zip/patient/readme.txt"]


def test_zip_path_traversal_and_bomb_are_refused():
    import io

    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as zf:
        zf.writestr("../../etc/evil.dcm", b"x")
    result = load([("evil.zip", bio.getvalue())])
    assert not result.series and "unsafe path" in result.skipped[0].reason
    bomb = zip_bytes({"zeros.dcm": b"\0" * (40 * 1024 * 1024)})
    result = load([("bomb.zip", bomb)])
    assert "compression ratio" in result.skipped[0].reason
    result = load([("big.zip", zip_bytes({"a.bin": b"12345678" * 1000}))], Limits(max_archive_bytes=1000))
    assert "inflate to" in result.skipped[0].reason


def test_missing_path_and_empty_input(tmp_path):
    result = load([tmp_path / "nope"])
    assert "no such file" in result.skipped[0].reason
    (tmp_path / "empty.dcm").write_bytes(b"")
    assert "empty" in load([tmp_path / "empty.dcm"]).skipped[0].reason


# --- real scans (../shared/data) -----------------------------------------------------------

def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} not present (real scans are only available beside the development checkout)")
    return path


@pytest.mark.slow
def test_real_ct_series():
    s = _only(load([_shared("ct-lung-30")]))
    assert s.pixels.shape == (30, 512, 512) and s.modality == "CT"
    assert s.pixels.min() == -1024 and 1000 < s.pixels.max() < 4000  # Hounsfield units
    np.testing.assert_allclose(s.spacing[0], 8.0, atol=0.01)


@pytest.mark.slow
def test_real_compressed_ct_series_uses_both_decoders():
    s = _only(load([_shared("ct-chest-covid-255")]))
    assert s.pixels.shape == (255, 512, 512) and not s.warnings
    np.testing.assert_allclose(s.spacing, (1.25, 0.703125, 0.703125), atol=0.01)


@pytest.mark.slow
def test_real_oblique_mr_and_dcm2niix(tmp_path):
    _agree_with_dcm2niix(_shared("mr-brain-24"), tmp_path)


def test_multipage_tiff_is_checked_against_the_memory_cap_on_all_pages():
    import cv2

    page = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    ok, tif = cv2.imencodemulti(".tiff", [page] * 50)
    assert ok
    per_page = 64 * 48 * 4  # float32 once decoded
    result = load([("fifty.tiff", tif.tobytes())], Limits(max_image_bytes=int(2.5 * per_page)))
    assert not result.series, "50 pages were decoded against a cap that allows 2"
    assert "MEDUI_MAX_IMAGE_MB" in result.skipped[0].reason
    two = load([("two.tiff", cv2.imencodemulti(".tiff", [page] * 2)[1].tobytes())],
               Limits(max_image_bytes=int(2.5 * per_page)))
    assert two.series[0].pixels.shape == (2, 64, 48)


def test_one_memory_check_wording_for_every_reader(tmp_path):
    write_series(tmp_path / "dcm", phantom_volume(2, rows=64, cols=64))
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 4), np.float32), np.eye(4)), tmp_path / "v.nii")
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 4), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    (tmp_path / "g.png").write_bytes(png_bytes(np.zeros((64, 64), np.uint8)))
    result = load([tmp_path], Limits(max_image_bytes=10_000))
    assert not result.series
    assert len(result.skipped) == 5, result.skipped
    for k in result.skipped:
        assert "MiB of memory once decoded" in k.reason and "Raise MEDUI_MAX_IMAGE_MB" in k.reason, k


def test_readers_are_tried_in_order_and_a_broken_reader_loses_only_its_files(tmp_path):
    from medui.io.readers import REGISTRY, DicomReader, NiftiReader, RasterReader, ReadResult

    assert [type(r) for r in REGISTRY] == [NiftiReader, DicomReader, RasterReader, DicomReader]
    assert REGISTRY[1].preamble and not REGISTRY[3].preamble  # DICOM without preamble is the last resort

    class Broken:
        name = "raster"

        def claims(self, head: bytes, name: str) -> bool:
            return name.endswith(".png")

        def read(self, sources, limits) -> ReadResult:
            raise RuntimeError("boom")

    write_series(tmp_path / "dcm", phantom_volume(3))
    files = [tmp_path / "dcm", ("a.png", png_bytes(np.zeros((4, 4), np.uint8)))]
    result = load(files, readers=(Broken(), *REGISTRY))
    assert [s.n_slices for s in result.series] == [3]
    assert [k.file for k in result.skipped] == ["a.png"] and "boom" in result.skipped[0].reason
