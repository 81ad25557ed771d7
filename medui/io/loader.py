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
from typing import TYPE_CHECKING, Any

from medui.io.budget import FATAL
from medui.io.readers import REGISTRY, Reader, ReadResult
from medui.io.sources import Input, Limits, Skipped, SourceFile, expand
from medui.series import Series

if TYPE_CHECKING:
    from medui.io.prefetch import DicomPrefetch

__all__ = ["load", "Loading", "LoadResult", "Limits", "Skipped", "SourceFile", "Series"]


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


def _claim(src: SourceFile, readers: Sequence[Reader], skipped: list[Skipped]) -> Reader | None:
    """The first reader that claims a file (None: skipped, with why)."""
    try:
        head = src.head(512)
    except OSError as exc:
        skipped.append(Skipped(src.name, f"could not be read ({exc})"))
        return None
    if len(head) < 8:
        skipped.append(Skipped(src.name, f"is empty or too short to be an image ({len(head)} bytes)"))
        return None
    reader = next((r for r in readers if r.claims(head, src.name)), None)
    if reader is None:
        skipped.append(Skipped(src.name, "is not an image format MedUI reads (DICOM, NIfTI, PNG, JPEG, TIFF)"))
    return reader


def _batches(files: Sequence[SourceFile], readers: Sequence[Reader],
             skipped: list[Skipped]) -> dict[str, tuple[Reader, list[SourceFile]]]:
    """Each file to the first reader that claims it; readers sharing a name share a batch."""
    batches: dict[str, tuple[Reader, list[SourceFile]]] = {}
    for src in files:
        reader = _claim(src, readers, skipped)
        if reader is not None:
            batches.setdefault(reader.name, (reader, []))[1].append(src)
    return batches


def _read(reader: Reader, batch: list[SourceFile], limits: Limits, early: DicomPrefetch | None = None) -> ReadResult:
    """A reader's batch; a reader that breaks costs its own files, never the other readers' series."""
    if limits.exhausted and limits.budget is not None:
        if early is not None:
            early.close()
        return ReadResult(skipped=[Skipped(src.name, limits.budget.message("this file")) for src in batch])
    try:
        return early.read() if early is not None else reader.read(batch, limits)
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
    return _finish(result, files, _batches(files, readers, result.skipped), limits, {}, start)


def _finish(result: LoadResult, files: Sequence[SourceFile], batches: dict[str, tuple[Reader, list[SourceFile]]],
            limits: Limits, early: dict[str, DicomPrefetch], start: float) -> LoadResult:
    """Each batch read (by its reader, or by what read it ahead), the series in the order of their first file."""
    for name, (reader, batch) in batches.items():
        part = _read(reader, batch, limits, early.get(name))
        result.series += part.series
        result.skipped += part.skipped
        result.workers = max(result.workers, part.workers)
    order = {src.name: k for k, src in reversed(list(enumerate(files)))}
    result.series.sort(key=lambda s: order.get(s.files[0], len(order)) if s.files else len(order))
    result.seconds = time.perf_counter() - start
    return result


class Loading:
    """A load fed one input at a time, e.g. instances as a PACS sends them: DICOM files start being
    decoded on the worker processes while later ones still arrive (`medui.io.prefetch`). `finish()`
    gives what `load` gives for all the inputs added, in that order (the same series, voxels and
    skipped files); `seconds` counts from the Loading's creation.

        with Loading(expected=255) as loading:
            for name, data in arriving:
                loading.add((name, data))
            result = loading.finish()
    """

    def __init__(self, limits: Limits | None = None, readers: Sequence[Reader] = REGISTRY,
                 expected: int | None = None) -> None:
        self._start = time.perf_counter()
        self.limits = (limits or Limits()).for_load()
        self._readers = readers
        self._expected = expected
        self._files: list[SourceFile] = []
        self._expand_skipped: list[Skipped] = []
        self._claim_skipped: list[Skipped] = []
        self._over = 0  # files past max_files (`expand` names how many)
        self._batches: dict[str, tuple[Reader, list[SourceFile]]] = {}
        self._early: dict[str, DicomPrefetch] = {}
        self._done = False

    def add(self, item: Input) -> None:
        """One more input (a file's bytes, a path, a zip...); DICOM files start decoding now."""
        from medui.io.prefetch import DicomPrefetch

        if self._done:
            raise RuntimeError("this Loading has finished; start another")
        files, skipped = expand([item], self.limits)
        self._expand_skipped += skipped
        for src in files:
            if len(self._files) >= self.limits.max_files:
                self._over += 1
                continue
            self._files.append(src)
            reader = _claim(src, self._readers, self._claim_skipped)
            if reader is None:
                continue
            self._batches.setdefault(reader.name, (reader, []))[1].append(src)
            if reader.name == "DICOM":
                self._early.setdefault(reader.name, DicomPrefetch(self.limits, self._expected)).add(src)

    def finish(self) -> LoadResult:
        """Everything added, read: the same result as `load` of those inputs."""
        if self._done:
            raise RuntimeError("this Loading has finished already")
        self._done = True
        skipped = list(self._expand_skipped)
        if self._over:
            skipped.append(Skipped(f"{self._over} more files",
                                   f"an upload may hold at most {self.limits.max_files} files; the rest were not "
                                   "read. Upload fewer files at a time or raise MEDUI_MAX_FILES."))
        result = LoadResult(skipped=skipped + self._claim_skipped)
        try:
            return _finish(result, self._files, self._batches, self.limits, self._early, self._start)
        finally:
            self.close()

    @property
    def decoded_ahead(self) -> int:
        """How many files were decoded while later ones still arrived (after `finish`)."""
        return sum(early.staged for early in self._early.values())

    def close(self) -> None:
        """Stop any decoding started (a load abandoned before `finish`); harmless after it."""
        for early in self._early.values():
            early.close()

    def __enter__(self) -> Loading:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
