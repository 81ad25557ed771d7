"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) through `dicomweb-client`.

Two things are done by hand, both measured against Orthanc 1.10 + DICOMweb 1.7:
- QIDO queries are sent with `*` and `?` unencoded: Orthanc does not percent-decode QIDO values, so
  `PatientName=DOE%5E%2A` (what `dicomweb-client` sends) finds nothing. `^` cannot go out plain at all
  (urllib3 encodes it on the wire whatever the URL says), so a name's `^` is sent as the one-character
  wildcard `?`: `DOE^J*` is asked as `DOE?J*`, which finds the same names (and, rarely, a few more);
- retrieval streams the multipart body and hands each part's bytes on as they arrive (no parse
  and re-encode: `medui.io.loader` reads them, like an upload).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import pydicom
import requests
import urllib3
from dicomweb_client.api import DICOMwebClient

from medui.errors import PacsAuthError, PacsConnectionError, PacsRequestError, PacsTimeoutError
from medui.pacs.model import PAGE_SIZE, Node, Page, SeriesInfo, Study, StudyQuery, WebPeer, as_file, number, text

STUDY_FIELDS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyDescription",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber",
                 "NumberOfSeriesRelatedInstances")
SAFE = "*?-.,"  # kept as they are in QIDO values (see the module docstring)
TAGS = {"StudyInstanceUID": "0020000D", "PatientID": "00100020", "PatientName": "00100010", "StudyDate": "00080020",
        "AccessionNumber": "00080050", "StudyDescription": "00081030", "ModalitiesInStudy": "00080061",
        "NumberOfStudyRelatedSeries": "00201206", "NumberOfStudyRelatedInstances": "00201208",
        "SeriesInstanceUID": "0020000E", "Modality": "00080060", "SeriesDescription": "0008103E",
        "SeriesNumber": "00200011", "NumberOfSeriesRelatedInstances": "00201209", "SOPInstanceUID": "00080018",
        "InstanceNumber": "00200013", "SOPClassUID": "00080016"}


def _session(peer: WebPeer) -> requests.Session:
    session = requests.Session()
    # requests asks for gzip by default, and a PACS that honours it compresses every DICOM answer on the fly
    session.headers["Accept-Encoding"] = "gzip, deflate" if peer.compress else "identity"
    if peer.user:
        session.auth = (peer.user, peer.password)
    elif peer.token:
        session.headers["Authorization"] = f"Bearer {peer.token}"
    return session


def client(node: Node) -> DICOMwebClient:
    peer = _peer(node)
    return DICOMwebClient(peer.url, session=_session(peer), timeout=peer.timeout)


def _peer(node: Node) -> WebPeer:
    if node.dicomweb is None:
        raise PacsConnectionError(f"the PACS node {node.name!r} has no DICOMweb URL; use DIMSE or add dicomweb_url")
    return node.dicomweb


def failure(node: Node, exc: BaseException, doing: str) -> PacsConnectionError | PacsRequestError:
    """The MedUI error for a failed HTTP exchange; it names the node and URL, never a credential."""
    url = node.dicomweb.url if node.dicomweb else "?"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return PacsAuthError(f"the PACS {node.name!r} ({url}) refused MedUI's credentials while {doing} "
                                 f"(HTTP {status}); check the user and password (or token) configured for this node")
        return PacsRequestError(f"the PACS {node.name!r} ({url}) answered HTTP {status} "
                                f"({exc.response.reason}) while {doing}; expected 200. Check the node's URL and "
                                "the PACS log")
    if isinstance(exc, requests.Timeout) or (isinstance(exc, requests.ConnectionError) and exc.args
                                             and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)):
        return PacsTimeoutError(f"the PACS {node.name!r} ({url}) stopped answering while {doing} (no data for "
                                f"{_peer(node).timeout:g} s); try again, or raise timeout_s for this node")
    return PacsConnectionError(f"the PACS {node.name!r} ({url}) cannot be reached while {doing} "
                               f"({type(exc).__name__}); check that it runs and that the URL is right")


def _raw_get(node: Node, path: str, params: Sequence[tuple[str, str]], accept: str,
             session: requests.Session | None = None) -> requests.Response:
    """GET with a query string built here (values not percent-encoded where Orthanc needs them plain)."""
    peer = _peer(node)
    session = session or _session(peer)
    query = "&".join(f"{quote(k)}={quote(v, safe=SAFE)}" for k, v in params)
    req = session.prepare_request(requests.Request("GET", f"{peer.url}{path}", headers={"Accept": accept}))
    req.url = f"{peer.url}{path}" + (f"?{query}" if query else "")  # requests would re-quote '^'
    try:
        resp = session.send(req, timeout=peer.timeout)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise failure(node, exc, f"querying {path}") from exc
    return resp


def _value(item: dict[str, Any], keyword: str) -> Any:
    values = item.get(TAGS[keyword], {}).get("Value")
    return values if keyword == "ModalitiesInStudy" else (values[0] if values else None)


def echo(node: Node) -> str:
    """A QIDO ping (one study asked for); what was found, or an error."""
    _raw_get(node, "/studies", [("limit", "1")], "application/dicom+json")
    return f"DICOMweb {_peer(node).url} answers QIDO-RS"


def search_studies(node: Node, query: StudyQuery, offset: int = 0, limit: int = PAGE_SIZE) -> Page[Study]:
    """One page of studies (one more is asked for, to know whether another page follows)."""
    filters = query.filters()
    if "PatientName" in filters:
        filters["PatientName"] = filters["PatientName"].replace("^", "?")
    params = list(filters.items()) + [("includefield", f) for f in STUDY_FIELDS]
    params += [("offset", str(offset)), ("limit", str(limit + 1))]
    found = _raw_get(node, "/studies", params, "application/dicom+json").json() or []
    studies = [Study(uid=text(_value(s, "StudyInstanceUID")), patient_id=text(_value(s, "PatientID")),
                     patient_name=text(_value(s, "PatientName")), date=text(_value(s, "StudyDate")),
                     accession=text(_value(s, "AccessionNumber")), description=text(_value(s, "StudyDescription")),
                     modalities=text(_value(s, "ModalitiesInStudy")),
                     n_series=number(_value(s, "NumberOfStudyRelatedSeries")),
                     n_instances=number(_value(s, "NumberOfStudyRelatedInstances"))) for s in found]
    return Page(studies[:limit], offset, len(studies) > limit)


def search_series(node: Node, study_uid: str) -> list[SeriesInfo]:
    params = [("includefield", f) for f in SERIES_FIELDS]
    found = _raw_get(node, f"/studies/{study_uid}/series", params, "application/dicom+json").json() or []
    out = [SeriesInfo(study_uid, text(_value(s, "SeriesInstanceUID")), text(_value(s, "Modality")),
                      text(_value(s, "SeriesDescription")), text(_value(s, "SeriesNumber")),
                      number(_value(s, "NumberOfSeriesRelatedInstances"))) for s in found]
    return sorted(out, key=lambda s: (number(s.number) or 0, s.uid))


def instance_uids(node: Node, study_uid: str, series_uid: str) -> list[str]:
    """The SOP Instance UIDs of a series, in instance-number order."""
    params = [("includefield", "InstanceNumber")]
    found = _raw_get(node, f"/studies/{study_uid}/series/{series_uid}/instances", params,
                     "application/dicom+json").json() or []
    found.sort(key=lambda i: number(_value(i, "InstanceNumber")) or 0)
    return [text(_value(i, "SOPInstanceUID")) for i in found]


def thumbnail(node: Node, study_uid: str, series_uid: str) -> bytes:
    """A rendered JPEG of the series' middle instance (WADO-RS /rendered)."""
    uids = instance_uids(node, study_uid, series_uid)
    if not uids:
        raise PacsRequestError(f"the series {series_uid} on {node.name!r} lists no instances; nothing to show")
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{uids[len(uids) // 2]}/rendered"
    return _raw_get(node, path, [], "image/jpeg").content


def retrieve(node: Node, study_uid: str, series_uid: str | None, on_item: Callable[[str, bytes], None],
             cancel: threading.Event | None = None) -> int:
    """Stream a series (or a whole study) by WADO-RS; `on_item(name, bytes)` gets each instance as it
    arrives (named by its SOP Instance UID). Returns the number retrieved; stops early on `cancel`."""
    dw = client(node)
    path = f"/studies/{study_uid}" + (f"/series/{series_uid}" if series_uid else "")
    url = _peer(node).url + path
    n = 0
    try:
        resp = dw._http_get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
                            stream=True)
        parts: Iterator[bytes] = dw._decode_multipart_message(resp, stream=True)
        try:
            for part in parts:
                if cancel is not None and cancel.is_set():
                    break
                data = bytes(part)
                on_item(_name(data, n), data)
                n += 1
        finally:
            resp.close()
    except requests.RequestException as exc:
        raise failure(node, exc, f"retrieving {path} (after {n} instance(s))") from exc
    return n


def _name(part: bytes, n: int) -> str:
    try:
        ds = pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True, specific_tags=["SOPInstanceUID"], force=True)
        return f"{ds.SOPInstanceUID}.dcm"
    except Exception:  # the loader gives the reason for an unreadable part
        return f"instance-{n + 1:05d}.dcm"


def store(node: Node, datasets: Sequence[pydicom.Dataset]) -> list[str]:
    """STOW-RS; the SOP Instance UIDs the PACS accepted. PacsRequestError names those it refused."""
    dw = client(node)
    try:
        answer = dw.store_instances([as_file(ds) for ds in datasets])
    except requests.RequestException as exc:
        raise failure(node, exc, f"storing {len(datasets)} object(s)") from exc
    failed = answer.get("00081198", {}).get("Value", []) if answer else []
    if failed:
        raise PacsRequestError(f"the PACS {node.name!r} refused {len(failed)} of {len(datasets)} object(s) sent by "
                               "STOW-RS; see the PACS log for the reason")
    return [str(ds.SOPInstanceUID) for ds in datasets]
