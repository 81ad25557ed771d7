"""Classic DICOM (DIMSE) through `pynetdicom`: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

Retrieval is by C-GET by default: the instances come back on MedUI's own association (MedUI takes
the SCP role for their storage SOP classes), so the PACS needs no route back to MedUI. A node with
`retrieve = "c-move"` uses C-MOVE instead: MedUI runs a storage SCP on `own_port` for the duration
of the move, and the PACS must list MedUI's AE title, host and port among its modalities (Orthanc:
`DicomModalities`).

A C-GET of `PARALLEL_MIN` instances or more from a node with `parallel` = K > 1 lists the instances
first (C-FIND at IMAGE level) and fetches them in K groups, each by its own association at once
(`medui.pacs.dimse_get`): each instance is a C-STORE sub-operation round trip, and K associations
keep K in flight. A group's C-GET names its instances (a list of SOP Instance UIDs, per series)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, build_role, evt
from pynetdicom.association import Association

from medui.errors import PacsConnectionError, PacsRequestError, PacsTimeoutError
from medui.pacs import dimse_get, store_reply
from medui.pacs.model import PAGE_SIZE, DimsePeer, Node, Page, SeriesInfo, Study, StudyQuery, as_file, number, text

# pynetdicom's "standard" handlers format a log record of every DIMSE message and PDU (its DEBUG/INFO
# lines, which MedUI never shows): 10-20% of a C-GET's CPU. Its warnings and errors are still logged.
# (A library setting, set once for the process; `_config` is how pynetdicom documents it.)
_config.LOG_HANDLER_LEVEL = "none"

PENDING = (0xFF00, 0xFF01)
Verification = "1.2.840.10008.1.1"
StudyRootQueryRetrieveInformationModelFind = "1.2.840.10008.5.1.4.1.2.2.1"
StudyRootQueryRetrieveInformationModelGet = "1.2.840.10008.5.1.4.1.2.2.3"
StudyRootQueryRetrieveInformationModelMove = "1.2.840.10008.5.1.4.1.2.2.2"
UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
# One presentation context each: Orthanc (1.10) sends a stored file unchanged only when a context
# offers exactly its transfer syntax; offered together, it picks the first and transcodes (or fails).
COMPRESSED = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
              "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
              "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99")
PARALLEL_MIN = 32  # instances: a C-GET of fewer uses one association (listing them would cost more than it saves)
GET_BATCH = 500  # SOP Instance UIDs named in one C-GET (one UI element holds 65,534 bytes at most, ~1,000 UIDs)


def _peer(node: Node) -> DimsePeer:
    if node.dimse is None:
        raise PacsConnectionError(f"the PACS node {node.name!r} has no DIMSE peer; use DICOMweb or add ae_title, "
                                  "host and port")
    return node.dimse


def _where(node: Node) -> str:
    p = _peer(node)
    return f"the PACS {node.name!r} ({p.ae_title}@{p.host}:{p.port})"


@contextmanager
def _association(node: Node, contexts: Sequence[tuple[str, Sequence[str]]], roles: Sequence[Any] = (),
                 handlers: Sequence[Any] = ()) -> Iterator[Association]:
    peer = _peer(node)
    ae = AE(ae_title=peer.own_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peer.timeout
    ae.connection_timeout = min(peer.timeout, 10.0)
    # max_pdu=0 below: PDUs of any size. `associate` has its own default (16 kB), which costs one trip
    # through pynetdicom's state machine per 16 kB received; `ae.maximum_pdu_size` only covers accepting
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, list(syntaxes))
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, max_pdu=0, ext_neg=list(roles) or None,
                         evt_handlers=list(handlers) or None)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise PacsConnectionError(f"{_where(node)} rejected an association from {peer.own_ae_title}; check its "
                                      f"AE title and that it knows {peer.own_ae_title} as a modality")
        raise PacsConnectionError(f"{_where(node)} could not open an association (no DICOM answer at "
                                  f"{peer.host}:{peer.port}); check that it runs and the host and port")
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    if contexts and contexts[0][0] not in accepted:
        assoc.release()
        raise PacsConnectionError(f"{_where(node)} refused the service {pydicom.uid.UID(contexts[0][0]).name} to "
                                  f"{peer.own_ae_title}; the PACS must list {peer.own_ae_title} (this host) among "
                                  "its modalities with this service allowed")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _check(node: Node, status: Dataset | None, doing: str, since: float) -> int:
    """The status code of a response; an error for a failure or no answer (`since`: when the wait began)."""
    if status is None or "Status" not in status:
        peer = _peer(node)
        if time.monotonic() - since >= 0.8 * peer.timeout:
            raise PacsTimeoutError(f"{_where(node)} stopped answering while {doing} (nothing for {peer.timeout:g} s); "
                                   "try again, or raise timeout_s for this node")
        raise PacsConnectionError(f"{_where(node)} ended the association without an answer while {doing}; a PACS "
                                  f"does that when it does not allow {peer.own_ae_title} this service: list "
                                  f"{peer.own_ae_title} (this host) among its modalities")
    code = int(status.Status)
    if code not in PENDING and code not in (0x0000, 0xFE00) and not 0xB000 <= code <= 0xBFFF:
        raise PacsRequestError(f"{_where(node)} answered status 0x{code:04X} while {doing}; expected success "
                               "(0x0000). See the PACS log")
    return code


def echo(node: Node) -> str:
    with _association(node, [(Verification, ALL_TRANSFER_SYNTAXES[:3])]) as assoc:
        since = time.monotonic()
        _check(node, assoc.send_c_echo(), "answering C-ECHO", since)
    return f"DIMSE {_peer(node).ae_title} answers C-ECHO"


def _find(node: Node, query: Dataset, skip: int, keep: int) -> list[Dataset]:
    """C-FIND (study root); the identifiers after `skip`, at most `keep` (the rest is cancelled)."""
    out: list[Dataset] = []
    with _association(node, [(StudyRootQueryRetrieveInformationModelFind, ALL_TRANSFER_SYNTAXES[:3])]) as assoc:
        since = time.monotonic()
        for seen, (status, ident) in enumerate(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind), 1):
            if _check(node, status, "searching (C-FIND)", since) not in PENDING:
                break
            since = time.monotonic()
            if len(out) >= keep:  # one answer more than wanted: a query matching thousands is not read to the end
                assoc.abort()  # (not on reaching `keep`: the next answer may be the last, and an abort costs 0.1 s)
                break
            if seen > skip and ident is not None:
                out.append(ident)
    return out


def search_studies(node: Node, query: StudyQuery, offset: int = 0, limit: int = PAGE_SIZE) -> Page[Study]:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for key in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyDescription",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
        setattr(ds, key, "")
    for key, value in query.filters().items():
        setattr(ds, key, value)
    found = _find(node, ds, offset, limit + 1)
    studies = [Study(uid=text(i.get("StudyInstanceUID")), patient_id=text(i.get("PatientID")),
                     patient_name=text(i.get("PatientName")), date=text(i.get("StudyDate")),
                     accession=text(i.get("AccessionNumber")), description=text(i.get("StudyDescription")),
                     modalities=text(i.get("ModalitiesInStudy")), n_series=number(i.get("NumberOfStudyRelatedSeries")),
                     n_instances=number(i.get("NumberOfStudyRelatedInstances"))) for i in found]
    return Page(studies[:limit], offset, len(studies) > limit)


def search_series(node: Node, study_uid: str) -> list[SeriesInfo]:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    for key in ("SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"):
        setattr(ds, key, "")
    found = _find(node, ds, 0, 10_000)
    out = [SeriesInfo(study_uid, text(i.get("SeriesInstanceUID")), text(i.get("Modality")),
                      text(i.get("SeriesDescription")), text(i.get("SeriesNumber")),
                      number(i.get("NumberOfSeriesRelatedInstances"))) for i in found]
    return sorted(out, key=lambda s: (number(s.number) or 0, s.uid))


def _sop_classes(node: Node, study_uid: str, series_uid: str | None) -> list[str]:
    """The storage SOP classes to accept: the study's SOP Classes in Study (one answer), else those
    of every instance (one answer each)."""
    study = Dataset()
    study.QueryRetrieveLevel = "STUDY"
    study.StudyInstanceUID = study_uid
    study.SOPClassesInStudy = ""
    found = _find(node, study, 0, 1)
    listed = found[0].get("SOPClassesInStudy") if found else None
    if listed:
        return sorted({str(uid) for uid in (listed if isinstance(listed, (list, pydicom.multival.MultiValue))
                                            else [listed])})
    return sorted({str(i.SOPClassUID) for i in _find(node, _image_query(study_uid, series_uid, "SOPClassUID"), 0,
                                                   1_000_000) if i.get("SOPClassUID")})


def _image_query(study_uid: str, series_uid: str | None, *keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or ""
    ds.SOPInstanceUID = ""
    for key in keys:
        setattr(ds, key, "")
    return ds


def _instances(node: Node, study_uid: str, series_uid: str | None) -> list[tuple[str, str]]:
    """Every instance of the series (or study) as (series UID, SOP Instance UID), by C-FIND (no SOP
    Class UID: Orthanc answers it from each file, the UIDs from its index)."""
    return [(text(i.get("SeriesInstanceUID")) or (series_uid or ""), text(i.get("SOPInstanceUID")))
            for i in _find(node, _image_query(study_uid, series_uid), 0, 1_000_000) if i.get("SOPInstanceUID")]


def _identifier(study_uid: str, series_uid: str | None, instances: Sequence[str] = ()) -> Dataset:
    """What a C-GET/C-MOVE asks for: a study, a series, or instances of one series (UID list matching)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if instances else "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    if instances:
        ds.SOPInstanceUID = list(instances)
    return ds


def _responses(node: Node, assoc: Association, answers: Iterator[tuple[Dataset, Any]], count: list[int], doing: str,
               cancel: threading.Event | None, refused: Callable[[int, str], str] | None = None) -> None:
    """Follow a C-GET/C-MOVE's responses to the end; a refusal before any instance is an error (its
    message from `refused(status, error comment)` when given), a failure after some is not (what
    arrived is kept)."""
    since = time.monotonic()
    for status, _ident in answers:
        if cancel is not None and cancel.is_set():
            assoc.abort()
            break
        try:
            _check(node, status, f"retrieving ({doing}, after {count[0]} instance(s))", since)
        except PacsRequestError as exc:
            if count[0] == 0 and refused is not None:
                raise PacsRequestError(refused(int(status.Status), str(status.get("ErrorComment", "")))) from exc
            if count[0] == 0:
                raise
            break  # warnings or failures for some sub-operations: what arrived is kept
        since = time.monotonic()


def retrieve(node: Node, study_uid: str, series_uid: str | None, on_item: Callable[[str, bytes], None],
             cancel: threading.Event | None = None) -> int:
    """C-GET (or C-MOVE, as the node's `retrieve` says) a series or a whole study; `on_item(name,
    bytes)` gets each instance (a DICOM file, named by its SOP Instance UID) as it arrives, one call
    at a time (from the associations' threads). Returns the number retrieved; stops on `cancel`."""
    peer = _peer(node)
    if peer.retrieve == "c-move":
        return move(node, study_uid, series_uid, on_item, cancel)
    if peer.parallel > 1:
        with ThreadPoolExecutor(2, "medui-cfind") as pool:  # two queries at once: the PACS answers both
            listing = pool.submit(_instances, node, study_uid, series_uid)
            classes = _sop_classes(node, study_uid, series_uid)
            listed = listing.result()
        if len(listed) >= PARALLEL_MIN:
            return _get_parallel(node, study_uid, listed, classes, min(peer.parallel, len(listed)), on_item, cancel)
    else:
        classes = _sop_classes(node, study_uid, series_uid)
    gate = dimse_get.Gate(on_item, cancel)
    _get(node, [_identifier(study_uid, series_uid)], classes, gate.stored, gate.count, cancel)
    return gate.count[0]


def _get(node: Node, identifiers: Sequence[Dataset], classes: Sequence[str], stored: Callable[[Any], int],
         count: list[int], cancel: threading.Event | None,
         opened: Callable[[Association], None] | None = None) -> None:
    """C-GET each identifier in turn on one association that accepts `classes` (their C-STOREs go to
    `stored`); `opened(association)` once it is open."""
    per_class = 1 + len(COMPRESSED)
    classes = list(classes)[:127 // per_class]  # 128 presentation contexts at most
    contexts: list[tuple[str, Sequence[str]]] = [(StudyRootQueryRetrieveInformationModelGet, ALL_TRANSFER_SYNTAXES[:3])]
    contexts += [(uid, syntaxes) for uid in classes for syntaxes in [UNCOMPRESSED, *([ts] for ts in COMPRESSED)]]
    roles = [build_role(uid, scp_role=True) for uid in classes]
    with _association(node, contexts, roles, [(evt.EVT_C_STORE, stored)]) as assoc:
        store_reply.install(assoc)  # each C-STORE sub-operation answered without pynetdicom's generic encoder
        if opened is not None:
            opened(assoc)
        for identifier in identifiers:
            if (cancel is not None and cancel.is_set()) or not assoc.is_established:
                break
            answers = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
            _responses(node, assoc, answers, count, "C-GET", cancel)


def _get_parallel(node: Node, study_uid: str, listed: Sequence[tuple[str, str]], classes: Sequence[str], k: int,
                  on_item: Callable[[str, bytes], None], cancel: threading.Event | None) -> int:
    """The listed (series, instance) in `k` groups, each by C-GETs naming its instances on an association
    of its own that accepts `classes`."""

    def fetch(group: Sequence[tuple[str, str]], gate: dimse_get.Gate) -> None:
        per_series: dict[str, list[str]] = {}
        for series, uid in group:
            per_series.setdefault(series, []).append(uid)
        identifiers = [_identifier(study_uid, series, uids[i:i + GET_BATCH])
                       for series, uids in per_series.items() for i in range(0, len(uids), GET_BATCH)]
        _get(node, identifiers, classes, gate.stored, gate.count, gate.halt, gate.opened)

    return dimse_get.run([listed[j::k] for j in range(k)], fetch, on_item, cancel)


def move(node: Node, study_uid: str, series_uid: str | None, on_item: Callable[[str, bytes], None],
         cancel: threading.Event | None = None) -> int:
    """C-MOVE to MedUI itself: a storage SCP listens on `own_port` (as `own_ae_title`, for the PACS's
    AE title only) while the move runs; the PACS must list MedUI among its modalities."""
    peer = _peer(node)
    gate = dimse_get.Gate(on_item, cancel)
    scp = AE(ae_title=peer.own_ae_title)
    scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = peer.timeout
    scp.maximum_pdu_size = 0
    scp.require_called_aet = True
    scp.require_calling_aet = [peer.ae_title]
    for cx in AllStoragePresentationContexts:  # what the PACS sends, as stored (no C-FIND for its classes first)
        scp.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    try:
        server = scp.start_server(("", peer.own_port), block=False,
                                  evt_handlers=[(evt.EVT_C_STORE, gate.stored)])
        assert server is not None  # block=False always returns the server
    except OSError as exc:
        raise PacsConnectionError(
            f"MedUI cannot listen on port {peer.own_port} to receive a C-MOVE from {_where(node)} "
            f"({exc.strerror or exc}); another program or retrieval uses it. Wait for it to end, or set own_port "
            "of this node to a free port (and tell the PACS)") from exc
    try:
        with _association(node, [(StudyRootQueryRetrieveInformationModelMove, ALL_TRANSFER_SYNTAXES[:3])]) as assoc:
            answers = assoc.send_c_move(_identifier(study_uid, series_uid), peer.own_ae_title,
                                        StudyRootQueryRetrieveInformationModelMove)
            _responses(node, assoc, answers, gate.count, "C-MOVE", cancel, functools.partial(_move_refused, node))
    finally:
        server.shutdown()
    return gate.count[0]


def _move_refused(node: Node, code: int, comment: str) -> str:
    """Why a PACS refused a C-MOVE before sending anything. Orthanc answers an unknown destination with
    0xC000 and no comment, the standard code is 0xA801: both most often mean MedUI is not in its list."""
    peer = _peer(node)
    why = {0xA801: "unknown destination AE", 0xC000: "unable to process; most often an unknown destination AE"}
    fix = (f"add MedUI's AE title {peer.own_ae_title}, this host's address and port {peer.own_port} to the PACS's "
           "modalities (Orthanc: DicomModalities), or set retrieve = \"c-get\" for this node")
    reason = why.get(code, "see the PACS log")
    return (f"{_where(node)} refused the C-MOVE to {peer.own_ae_title} (status 0x{code:04X}: {reason}"
            + (f"; it says: {comment[:200]}" if comment else "") + f"); {fix}")


def store(node: Node, datasets: Sequence[pydicom.Dataset]) -> list[str]:
    """C-STORE each object; the SOP Instance UIDs stored."""
    datasets = [as_file(ds) for ds in datasets]
    pairs = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
    contexts = [(sop, [ts]) for sop, ts in sorted(pairs)]
    done = []
    with _association(node, contexts) as assoc:
        for ds in datasets:
            since = time.monotonic()
            _check(node, assoc.send_c_store(ds), f"storing {ds.SOPClassUID.name} (C-STORE)", since)
            done.append(str(ds.SOPInstanceUID))
    return done
