"""Turn whatever a user gives (paths, folders, uploaded bytes, zip archives) into a flat list of files.

Zip archives are read in memory, never extracted to disk, and are checked for path traversal,
total size, member count and compression ratio before any member is inflated.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Protocol

from medui.errors import ImageTooLargeError, LoadBudgetError, MedUIError, UnsafeArchiveError
from medui.io.budget import Budget, default_load_bytes

GiB = 1024**3
if TYPE_CHECKING:
    from medui.io.pool import Workers

MiB = 1024**2


def _env_mb(name: str, default_mb: int) -> int:
    value = os.environ.get(name)
    return int(float(value) * MiB) if value else default_mb * MiB


@dataclass(frozen=True)
class Limits:
    """Safety limits for one load. Defaults can be changed with MEDUI_* environment variables."""

    max_archive_bytes: int = field(default_factory=lambda: _env_mb("MEDUI_MAX_ARCHIVE_MB", 4096))
    max_files: int = field(default_factory=lambda: int(os.environ.get("MEDUI_MAX_FILES", "20000")))
    max_ratio: float = 200.0
    max_zip_depth: int = 2
    max_image_bytes: int = field(default_factory=lambda: _env_mb("MEDUI_MAX_IMAGE_MB", 2048))
    max_series_bytes: int = field(default_factory=lambda: _env_mb("MEDUI_MAX_SERIES_MB", 6144))
    # Everything one load keeps (series, inflated archives): see medui.io.budget.
    max_load_bytes: int = field(default_factory=default_load_bytes)
    # Frames one DICOM file may declare (NumberOfFrames): per-frame work is refused above it.
    max_frames: int = field(default_factory=lambda: int(os.environ.get("MEDUI_MAX_FRAMES", "20000")))
    # Seconds one file may take to decode in a worker process before it is given up.
    # Seconds one DICOM header may take to parse (MEDUI_HEADER_TIMEOUT_S).
    header_seconds: float = field(default_factory=lambda: float(os.environ.get("MEDUI_HEADER_TIMEOUT_S", "10")))
    decode_seconds: float = field(default_factory=lambda: float(os.environ.get("MEDUI_DECODE_TIMEOUT_S", "120")))
    budget: Budget | None = field(default=None, compare=False, repr=False)
    # A server's decode workers, shared by all its loads (medui.io.parallel.shared_workers); None:
    # each load starts its own.
    workers: Workers | None = field(default=None, compare=False, repr=False)

    def for_load(self) -> Limits:
        """These limits with a fresh memory budget for one load (or the one they were given: a
        server's store hands each load a share of its own budget, `medui.io.store`)."""
        if self.budget is not None:
            return self
        return dataclasses.replace(self, budget=Budget(self.max_load_bytes))

    def check_image(self, need: int, what: str) -> None:
        """Raise ImageTooLargeError when one file's decoded pixels (`need` bytes) pass the image cap,
        or LoadBudgetError when they pass what is left of the load's budget."""
        require_memory(need, self.max_image_bytes, what, "MEDUI_MAX_IMAGE_MB")
        if self.budget is not None:
            require_memory(need, self.budget.limit, what, "MEDUI_MAX_LOAD_MB")
            if need > self.budget.remaining:
                raise LoadBudgetError(self.budget.message(what, need))

    def charge(self, need: int, what: str) -> None:
        """Count `need` bytes this load keeps against its budget (LoadBudgetError past it)."""
        if self.budget is not None:
            self.budget.charge(need, what)

    @property
    def exhausted(self) -> bool:
        """True once the load's budget is spent: nothing more is read."""
        return self.budget is not None and self.budget.full

    def check_series(self, need: int, what: str) -> None:
        """Raise ImageTooLargeError when a whole series' decoded pixels pass the series cap."""
        require_memory(need, self.max_series_bytes, what, "MEDUI_MAX_SERIES_MB")


def require_memory(need: int, limit: int, what: str, setting: str) -> None:
    """The one memory check every reader makes before decoding: raises ImageTooLargeError.

    `what` says what was measured, e.g. '512x512, 300 frame(s)'; `setting` is the variable that
    raises the limit.
    """
    if need > limit:
        raise ImageTooLargeError(
            f"would need {need / MiB:.0f} MiB of memory once decoded ({what}); the limit is "
            f"{limit / MiB:.0f} MiB. Raise {setting} if this machine has the memory")


@dataclass(frozen=True)
class SourceFile:
    """One file to read: a display name (relative path) and either its bytes or a path on disk."""

    name: str
    data: bytes | None = None
    path: str | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        return Path(self._path()).read_bytes()

    def _path(self) -> str:
        if self.path is None:
            raise ValueError(f"{self.name}: a SourceFile needs either data or a path")
        return self.path

    def open(self) -> BinaryIO:
        """A binary file object over the bytes or the file on disk (close it, or use `with`)."""
        return io.BytesIO(self.data) if self.data is not None else open(self._path(), "rb")

    def head(self, n: int = 512) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with open(self._path(), "rb") as fh:
            return fh.read(n)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else os.path.getsize(self._path())


@dataclass(frozen=True)
class Skipped:
    """A file that was not loaded, and why, in plain words."""

    file: str
    reason: str

    @classmethod
    def because(cls, name: str, error: MedUIError) -> Skipped:
        """The file, skipped for the reason a reader's error gives."""
        return cls(name, str(error))


class Upload(Protocol):
    """An uploaded file object (Streamlit's UploadedFile, ...): a name and its bytes."""

    @property
    def name(self) -> str: ...

    def getvalue(self) -> bytes: ...


# A path or folder, a (name, bytes) pair, an uploaded file object or a SourceFile.
Input = str | os.PathLike[str] | tuple[str, bytes] | Upload | SourceFile

_IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p in _IGNORED_NAMES or p.startswith("._") or p == "__MACOSX" for p in parts)


def is_zip(head: bytes) -> bool:
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def expand(inputs: Iterable[Input], limits: Limits | None = None) -> tuple[list[SourceFile], list[Skipped]]:
    """Flatten paths, folders, (name, bytes) pairs and zips into files; unsafe archives are skipped."""
    limits = limits or Limits()
    files: list[SourceFile] = []
    skipped: list[Skipped] = []
    for item in inputs:
        try:
            sources = _to_sources(item, skipped)
        except OSError as exc:  # a folder that cannot be listed (permissions, a vanished mount, ...)
            skipped.append(Skipped(printable(str(item))[:200], f"could not be listed ({exc.strerror or exc}); "
                                                               "check that the folder can be read"))
            continue
        for src in sources:
            _add(src, files, skipped, limits, depth=0)
    if len(files) > limits.max_files:
        skipped.append(Skipped(f"{len(files) - limits.max_files} more files",
                               f"an upload may hold at most {limits.max_files} files; the rest were not read. "
                               "Upload fewer files at a time or raise MEDUI_MAX_FILES."))
        files = files[: limits.max_files]
    return files, skipped


def _to_sources(item: Input, skipped: list[Skipped]) -> list[SourceFile]:
    if isinstance(item, SourceFile):
        return [item]
    if isinstance(item, tuple) and len(item) == 2:
        name, data = item
        return [SourceFile(printable(str(name)), data=bytes(data))]
    if not isinstance(item, (str, os.PathLike)) and hasattr(item, "getvalue") and hasattr(item, "name"):
        return [SourceFile(printable(str(item.name)), data=bytes(item.getvalue()))]  # file-like uploads
    if not isinstance(item, (str, os.PathLike)):
        skipped.append(Skipped(repr(item)[:80], "is not a path, a (name, bytes) pair or an uploaded file"))
        return []
    path = Path(item)
    if path.is_dir():
        out = []
        for p in sorted(path.rglob("*")):
            if p.is_file():
                rel = p.relative_to(path.parent).as_posix()
                if not _ignored(rel):
                    out.append(SourceFile(printable(rel), path=str(p)))
        if not out:
            skipped.append(Skipped(printable(str(path)), "the folder holds no files"))
        return out
    if path.is_file():
        return [SourceFile(printable(path.name), path=str(path))]
    skipped.append(Skipped(printable(str(path)), "no such file or folder; check the path"))
    return []


def _add(src: SourceFile, files: list[SourceFile], skipped: list[Skipped], limits: Limits, depth: int) -> None:
    if _ignored(src.name):
        return
    if limits.exhausted:
        skipped.append(Skipped(src.name, limits.budget.message("this file") if limits.budget else "not read"))
        return
    try:
        head = src.head(8)
    except OSError as exc:
        skipped.append(Skipped(src.name, f"could not be opened ({exc.strerror or exc})"))
        return
    if is_gzip(head) and not src.name.lower().endswith(".nii.gz"):
        try:
            src = gunzip_dicom(src, limits)
        except MedUIError as exc:
            skipped.append(Skipped.because(src.name, exc))
            return
        head = src.head(8)
    if not is_zip(head):
        files.append(src)
        return
    if depth >= limits.max_zip_depth:
        skipped.append(Skipped(src.name, f"zip archives nested more than {limits.max_zip_depth} deep are not opened"))
        return
    try:
        members = read_zip(src, limits)
    except MedUIError as exc:
        skipped.append(Skipped.because(src.name, exc))
        return
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError, ValueError,
            zlib_error()) as exc:
        skipped.append(Skipped(src.name, f"is not a readable zip archive ({exc}); "
                                         "re-create it with a standard zip tool"))
        return
    except Exception as exc:  # anything zipfile did not foresee: this archive only
        skipped.append(Skipped(src.name, f"is not a readable zip archive ({type(exc).__name__}: {exc}); "
                                         "re-create it with a standard zip tool"))
        return
    if not members:
        skipped.append(Skipped(src.name, "is a zip archive with no files in it (empty, or only folders); "
                                         "check that the archive was made from the image files"))
    for member in members:
        _add(member, files, skipped, limits, depth + 1)


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def read_bounded(fh: Readable, limit: int, limits: Limits, what: str, chunk: int = 4 * MiB) -> bytes:
    """Up to `limit` bytes from an inflating stream, each chunk charged to the load's budget as it
    comes out (the stream's own claims about its size are never trusted)."""
    parts: list[bytes] = []
    got = 0
    try:
        while got < limit:
            block = fh.read(min(chunk, limit - got))
            if not block:
                break
            limits.charge(len(block), what)
            parts.append(block)
            got += len(block)
    except BaseException:
        if limits.budget is not None:
            limits.budget.release(got)  # what was inflated is dropped
        raise
    return b"".join(parts)


def gunzip_dicom(src: SourceFile, limits: Limits) -> SourceFile:
    """A gzip-compressed single file (.dcm.gz), inflated in memory under the image cap and the
    load's budget. Files that do not inflate to DICOM are returned as they are."""
    with src.open() as raw, gzip.GzipFile(fileobj=raw) as gz:
        try:
            head = gz.read(132)
        except (OSError, EOFError, zlib_error()) as exc:
            raise UnsafeArchiveError(f"is a damaged gzip file ({exc}); compress it again") from exc
        if head[128:132] != b"DICM" and not src.name.lower().endswith((".dcm.gz", ".dicom.gz")):
            return src
        try:
            body = read_bounded(gz, limits.max_image_bytes + 1, limits, f"inflating {src.name}")
        except (OSError, EOFError, zlib_error()) as exc:
            raise UnsafeArchiveError(f"is a damaged gzip file ({exc}); compress it again") from exc
    if len(body) > limits.max_image_bytes:
        raise ImageTooLargeError(f"inflates to more than {limits.max_image_bytes / MiB:.0f} MiB (gzip); the "
                                 "limit is MEDUI_MAX_IMAGE_MB. Send the file uncompressed or raise the limit")
    name = src.name[:-3] if src.name.lower().endswith(".gz") else src.name
    return SourceFile(name, data=head + body)


def printable(name: str) -> str:
    """A file name safe to show and log: control characters become '?'."""
    return "".join("?" if ord(c) < 32 or 0x7F <= ord(c) < 0xA0 else c for c in name)


def _safe_member_name(name: str) -> str | None:
    norm = printable(name).replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return None
    parts = PurePosixPath(norm).parts
    if any(p == ".." for p in parts):
        return None
    return "/".join(p for p in parts if p not in ("", "."))


def read_zip(src: SourceFile, limits: Limits) -> list[SourceFile]:
    """Read every file of a zip archive into memory after checking it is safe to inflate."""
    with src.open() as fh, zipfile.ZipFile(fh) as zf:  # read from the file: never the whole archive at once
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > limits.max_files:
            raise UnsafeArchiveError(
                f"holds {len(infos)} files; at most {limits.max_files} are read from one archive. "
                "Split the archive or raise MEDUI_MAX_FILES.")
        total = sum(i.file_size for i in infos)
        if total > limits.max_archive_bytes:
            raise UnsafeArchiveError(
                f"would inflate to {total / MiB:.0f} MiB; the limit is {limits.max_archive_bytes / MiB:.0f} MiB. "
                "Upload the series in parts or raise MEDUI_MAX_ARCHIVE_MB.")
        compressed = sum(i.compress_size for i in infos)
        if total > 10 * MiB and total > limits.max_ratio * max(compressed, 1):
            raise UnsafeArchiveError(
                f"has a compression ratio of {total / max(compressed, 1):.0f}:1, above the {limits.max_ratio:.0f}:1 "
                "allowed (a possible zip bomb). Medical images rarely compress this much; check the archive.")
        out: list[SourceFile] = []
        try:
            _read_members(zf, infos, src, limits, out)
        except BaseException:
            if limits.budget is not None:  # the archive is skipped whole: its members are dropped
                limits.budget.release(sum(len(m.data or b"") for m in out))
            raise
        return out


def _read_members(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], src: SourceFile, limits: Limits,
                  out: list[SourceFile]) -> None:
    """Inflate each member (checked: name, ratio, real size) into `out`."""
    for info in infos:
        name = _safe_member_name(info.filename)
        if name is None:
            raise UnsafeArchiveError(
                f"contains the unsafe path '{printable(info.filename)}' (absolute or with '..'); "
                "archives must hold relative paths only. Re-create the archive from the folder itself.")
        if _ignored(name):
            continue
        if info.file_size > 1 * MiB and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise UnsafeArchiveError(
                f"member '{name}' has a compression ratio of {info.file_size / max(info.compress_size, 1):.0f}:1, "
                f"above the {limits.max_ratio:.0f}:1 allowed (a possible zip bomb).")
        with zf.open(info) as fh:
            payload = read_bounded(fh, info.file_size + 1, limits, f"inflating '{name}' from {src.name}")
        if len(payload) > info.file_size:
            raise UnsafeArchiveError(f"member '{name}' inflates to more than its declared size; "
                                     "the archive is corrupt")
        out.append(SourceFile(f"{src.name}/{name}", data=payload))
