"""Readers, like MONAI's: each says which files it claims from their first bytes and name, and
reads a batch of them. `REGISTRY` is the order they are asked in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from medui.errors import MedUIError
from medui.io.budget import FATAL
from medui.io.sources import Limits, Skipped, SourceFile
from medui.series import Series


@dataclass
class ReadResult:
    """What a reader made of its batch: the series, each file left out with its reason, and how."""

    series: list[Series] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    workers: int = 0  # worker processes that decoded pixels (0: all in this process)


class Reader(Protocol):
    """One file format. Readers with the same `name` share one batch (read by the first of them)."""

    @property
    def name(self) -> str: ...

    def claims(self, head: bytes, name: str) -> bool:
        """True when this reader should read a file starting with `head` (512 bytes) named `name`."""
        ...

    def read(self, sources: Sequence[SourceFile], limits: Limits) -> ReadResult:
        """Every series in `sources`; files that are no usable image go to `skipped`, never raise."""
        ...


def read_each(sources: Sequence[SourceFile], limits: Limits,
              read_one: Callable[[SourceFile, Limits], Series]) -> ReadResult:
    """A reader's batch read file by file: a MedUIError skips that file with its message; any other
    failure (a bug, a native decoder's panic) skips it too, with the error named."""
    result = ReadResult()
    for src in sources:
        if limits.exhausted and limits.budget is not None:
            result.skipped.append(Skipped(src.name, limits.budget.message("this file")))
            continue
        try:
            result.series.append(read_one(src, limits))
        except MedUIError as exc:
            result.skipped.append(Skipped.because(src.name, exc))
        except FATAL:
            raise
        except BaseException as exc:
            result.skipped.append(Skipped(src.name, unexpected(exc)))
    return result


def unexpected(exc: BaseException) -> str:
    """The reason given for a file whose reading failed in a way no check foresaw."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return (f"could not be read ({type(exc).__name__}{': ' + text if text else ''}); the file is probably "
            "damaged. Re-export it; if it opens elsewhere, please report it")


@dataclass(frozen=True)
class NiftiReader:
    name: str = "NIfTI"

    def claims(self, head: bytes, name: str) -> bool:
        from medui.io.nifti import looks_like_nifti

        return looks_like_nifti(head, name)

    def read(self, sources: Sequence[SourceFile], limits: Limits) -> ReadResult:
        from medui.io.nifti import read_nifti

        return read_each(sources, limits, read_nifti)


@dataclass(frozen=True)
class RasterReader:
    name: str = "raster"

    def claims(self, head: bytes, name: str) -> bool:
        from medui.io.raster import looks_like_raster

        return looks_like_raster(head, name)

    def read(self, sources: Sequence[SourceFile], limits: Limits) -> ReadResult:
        from medui.io.raster import read_raster

        return read_each(sources, limits, read_raster)


@dataclass(frozen=True)
class DicomReader:
    """DICOM files, all read at once (grouping into series needs every file of the upload).

    With `preamble` it claims files with 'DICM' at byte 128; without, it claims anything, so it
    goes last: the parser then says whether a file is DICOM without preamble or not an image.
    """

    preamble: bool = True
    name: str = "DICOM"

    def claims(self, head: bytes, name: str) -> bool:
        return head[128:132] == b"DICM" or not self.preamble

    def read(self, sources: Sequence[SourceFile], limits: Limits) -> ReadResult:
        from medui.io.dicom import read_dicom

        series, skipped, stats = read_dicom(sources, limits)
        return ReadResult(series, skipped, stats["workers"] if stats["in_workers"] else 0)


# Tried in this order; the first that claims a file reads it (the same rules as before readers).
REGISTRY: tuple[Reader, ...] = (NiftiReader(), DicomReader(preamble=True), RasterReader(),
                                DicomReader(preamble=False))
