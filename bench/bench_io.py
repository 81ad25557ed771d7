"""Benchmark: loading a 300-slice 512x512 CT series and re-rendering one slice. Prints JSON.

    .venv/bin/python bench/bench_io.py [--slices 300] [--repeats 3]

Series are written to a temporary folder: from the real CT in ../shared/data when present
(slices repeated to reach the count), otherwise from a smooth synthetic phantom. The JPEG
Lossless copy is made with GDCM. Every timing is the median of interleaved repeats on a warm
page cache, so the ratios compare like with like in one run.

MedUI is timed three ways: as shipped (worker processes + the imagecodecs JPEG plugin), in one
process (MEDUI_DECODE_WORKERS=1: what the workers give) and with pydicom's own decoders
(MEDUI_DECODER=pydicom: what the plugin gives). The plain loop uses pydicom's default plugins
(GDCM first when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-lung-30"
# 255 real JPEG Lossless files
REAL_JPEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-chest-covid-255"


def _source_slices(n: int) -> np.ndarray:
    if SHARED.is_dir():
        import pydicom

        files = sorted(SHARED.glob("*.dcm"))
        base = [pydicom.dcmread(f).pixel_array for f in files]
        return np.stack([base[k % len(base)] for k in range(n)]).astype(np.int16)
    yy, xx = np.mgrid[-256:256, -256:256]
    rng = np.random.default_rng(0)
    body = ((xx / 230.0) ** 2 + (yy / 170.0) ** 2 < 1) * 1064
    lungs = (((np.abs(xx) - 100) / 70.0) ** 2 + (yy / 120.0) ** 2 < 1) * -800
    img = (body + lungs).astype(np.int16)
    return np.stack([img + rng.normal(0, 12, img.shape).astype(np.int16) for _ in range(n)])


def write_series(folder: Path, vol: np.ndarray) -> list[Path]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for k, img in enumerate(vol):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = "Bench^Phantom", "BENCH"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-170.0, -170.0, 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.66, 0.66]
        ds.SliceThickness = 1.25
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.Rows, ds.Columns = img.shape
        ds.PixelData = np.ascontiguousarray(img, "<i2").tobytes()
        path = folder / f"ct{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def jpeg_lossless_copy(paths: list[Path], folder: Path) -> list[Path]:
    import gdcm

    folder.mkdir(parents=True)
    out = []
    for p in paths:
        reader = gdcm.ImageReader()
        reader.SetFileName(str(p))
        if not reader.Read():
            raise RuntimeError(f"GDCM could not read {p}")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError("GDCM could not compress to JPEG Lossless")
        writer = gdcm.ImageWriter()
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        dst = folder / p.name
        writer.SetFileName(str(dst))
        if not writer.Write():
            raise RuntimeError(f"GDCM could not write {dst}")
        out.append(dst)
    return out


def read_bytes(paths: list[Path]) -> None:
    for p in paths:
        p.read_bytes()


def pydicom_loop(paths: list[Path]) -> None:
    import pydicom

    for p in paths:
        _ = pydicom.dcmread(p).pixel_array


def pydicom_loop_volume(paths: list[Path]) -> None:
    """The same job done sequentially: sort by position, decode, rescale to float32 HU, stack."""
    import pydicom

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    order = sorted(range(len(paths)), key=lambda i: float(headers[i].ImagePositionPatient[2]))
    vol = np.empty((len(paths), int(headers[0].Rows), int(headers[0].Columns)), np.float32)
    for k, i in enumerate(order):
        ds = pydicom.dcmread(paths[i])
        vol[k] = ds.pixel_array * np.float32(ds.RescaleSlope) + np.float32(ds.RescaleIntercept)


def medui_load(folder: Path, **env: str) -> None:
    """medui.io.loader.load; `env` sets MEDUI_* variables for this call only (read when loading starts)."""
    from medui.io.loader import load

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = load([folder])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert len(result.series) == 1, result.skipped


def sitk_load(folder: Path) -> None:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    sitk.GetArrayFromImage(reader.Execute())


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def first_load_in_new_process(folder: Path) -> float:
    """What `python -m medui info` pays: a new process whose worker pool starts from nothing."""
    import subprocess

    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from medui.io.loader import load\n"
            "if __name__ == '__main__':\n"
            "    t = time.perf_counter(); load([sys.argv[2]]); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parents[1]), str(folder)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def medui_load_bytes(uploads: list[tuple[str, bytes]]) -> None:
    from medui.io.loader import load

    assert len(load(uploads).series) == 1


def bench_load(folder: Path, paths: list[Path], repeats: int) -> dict:
    uploads = [(p.name, p.read_bytes()) for p in paths]
    methods = {
        "read_bytes_s": lambda: read_bytes(paths),
        "medui_load_s": lambda: medui_load(folder),
        "medui_load_uploaded_bytes_s": lambda: medui_load_bytes(uploads),  # what the app's uploader hands over
        # the same without worker processes, and without the imagecodecs plugin: what each part gives
        "medui_one_process_s": lambda: medui_load(folder, MEDUI_DECODE_WORKERS="1"),
        "medui_pydicom_decoders_s": lambda: medui_load(folder, MEDUI_DECODER="pydicom"),
        "pydicom_loop_s": lambda: pydicom_loop(paths),
        "pydicom_loop_hu_volume_s": lambda: pydicom_loop_volume(paths),
        "simpleitk_s": lambda: sitk_load(folder),
    }
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        del methods["simpleitk_s"]
    # Warm every method once first: page cache, imports, the worker start-up path, and glibc's
    # malloc thresholds (they adapt to the biggest block freed so far, and on this VM a page
    # fault costs ~1 ms per MB, so the first runs of anything are slower).
    for fn in methods.values():
        fn()
    runs: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            runs[name].append(timed(fn))
    out = {k: round(statistics.median(v), 3) for k, v in runs.items() if v}
    out["speedup_vs_pydicom_loop"] = round(out["pydicom_loop_s"] / out["medui_load_s"], 2)
    out["speedup_vs_pydicom_loop_hu_volume"] = round(out["pydicom_loop_hu_volume_s"] / out["medui_load_s"], 2)
    out["parallel_gain"] = round(out["medui_one_process_s"] / out["medui_load_s"], 2)
    out["speedup_vs_pydicom_loop_with_pydicom_decoders"] = round(
        out["pydicom_loop_s"] / out["medui_pydicom_decoders_s"], 2)
    if "simpleitk_s" in out:
        out["ratio_vs_simpleitk"] = round(out["simpleitk_s"] / out["medui_load_s"], 2)
    out["bytes_on_disk_mb"] = round(sum(p.stat().st_size for p in paths) / 2**20, 1)
    out["medui_first_load_in_new_process_s"] = round(statistics.median(
        first_load_in_new_process(folder) for _ in range(repeats)), 3)
    return out


def bench_render(folder: Path, n: int = 60) -> dict:
    import plotly
    import plotly.io as pio

    from medui.io.loader import load
    from medui.reading.display import plane_view, render
    from medui.series import Window
    from medui.ui.figures import slice_figure

    series = load([folder]).series[0]
    times, sizes = [], []
    for k in range(n):
        window = Window(40 + k, 400 + 2 * k)  # a window change
        t = time.perf_counter()
        view = plane_view(series, "axial", 150)
        fig = slice_figure(view, render(series, view, window, False), "HU")
        # what st.plotly_chart does with the figure before sending it
        spec = pio.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True), validate=False)
        times.append(time.perf_counter() - t)
        sizes.append(len(spec))
    coronal = []
    for k in range(20):
        t = time.perf_counter()
        view = plane_view(series, "coronal", 200 + k)
        fig = slice_figure(view, render(series, view, Window(40, 400), False), "HU")
        pio.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True), validate=False)
        coronal.append(time.perf_counter() - t)
    return {"axial_rerender_ms_median": round(statistics.median(times[5:]) * 1e3, 1),
            "axial_rerender_ms_p90": round(float(np.percentile(times[5:], 90)) * 1e3, 1),
            "coronal_rerender_ms_median": round(statistics.median(coronal[3:]) * 1e3, 1),
            "figure_json_kb": round(statistics.median(sizes) / 1024, 1), "target_ms": 30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medui-bench-") as tmp:
        tmp_path = Path(tmp)
        vol = _source_slices(args.slices)
        raw = write_series(tmp_path / "uncompressed", vol)
        jpeg = jpeg_lossless_copy(raw, tmp_path / "jpeg-lossless")
        result = {
            "machine": {"cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                        "source": "shared/data/ct-lung-30 (repeated)" if SHARED.is_dir() else "synthetic phantom"},
            "series": {"slices": args.slices, "rows": 512, "cols": 512},
            "uncompressed": bench_load(tmp_path / "uncompressed", raw, args.repeats),
            "jpeg_lossless": bench_load(tmp_path / "jpeg-lossless", jpeg, args.repeats),
            "rerender": bench_render(tmp_path / "uncompressed"),
            "real_ct_jpeg_lossless": (bench_load(REAL_JPEG, sorted(REAL_JPEG.glob("*.dcm")), args.repeats)
                                      if REAL_JPEG.is_dir()
                                      else "skipped: ../shared/data/ct-chest-covid-255 is absent"),
            "targets": {"jpeg_lossless.speedup_vs_pydicom_loop": ">= 1.5",
                        "jpeg_lossless.ratio_vs_simpleitk": ">= 1.0", "rerender.axial_rerender_ms_median": "< 30"},
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
