"""Parallel decoding: worker processes write into shared volumes, and give the same pixels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medui.io import parallel
from medui.io.loader import load
from medui.io.sources import Limits, expand
from tests.synth import jpeg_lossless_copy, phantom_volume, write_series

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="parallel decoding needs Linux memfd")


@pytest.fixture()
def compressed_series(tmp_path) -> tuple[Path, np.ndarray]:
    vol = phantom_volume(24, 64, 72)
    raw = write_series(tmp_path / "raw", vol, order=list(np.random.default_rng(3).permutation(24)))
    folder = tmp_path / "jpeg"
    folder.mkdir()
    for path in raw:
        jpeg_lossless_copy(path, folder / path.name)
    return folder, vol


@pytest.fixture()
def pool_for_small_sets(monkeypatch):
    """Use the pool for this small test series (the thresholds are read in the main process)."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 2)


def _decode(folder: Path, decoder_cls=parallel.Decoder, workers: int = 2):
    """Run the Decoder the way medui.io.dicom does, returning the volume and the Decoder."""
    from medui.io.dicom import Instance, group, parse, plan_stack

    sources, _ = expand([folder], Limits())
    with decoder_cls(sources, workers=workers) as dec:
        insts = []
        for k, src in enumerate(sources):
            inst = parse(src, Limits())
            assert isinstance(inst, Instance)
            inst.index = k
            insts.append(inst)
        (stack,) = group(insts)
        plan = plan_stack(stack, Limits(), dec)
        errors = dec.run()
    return dec.array(plan.volume), dec, errors


def test_workers_fill_the_shared_volume(compressed_series, pool_for_small_sets):
    folder, vol = compressed_series
    pixels, dec, errors = _decode(folder)
    assert not errors and dec.stats["in_workers"] > 0, dec.stats
    assert dec.stats["in_workers"] + dec.stats["here"] == 24
    np.testing.assert_array_equal(pixels, vol.astype(np.float32) - 1024)  # sorted by position, in HU


def test_same_pixels_as_one_process(compressed_series, pool_for_small_sets, monkeypatch):
    folder, _ = compressed_series
    result = load([folder])
    assert result.workers == 2 and "on 2 worker processes" in result.summary()
    pooled = result.series[0]
    monkeypatch.setenv("MEDUI_DECODE_WORKERS", "1")
    single = load([folder]).series[0]
    np.testing.assert_array_equal(pooled.pixels, single.pixels)
    np.testing.assert_array_equal(pooled.affine, single.affine)
    # headers were parsed in the workers (slim); the header table still shows the whole header
    assert pooled.header == single.header and len(pooled.header) > 30
    assert (pooled.window, pooled.modality, pooled.description) == (single.window, single.modality, single.description)


class _NoSharing(parallel.Decoder):
    """Workers are handed a memfd that does not exist, as where /proc is not readable."""

    def _refs(self) -> dict[int, parallel.VolumeRef]:
        return {v: parallel.VolumeRef(os.getpid(), 10**6, ref.shape) for v, ref in super()._refs().items()}


def test_workers_that_cannot_open_the_volume_leave_the_work_here(compressed_series, pool_for_small_sets):
    folder, vol = compressed_series
    pixels, dec, errors = _decode(folder, _NoSharing)
    assert not errors and (dec.stats["in_workers"], dec.stats["here"]) == (0, 24)
    np.testing.assert_array_equal(pixels, vol.astype(np.float32) - 1024)


def test_a_damaged_file_in_a_pooled_series(compressed_series, pool_for_small_sets):
    folder, _ = compressed_series
    victim = sorted(folder.glob("*.dcm"))[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - len(data) // 4])
    result = load([folder])
    (s,) = result.series
    assert s.pixels.shape[0] == 23
    assert [k.file for k in result.skipped] == [f"jpeg/{victim.name}"] and "decoded" in result.skipped[0].reason
    assert any("could not be decoded" in w for w in s.warnings)


def test_one_file_into_two_volumes():
    """A file whose frames belong to two stacks (e.g. two echoes) is decoded once into both."""
    from pydicom.data import get_testdata_file

    src = expand([Path(get_testdata_file("emri_small_jpeg_ls_lossless.dcm"))], Limits())[0][0]
    with parallel.Decoder([src], workers=1) as dec:
        a, b = dec.volume((5, 64, 64)), dec.volume((5, 64, 64))
        dec.add(0, a, [(2 * k, k, 1.0, 0.0) for k in range(5)])
        dec.add(0, b, [(2 * k + 1, k, 2.0, -1.0) for k in range(5)])
        assert dec.run() == {} and dec.stats["here"] == 1
        frames = load([Path(get_testdata_file("emri_small_jpeg_ls_lossless.dcm"))]).series[0].pixels
    np.testing.assert_array_equal(dec.array(a), frames[0::2])
    np.testing.assert_array_equal(dec.array(b), frames[1::2] * 2 - 1)
    assert dec.written(a).all() and dec.written(b).all()


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "MR_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm",
                                  "SC_rgb_jpeg_gdcm.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_pixel_hint_reads_only_the_pixel_data(name):
    """Decoding from the recorded Pixel Data offset gives what parsing the whole file gives."""
    from pydicom.data import get_testdata_file

    from medui.io.decode import PixelHint, decode_dicom
    from medui.io.dicom import Instance, parse
    from medui.io.sources import SourceFile

    path = Path(get_testdata_file(name))
    for src in (SourceFile(name, path=str(path)), SourceFile(name, data=path.read_bytes())):
        inst = parse(src, Limits())
        assert isinstance(inst, Instance) and inst.hint is not None
        assert len(inst.hint.header) < 40  # the pixel module only
        with_hint, without = decode_dicom(src, hint=inst.hint), decode_dicom(src)
        assert not isinstance(with_hint, str) and not isinstance(without, str)
        np.testing.assert_array_equal(with_hint.array, without.array)
        assert with_hint.rescale == without.rescale
        wrong = PixelHint(inst.hint.header, inst.hint.offset - 6, inst.hint.implicit_vr, inst.hint.little_endian)
        np.testing.assert_array_equal(decode_dicom(src, hint=wrong).array, without.array)  # falls back


def test_uncompressed_files_get_no_hint():
    from pydicom.data import get_testdata_file

    from medui.io.dicom import parse
    from medui.io.sources import SourceFile

    inst = parse(SourceFile("CT", path=get_testdata_file("CT_small.dcm")), Limits())
    assert inst.hint is None


ROOT = Path(__file__).resolve().parents[1]


def test_app_script_is_inert_in_worker_processes():
    """Where multiprocessing's workers re-import the main script as __mp_main__ (other Pythons than
    medui.io.workers hooks), app.py must not build the app there."""
    code = ("import runpy, sys; runpy.run_path('app.py', run_name='__mp_main__'); "
            "print([m for m in ('streamlit', 'tensorflow', 'medui.ui.shell') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _run_under_fake_main(folder: Path, main_file: Path) -> subprocess.CompletedProcess:
    """Load `folder` with the pool in a new process whose __main__ claims to be `main_file`, as
    Streamlit does while a script runs (its fake __main__ has the script's __file__)."""
    code = f"""
import sys, types
sys.path.insert(0, {str(ROOT)!r})
if __name__ == "__main__":
    from medui.io import parallel
    from medui.io.dicom import read_dicom
    from medui.io.sources import Limits, expand
    parallel.PARALLEL_MIN_BYTES, parallel.PARALLEL_MIN_FILES = 0, 2
    fake = types.ModuleType("__main__")
    fake.__file__ = {str(main_file)!r}
    sys.modules["__main__"] = fake
    series, skipped, stats = read_dicom(expand([{str(folder)!r}], Limits())[0], Limits())
    print(len(series), len(skipped), stats["in_workers"])
"""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_workers_do_not_run_the_main_script(compressed_series, tmp_path):
    """Whatever script is __main__ (a page under AppTest, a user's script), workers skip it."""
    from medui.io import workers

    if not workers._fits_this_python():
        pytest.skip("this Python's forkserver differs from the one medui.io.workers hooks (3.11-3.13)")
    folder, _ = compressed_series
    marker = tmp_path / "ran"
    script = tmp_path / "some_page.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('main script ran in a worker')\n")
    out = _run_under_fake_main(folder, script)
    assert out.returncode == 0, out.stderr
    n_series, n_skipped, in_workers = map(int, out.stdout.split())
    assert (n_series, n_skipped) == (1, 0) and in_workers > 0
    assert not marker.exists()


def test_pool_under_a_streamlit_like_main(compressed_series):
    """Under Streamlit __main__ is app.py: workers must neither build the app nor be skipped."""
    folder, _ = compressed_series
    out = _run_under_fake_main(folder, ROOT / "app.py")
    assert out.returncode == 0, out.stderr
    n_series, n_skipped, in_workers = map(int, out.stdout.split())
    assert (n_series, n_skipped) == (1, 0) and in_workers > 0
    assert "ScriptRunContext" not in out.stderr and "cuInit" not in out.stderr, out.stderr[-2000:]
