"""One entry point for reading DICOM, NIfTI and raster images from any mix of inputs.

    >>> from medui.io.loader import load
    >>> result = load(["scan_folder/", ("upload.zip", zip_bytes)])
    >>> result.series[0].pixels.shape, result.skipped

`load` expands the inputs into files, reads each file's first bytes, hands every file to the first
reader of `medui.io.readers.REGISTRY` that claims it, and lets each reader read its whole batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medui.io.budget import FATAL
from medui.io.readers import REGISTRY, Reader, ReadResult
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

    def to_json(self) -> dict[str, Any]:
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


def _batches(files: Sequence[SourceFile], readers: Sequence[Reader],
             skipped: list[Skipped]) -> dict[str, tuple[Reader, list[SourceFile]]]:
    """Each file to the first reader that claims it; readers sharing a name share a batch."""
    batches: dict[str, tuple[Reader, list[SourceFile]]] = {}
    for src in files:
        try:
            head = src.head(512)
        except OSError as exc:
            skipped.append(Skipped(src.name, f"could not be read ({exc})"))
            continue
        if len(head) < 8:
            skipped.append(Skipped(src.name, f"is empty or too short to be an image ({len(head)} bytes)"))
            continue
        reader = next((r for r in readers if r.claims(head, src.name)), None)
        if reader is None:
            skipped.append(Skipped(src.name, "is not an image format MedUI reads (DICOM, NIfTI, PNG, JPEG, TIFF)"))
            continue
        batches.setdefault(reader.name, (reader, []))[1].append(src)
    return batches


def _read(reader: Reader, batch: list[SourceFile], limits: Limits) -> ReadResult:
    """A reader's batch; a reader that breaks costs its own files, never the other readers' series."""
    if limits.exhausted and limits.budget is not None:
        return ReadResult(skipped=[Skipped(src.name, limits.budget.message("this file")) for src in batch])
    try:
        return reader.read(batch, limits)
    except FATAL:
        raise
    except BaseException as exc:  # a bug, or a native decoder's panic: report it, keep the rest of the load
        reason = f"could not be read by the {reader.name} reader ({type(exc).__name__}: {exc}); please report it"
        return ReadResult(skipped=[Skipped(src.name, reason) for src in batch])


def load(inputs: Iterable[Input], limits: Limits | None = None,
         readers: Sequence[Reader] = REGISTRY) -> LoadResult:
    """Read every image series from paths, folders, (name, bytes) pairs and zip archives.

    Bad files never stop the load: each one is listed in `skipped` with a plain reason. Series
    come in the order of their first file among the inputs.
    """
    start = time.perf_counter()
    limits = (limits or Limits()).for_load()
    files, skipped = expand(inputs, limits)
    result = LoadResult(skipped=skipped)
    for reader, batch in _batches(files, readers, result.skipped).values():
        part = _read(reader, batch, limits)
        result.series += part.series
        result.skipped += part.skipped
        result.workers = max(result.workers, part.workers)
    order = {src.name: k for k, src in reversed(list(enumerate(files)))}
    result.series.sort(key=lambda s: order.get(s.files[0], len(order)) if s.files else len(order))
    result.seconds = time.perf_counter() - start
    return result
