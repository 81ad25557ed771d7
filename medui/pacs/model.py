"""The PACS vocabulary: a configured node, a search, and what a search finds (studies, series).

Credentials live only in `WebPeer.user/password/token` (never in `repr`, a URL or a message)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar

from medui.errors import PacsConfigError

PAGE_SIZE = 50
AE_TITLE = re.compile(r"^[\x20-\x7e]{1,16}$")
PROTOCOLS = ("dicomweb", "dimse")
RETRIEVE = ("c-get", "c-move")
PARALLEL_MAX = 16  # associations one C-GET may open at once (Orthanc serves 4 at a time by default)
T = TypeVar("T")


@dataclass(frozen=True)
class WebPeer:
    """A DICOMweb service: QIDO-RS, WADO-RS and STOW-RS under one base URL."""

    url: str
    user: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    timeout: float = 30.0
    # Ask for gzip-compressed answers. Off by default: Orthanc compresses an uncompressed 8 MB radiograph
    # in ~290 ms before its first byte, where the same bytes plain take ~20 ms on a LAN; worth it only
    # on a link slower than about 100 Mbit/s
    compress: bool = False


@dataclass(frozen=True)
class DimsePeer:
    """A classic DICOM peer and MedUI's own application entity towards it."""

    ae_title: str
    host: str
    port: int
    own_ae_title: str = "MEDUI"
    own_port: int = 0  # the port MedUI's storage SCP listens on for C-MOVE (0: C-MOVE unused)
    timeout: float = 30.0
    retrieve: str = "c-get"  # how instances are retrieved: "c-get" (on MedUI's association) or "c-move"
    # associations a C-GET of many instances uses at once: 1 (one for the whole retrieval) unless the PACS is
    # over ~2 ms away (round trip), where 3 keep that many sub-operations in flight (README, "Hospital connection")
    parallel: int = 1

    def check(self, where: str) -> None:
        for name, value in (("ae_title", self.ae_title), ("own_ae_title", self.own_ae_title)):
            if not AE_TITLE.match(value) or "\\" in value:
                raise PacsConfigError(f"{where}: {name} {value!r} is not a DICOM AE title; expected 1 to 16 "
                                      "printable ASCII characters without backslash, e.g. 'ORTHANC'")
        for name, port in (("port", self.port), ("own_port", self.own_port)):
            if not 0 <= port <= 65535 or (name == "port" and port == 0):
                raise PacsConfigError(f"{where}: {name} {port} is not a TCP port; expected 1 to 65535")
        if self.retrieve not in RETRIEVE:
            raise PacsConfigError(f"{where}: retrieve is {self.retrieve!r}; expected one of {', '.join(RETRIEVE)}")
        if isinstance(self.parallel, bool) or not isinstance(self.parallel, int) \
                or not 1 <= self.parallel <= PARALLEL_MAX:
            raise PacsConfigError(f"{where}: parallel is {self.parallel!r}; expected a whole number of associations "
                                  f"from 1 to {PARALLEL_MAX} for C-GET (default 1, one association; 3 for a PACS over "
                                  "~2 ms away), e.g. parallel = 3")
        if self.retrieve == "c-move" and not self.own_port:
            raise PacsConfigError(f"{where}: retrieve = \"c-move\" needs own_port, the port MedUI listens on for "
                                  "the instances the PACS sends (e.g. own_port = 11112), and the PACS must know "
                                  f"{self.own_ae_title} at this host and that port")


@dataclass(frozen=True)
class Node:
    """One configured PACS: DICOMweb, DIMSE or both (DICOMweb is used first when both are set)."""

    name: str
    dicomweb: WebPeer | None = None
    dimse: DimsePeer | None = None

    @property
    def protocols(self) -> list[str]:
        return [p for p, peer in (("dicomweb", self.dicomweb), ("dimse", self.dimse)) if peer is not None]

    def describe(self) -> str:
        """One line without credentials, for pickers and messages."""
        parts = []
        if self.dicomweb:
            auth = " (basic auth)" if self.dicomweb.user else " (token)" if self.dicomweb.token else ""
            parts.append(f"DICOMweb {self.dicomweb.url}{auth}" + (", gzip" if self.dicomweb.compress else ""))
        if self.dimse:
            d = self.dimse
            parts.append(f"DIMSE {d.ae_title}@{d.host}:{d.port} as {d.own_ae_title}"
                         + (f" (C-MOVE to port {d.own_port})" if d.retrieve == "c-move" else "")
                         + (f", C-GET on {d.parallel} associations" if d.retrieve == "c-get" and d.parallel > 1
                            else ""))
        return f"{self.name}: " + "; ".join(parts)


@dataclass(frozen=True)
class StudyQuery:
    """Study search criteria; empty fields match anything. Names and IDs take * and ? wildcards."""

    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""

    def date_range(self) -> str:
        """The DICOM date range (YYYYMMDD-YYYYMMDD, open ends allowed), '' for any date."""
        if self.date_from is None and self.date_to is None:
            return ""
        lo = self.date_from.strftime("%Y%m%d") if self.date_from else ""
        hi = self.date_to.strftime("%Y%m%d") if self.date_to else ""
        return lo if lo == hi else f"{lo}-{hi}"

    def filters(self) -> dict[str, str]:
        """The matching keys by DICOM keyword (only those set)."""
        out = {"PatientID": self.patient_id.strip(), "PatientName": self.patient_name.strip(),
               "AccessionNumber": self.accession.strip(), "StudyDate": self.date_range(),
               "ModalitiesInStudy": self.modality.strip().upper()}
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class Study:
    uid: str
    patient_id: str = field(default="", repr=False)
    patient_name: str = field(default="", repr=False)
    date: str = ""
    accession: str = ""
    description: str = ""
    modalities: str = ""
    n_series: int | None = None
    n_instances: int | None = None


@dataclass(frozen=True)
class SeriesInfo:
    study_uid: str
    uid: str
    modality: str = ""
    description: str = ""
    number: str = ""
    n_instances: int | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a search: its items, where it starts, and whether more may follow."""

    items: list[T]
    offset: int
    more: bool


def text(value: Any) -> str:
    """A DICOM value as plain text (PN as its alphabetic form)."""
    if value is None:
        return ""
    if isinstance(value, dict):  # DICOM JSON PN
        return str(value.get("Alphabetic", ""))
    if isinstance(value, (list, tuple)):
        return "\\".join(text(v) for v in value)
    return str(value)


def number(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def as_file(ds: Any) -> Any:
    """A pydicom Dataset as it reads back from a DICOM file (preamble, complete file meta, encapsulated
    pixel data of undefined length). Built in memory (highdicom), a JPEG Secondary Capture went out by
    C-STORE malformed and Orthanc never answered; `dicomweb-client` writes a plain Dataset without
    preamble, and Orthanc then stores and serves it so."""
    import io

    import pydicom

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)
