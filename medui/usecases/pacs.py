"""PACS use cases, shared by the PACS panels and `python -m medui pacs`: test a node, search studies
(paged), list series, retrieve into the one loader (`medui.io.loader`), send objects back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require
from medui.errors import MedUIError, PacsConfigError
from medui.io.loader import Limits, Loading, LoadResult, load
from medui.pacs import dicomweb, dimse
from medui.pacs.config import get_node, load_nodes
from medui.pacs.model import PAGE_SIZE, PROTOCOLS, Node, Page, SeriesInfo, Study, StudyQuery

Progress = Callable[[int, int | None], None]  # (instances received, expected or None)


def protocol(node: Node, wanted: str | None = None) -> str:
    """The protocol to use with `node`: `wanted` if the node has it, else DICOMweb first."""
    if wanted is not None:
        if wanted not in PROTOCOLS:
            raise PacsConfigError(f"unknown protocol {wanted!r}; choose one of {', '.join(PROTOCOLS)}")
        if wanted not in node.protocols:
            raise PacsConfigError(f"the PACS node {node.name!r} has no {wanted} peer configured "
                                  f"(it has: {', '.join(node.protocols)})")
        return wanted
    return node.protocols[0]


def nodes() -> dict[str, Node]:
    return load_nodes()


def node(name: str | None = None) -> Node:
    return get_node(name)


def echo(node: Node) -> list[tuple[str, bool, str]]:
    """Each configured protocol's connection test: (protocol, ok, what was found or the error)."""
    out = []
    for proto in node.protocols:
        try:
            out.append((proto, True, dicomweb.echo(node) if proto == "dicomweb" else dimse.echo(node)))
        except MedUIError as exc:
            out.append((proto, False, str(exc)))
    return out


def search(node: Node, query: StudyQuery, offset: int = 0, limit: int = PAGE_SIZE,
           using: str | None = None) -> Page[Study]:
    """One page of matching studies (`limit`, 50 by default); `Page.more` says whether another follows."""
    if protocol(node, using) == "dicomweb":
        return dicomweb.search_studies(node, query, offset, limit)
    return dimse.search_studies(node, query, offset, limit)


def series(node: Node, study_uid: str, using: str | None = None) -> list[SeriesInfo]:
    if protocol(node, using) == "dicomweb":
        return dicomweb.search_series(node, study_uid)
    return dimse.search_series(node, study_uid)


def thumbnail(node: Node, info: SeriesInfo) -> bytes | None:
    """A rendered JPEG of the series' middle instance (DICOMweb nodes); None when none can be had."""
    if node.dicomweb is None or info.modality in ("SR", "PR", "KO", "SEG", "RTSTRUCT", "RTPLAN", "DOC"):
        return None
    try:
        return dicomweb.thumbnail(node, info.study_uid, info.uid)
    except MedUIError:
        return None


@dataclass
class Retrieval:
    """What a retrieval brought: the instances as (name, bytes), and why it stopped early, if it did."""

    items: list[tuple[str, bytes]] = field(default_factory=list)
    error: str = ""
    cancelled: bool = False
    seconds: float = 0.0
    loading: Loading | None = field(default=None, repr=False)  # decoding as they arrived (`decode_ahead`)

    def close(self) -> None:
        """Stop decoding ahead (a retrieval that will not be loaded); `load_retrieved` still works."""
        if self.loading is not None:
            self.loading.close()

    @property
    def complete(self) -> bool:
        return not self.error and not self.cancelled

    def summary(self) -> str:
        size = sum(len(b) for _, b in self.items) / 1e6
        text = f"{len(self.items)} instance(s), {size:.1f} MB in {self.seconds:.1f} s"
        if self.cancelled:
            text += "; cancelled"
        if self.error:
            text += f"; stopped: {self.error}"
        return text


def retrieve(node: Node, study_uid: str, series_uid: str | None = None, expected: int | None = None,
             progress: Progress | None = None, cancel: threading.Event | None = None,
             using: str | None = None, decode_ahead: bool = False, limits: Limits | None = None) -> Retrieval:
    """Retrieve a series (or the whole study) by WADO-RS or C-GET into memory. A failure part-way
    is kept in `error` with everything received until then (nothing already loaded is touched).

    `decode_ahead`: each instance goes to the loader as it arrives (`medui.io.loader.Loading`: the
    decode workers read it while later ones still come), and `load_retrieved` only finishes the
    load; the result is the same as loading the items afterwards."""
    out = Retrieval(loading=Loading(limits, expected=expected) if decode_ahead else None)
    start = time.perf_counter()

    def got(name: str, data: bytes) -> None:
        out.items.append((name, data))
        if out.loading is not None:
            out.loading.add((name, data))
        if progress is not None:
            progress(len(out.items), expected)

    module = dicomweb if protocol(node, using) == "dicomweb" else dimse
    try:
        module.retrieve(node, study_uid, series_uid, got, cancel)
    except MedUIError as exc:
        out.error = str(exc)
    except BaseException:
        out.close()
        raise
    out.cancelled = cancel is not None and cancel.is_set()
    out.seconds = time.perf_counter() - start
    return out


def load_retrieved(retrieval: Retrieval, limits: Limits | None = None) -> LoadResult:
    """The retrieved instances through the same loader as uploads (finishing the load started
    while they arrived, when the retrieval decoded ahead)."""
    loading, retrieval.loading = retrieval.loading, None
    if loading is not None:
        return loading.finish()
    return load(retrieval.items, limits)


def write_folder(retrieval: Retrieval, folder: Path) -> list[Path]:
    """The retrieved instances as files in `folder` (for `pacs get --out`)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in retrieval.items:
        path = folder / Path(name).name
        path.write_bytes(data)
        paths.append(path)
    return paths


def send(node: Node, datasets: Sequence[pydicom.Dataset], using: str | None = None,
         actor: Actor | None = None) -> list[str]:
    """Store objects on the PACS (STOW-RS or C-STORE); the SOP Instance UIDs stored. Needs the
    'send-result' permission; the audit trail records the studies, the node and how many objects."""
    who = current(actor)
    studies = sorted({f"study {getattr(ds, 'StudyInstanceUID', '') or '-'}" for ds in datasets})
    with audit.attempt(audit.SEND_RESULT, who, studies, {"node": node.name, "objects": len(datasets)}) as step:
        require(who, "send-result", "sending results to a PACS")
        stored = dicomweb.store(node, datasets) if protocol(node, using) == "dicomweb" else dimse.store(node, datasets)
        step.details["stored"] = len(stored)
    return stored
