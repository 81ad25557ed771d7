"""One entry point for reading DICOM, NIfTI and raster images from any mix of inputs.

    >>> from medui.io.loader import load
    >>> result = load(["scan_folder/", ("upload.zip", zip_bytes)])
    >>> result.series[0].pixels.shape, result.skipped
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from medui.io.dicom import read_dicom
from medui.io.nifti import looks_like_nifti, read_nifti
from medui.io.raster import looks_like_raster, read_raster
from medui.io.sources import Input, Limits, Skipped, SourceFile, expand
from medui.series import Series

__all__ = ["load", "LoadResult", "Limits", "Skipped", "SourceFile", "Series"]


@dataclass
class LoadResult:
    """The series found in an upload, and every file that was not used with its reason."""

    series: list[Series] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the load
    workers: int = 0  # worker processes that decoded DICOM pixels (0: all in this process)

    def to_json(self) -> dict:
        return {"series": [s.to_json() for s in self.series],
                "skipped": [{"file": k.file, "reason": k.reason} for k in self.skipped],
                "load": {"seconds": round(self.seconds, 3), "workers": self.workers}}

    def summary(self) -> str:
        """e.g. 'Loaded 1 series from 255 file(s) in 0.71 s on 2 worker processes'."""
        files = sum(len(s.files) for s in self.series)
        text = f"Loaded {len(self.series)} series from {files} file(s) in {self.seconds:.2f} s"
        if self.workers:
            text += f" on {self.workers} worker processes"
        if self.skipped:
            text += f"; {len(self.skipped)} file(s) not loaded"
        return text


def load(inputs: Iterable[Input], limits: Limits | None = None) -> LoadResult:
    """Read every image series from paths, folders, (name, bytes) pairs and zip archives.

    Bad files never stop the load: each one is listed in `skipped` with a plain reason.
    """
    start = time.perf_counter()
    limits = limits or Limits()
    files, skipped = expand(inputs, limits)
    dicom: list[SourceFile] = []
    series: list[Series] = []
    for src in files:
        try:
            head = src.head(512)
        except OSError as exc:
            skipped.append(Skipped(src.name, f"could not be read ({exc})"))
            continue
        if len(head) < 8:
            skipped.append(Skipped(src.name, f"is empty or too short to be an image ({len(head)} bytes)"))
            continue
        if looks_like_nifti(head, src.name):
            s, skip = read_nifti(src, limits)
        elif head[128:132] == b"DICM":
            dicom.append(src)
            continue
        elif looks_like_raster(head, src.name):
            s, skip = read_raster(src, limits)
        else:
            dicom.append(src)  # DICOM without preamble is tried last; the parser says if it is not
            continue
        if s is not None:
            series.append(s)
        if skip is not None:
            skipped.append(skip)
    workers = 0
    if dicom:
        ds_series, ds_skipped, stats = read_dicom(dicom, limits)
        series = ds_series + series
        skipped += ds_skipped
        workers = stats["workers"] if stats["in_workers"] else 0
    return LoadResult(series, skipped, time.perf_counter() - start, workers)
