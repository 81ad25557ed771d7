"""Where a batch job's studies come from: a server folder or zip (within MEDUI_DATA_ROOTS), or a PACS query.

A source lists its studies as `StudyKey`s (identifiers only) and gives one study's files at a time,
which `prefetched` reads with the one loader, so a batch reads what Viewer and Diagnose read. Folder
files are grouped by Study Instance UID from their headers; a file without one (PNG, JPEG, NIfTI, a
file that is not DICOM) is a study of its own, keyed by a hash of its path within the folder (never
the name itself).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pydicom
from pydicom.errors import InvalidDicomError

from medui.db.worklist import StudyKey
from medui.errors import BatchError, MedUIError
from medui.io.loader import LoadResult, load
from medui.io.sources import SourceFile, expand, is_zip
from medui.pacs.model import PAGE_SIZE, Node, StudyQuery
from medui.training.folders import list_inputs

A = TypeVar("A")
T = TypeVar("T")
TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber", "Modality", "StudyDate"]


class Source(Protocol):
    def studies(self) -> list[StudyKey]: ...

    def inputs(self, study_uid: str) -> list[Any]: ...


def _text(ds: Any, name: str, size: int) -> str:
    return str(getattr(ds, name, "") or "")[:size]


def file_key(name: str) -> str:
    """The key of a file that carries no Study Instance UID: a hash of its path in the folder."""
    return "file-" + hashlib.sha256(name.encode()).hexdigest()[:24]


@dataclass
class FolderSource:
    """A folder or zip on the server, within `roots` (MEDUI_DATA_ROOTS)."""

    path: Path
    roots: list[Path]

    def __post_init__(self) -> None:
        self._files: dict[str, list[SourceFile]] | None = None

    def _group(self) -> dict[str, list[SourceFile]]:
        if self._files is not None:
            return self._files
        try:
            listed, _skipped = list_inputs([self.path], self.roots)
        except MedUIError as exc:
            raise BatchError(f"the batch source {self.path}: {exc}") from exc
        files: list[SourceFile] = []
        for item in listed:
            if isinstance(item, SourceFile) and is_zip(item.head(4)):
                files += expand([item])[0]
            elif isinstance(item, SourceFile):
                files.append(item)
        groups: dict[str, list[SourceFile]] = {}
        self._keys: dict[str, StudyKey] = {}
        for src in files:
            key = self._key(src)
            groups.setdefault(key.study_uid, []).append(src)
            self._keys.setdefault(key.study_uid, key)
        self._files = groups
        return groups

    @staticmethod
    def _key(src: SourceFile) -> StudyKey:
        try:
            with src.open() as fh:
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=TAGS)
            uid = _text(ds, "StudyInstanceUID", 128)
        except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, EOFError, KeyError):
            return StudyKey(file_key(src.name))
        if not uid:
            return StudyKey(file_key(src.name))
        return StudyKey(uid, _text(ds, "SeriesInstanceUID", 128), _text(ds, "AccessionNumber", 64),
                        _text(ds, "Modality", 16), _text(ds, "StudyDate", 8))

    def studies(self) -> list[StudyKey]:
        groups = self._group()
        if not groups:
            raise BatchError(f"the batch source {self.path} holds no files MedUI can read; choose a folder of studies")
        return [self._keys[uid] for uid in groups]

    def inputs(self, study_uid: str) -> list[Any]:
        """The study's files, for the one loader (a study no longer in the folder: BatchError)."""
        found = self._group().get(study_uid)
        if not found:
            raise BatchError(f"study {study_uid} is no longer in {self.path}; it was moved or deleted")
        return list(found)


@dataclass
class PacsSource:
    """Studies found by a PACS query (date range, modality, accession filter), at most `limit`."""

    node: str
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""
    accession: str = ""
    limit: int = 200
    using: str | None = None

    def node_obj(self) -> Node:
        """The configured PACS node this source queries."""
        from medui.usecases import pacs

        return pacs.node(self.node or None)

    def _node(self) -> Node:
        return self.node_obj()

    def studies(self) -> list[StudyKey]:
        from medui.usecases import pacs

        node = self._node()
        query = StudyQuery(accession=self.accession, date_from=self.date_from, date_to=self.date_to,
                           modality=self.modality)
        keys: list[StudyKey] = []
        offset = 0
        while len(keys) < self.limit:
            page = pacs.search(node, query, offset, min(PAGE_SIZE, self.limit - len(keys)), using=self.using)
            for s in page.items:
                modality = self.modality or s.modalities.split("\\")[0]
                keys.append(StudyKey(s.uid, "", s.accession[:64], modality[:16], s.date[:8]))
            offset += len(page.items)
            if not page.more or not page.items:
                break
        return keys[:self.limit]

    def inputs(self, study_uid: str) -> list[Any]:
        """The study's instances as (name, bytes), retrieved from the PACS."""
        from medui.usecases import pacs

        got = pacs.retrieve(self._node(), study_uid, using=self.using)
        if got.error and not got.items:
            raise BatchError(f"the PACS could not give study {study_uid}: {got.error}")
        return list(got.items)


def source_from(params: dict[str, Any]) -> Source:
    """The source a job's params.json names ({"source": {"kind": "folder"|"pacs", ...}})."""
    spec = dict(params.get("source") or {})
    if spec.get("kind") == "folder":
        from medui.usecases.train import data_roots

        return FolderSource(Path(spec["path"]), data_roots())
    if spec.get("kind") == "pacs":
        return PacsSource(spec.get("node", ""), _date(spec.get("date_from")), _date(spec.get("date_to")),
                          spec.get("modality", ""), spec.get("accession", ""), int(spec.get("limit") or 200),
                          spec.get("using"))
    raise BatchError(f"the job's source {spec!r} is neither a folder nor a PACS query")


def _date(text: Any) -> date | None:
    return date.fromisoformat(str(text)) if text else None


def describe(params: dict[str, Any]) -> str:
    """One line for lists: the folder, or the PACS query (no patient data)."""
    spec = dict(params.get("source") or {})
    if spec.get("kind") == "folder":
        return f"folder {spec.get('path')}"
    parts = [f"PACS {spec.get('node') or 'default'}"]
    for name in ("modality", "date_from", "date_to", "accession"):
        if spec.get(name):
            parts.append(f"{name.replace('_', ' ')} {spec[name]}")
    return ", ".join(parts) + f", at most {spec.get('limit') or 200}"


def _attempt(fn: Callable[[A], T], arg: A) -> T | str:
    """`fn(arg)`, or the reason it failed (a study that fails is recorded with it and the job goes on)."""
    try:
        return fn(arg)
    except MedUIError as exc:
        return str(exc)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _ahead(items: Generator[T, None, None], depth: int, name: str) -> Iterator[T]:
    """`items`, produced in a thread of their own up to `depth` ahead of the caller; closing this
    generator stops the thread (and closes `items`)."""
    import queue
    import threading

    out: queue.Queue[tuple[T] | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        out.put((item,), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        finally:
            items.close()
            out.put(None)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (got := out.get()) is not None:
            yield got[0]
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                out.get(timeout=0.1)


def prefetched(source: Source, keys: list[StudyKey], depth: int = 2) -> Iterator[tuple[StudyKey, LoadResult | str]]:
    """(key, loaded study or the reason it could not be) for each key, in a pipeline: one thread retrieves
    the next study's files (from a PACS: the network), another decodes the one before, up to `depth`
    studies ahead, while the caller scores: retrieval, decoding and inference overlap."""

    def retrieved() -> Generator[tuple[StudyKey, list[Any] | str], None, None]:
        for key in keys:
            yield key, _attempt(source.inputs, key.study_uid)

    def decoded() -> Generator[tuple[StudyKey, LoadResult | str], None, None]:
        for key, inputs in _ahead(retrieved(), 1, "batch-retrieve"):  # one study's bytes waiting, at most
            yield key, inputs if isinstance(inputs, str) else _attempt(load, inputs)

    yield from _ahead(decoded(), depth, "batch-decode")
