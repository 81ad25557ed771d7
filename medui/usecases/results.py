"""AI results back to the hospital, shared by the Diagnose page's Results panel and `python -m medui
report`: a scored image becomes an SR (TID 1500), a SEG of its saliency, an SC of its overlay and a
PDF report (also as Encapsulated PDF), all in the source's study; written to a folder or sent."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require
from medui.errors import MedUIError, ResultsError
from medui.io.loader import LoadResult, load
from medui.pacs.model import Node
from medui.reading.display import slice_label
from medui.results.model import ResultInput, ResultObject, complete
from medui.results.pdf import build_encapsulated_pdf, report_pdf
from medui.results.sc import build_sc
from medui.results.seg import build_seg
from medui.results.sr import build_sr
from medui.series import Series
from medui.usecases import pacs
from medui.usecases.diagnose import Diagnosis, LoadedModel, OverlayResult, overlay, score

DICOM_NEEDED = ("SR, SEG and SC objects and 'Send to PACS' need a DICOM source: they are filed into the image's "
                "DICOM study (its Study Instance UID, patient and study attributes), which a PNG or JPEG image does "
                "not have. Open the study from a PACS (or its DICOM files) to get them; the PDF report needs none.")


@dataclass(frozen=True, eq=False)
class Results:
    """The built objects (sr, seg, sc, pdf), the PDF document itself, and what could not be built."""

    objects: list[ResultObject]
    pdf: bytes
    notes: list[str] = field(default_factory=list)

    def datasets(self) -> list[Dataset]:
        return [o.dataset for o in self.objects]


def headers_from_bytes(items: Iterable[tuple[str, bytes]]) -> dict[str, Dataset]:
    """Each DICOM input's header (no pixels), by the name the loader saw."""
    out: dict[str, Dataset] = {}
    for name, data in items:
        try:
            out[name] = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        except Exception:  # not DICOM: the loader said why, results simply have no header for it
            continue
    return out


def headers_from_files(names: Sequence[str]) -> dict[str, Dataset]:
    out: dict[str, Dataset] = {}
    for name in names:
        try:
            out[name] = pydicom.dcmread(name, stop_before_pixels=True)
        except Exception:
            continue
    return out


def source_headers(diagnosis: Diagnosis, headers: dict[str, Dataset], index: int) -> tuple[Dataset, list[Dataset]]:
    """The header of the slice shown as `index` and those of every file of the series."""
    files = diagnosis.series.files
    found = [headers[f] for f in files if f in headers]
    if diagnosis.series.source_format != "DICOM" or len(found) != len(files) or not found:
        raise ResultsError(f"results as DICOM need the DICOM headers of the scored series; found {len(found)} of "
                           f"{len(files)} ({diagnosis.series.source_format}). Open the series from a PACS or from "
                           "DICOM files on the server")
    native = diagnosis.native_index(index)
    source = found[native] if len(found) == diagnosis.series.n_slices else found[0]
    return source, found


def has_dicom_source(diagnosis: Diagnosis, headers: dict[str, Dataset]) -> bool:
    """Whether the scored series' DICOM headers are at hand (SR, SEG, SC and sending need them)."""
    files = diagnosis.series.files
    return diagnosis.series.source_format == "DICOM" and bool(files) and all(f in headers for f in files)


def why_pdf_only(diagnosis: Diagnosis) -> str:
    """Why only the PDF report can be made for this series (no DICOM source headers at hand)."""
    if diagnosis.series.source_format != "DICOM":
        return DICOM_NEEDED
    return ("SR, SEG and SC objects and 'Send to PACS' need the DICOM headers of the source, which MedUI keeps "
            "only for studies opened from a PACS (not for uploads and samples). Open the study from a PACS to get "
            "them; the PDF report needs none.")


def report_only(diagnosis: Diagnosis, overlay: OverlayResult) -> Results:
    """The PDF report alone, for an image without DICOM source headers (a PNG/JPEG upload, a sample):
    it names the source by its file name only (never a path) and says it was no DICOM study."""
    files = diagnosis.series.files
    name = PurePath(files[0]).name if files else "unnamed image"
    what = "a non-DICOM image" if diagnosis.series.source_format != "DICOM" else \
        "a DICOM image whose headers were not available"
    inp = result_input(diagnosis, overlay, Dataset(), [], source_note=f"Source: {what} ({name}); no DICOM study")
    return Results([], report_pdf(inp), [why_pdf_only(diagnosis)])


def record_download(kind: str, sop_instance_uid: str = "", study_uid: str = "", actor: Actor | None = None) -> None:
    """A result downloaded from the Results panel, in the audit trail as an export: the kind (sr, seg,
    sc, pdf, report), the SOP Instance UID (none for a report of a non-DICOM image) and the study."""
    audit.record(audit.EXPORT_RESULT, current(actor), f"study {study_uid}" if study_uid else "non-DICOM image",
                 details={"kind": kind, "sop_instance_uid": sop_instance_uid or "-", "to": "download"})


def result_input(diagnosis: Diagnosis, overlay: OverlayResult, source: Dataset, sources: list[Dataset],
                 source_note: str = "") -> ResultInput:
    card = diagnosis.model.entry.card
    pred = diagnosis.prediction
    score = pred.probabilities[card.positive_class] if card.task == "binary" else pred.probabilities[pred.label]
    label = slice_label(diagnosis.series, overlay.index) if diagnosis.series.n_slices > 1 else ""
    return ResultInput(card=card, probabilities=dict(pred.probabilities), label=pred.label, threshold=pred.threshold,
                       score=float(score), indeterminate=pred.indeterminate, source=complete(source),
                       sources=[complete(s) for s in sources],
                       saliency=overlay.saliency, overlay_rgb=overlay.rgb, method=overlay.method,
                       explained_class=overlay.class_name, slice_label=label, source_note=source_note)


def build(inp: ResultInput) -> Results:
    """SR, SEG, SC and Encapsulated PDF for one scored image; a part that cannot be built is noted."""
    objects, notes = [], []
    for kind, make in (("sr", build_sr), ("seg", build_seg), ("sc", build_sc)):
        try:
            objects.append(ResultObject(kind, make(inp)))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            notes.append(f"{kind.upper()} not built: {exc}")
    document = report_pdf(inp)
    objects.append(ResultObject("pdf", build_encapsulated_pdf(inp, document)))
    if not any(o.kind == "sr" for o in objects):
        raise ResultsError(f"the structured report could not be built ({'; '.join(notes)}); the source image's "
                           "header lacks what DICOM requires")
    return Results(objects, document, notes)


def write(results: Results, folder: Path, actor: Actor | None = None) -> list[dict[str, Any]]:
    """Each object as a file in `folder` (and report.pdf); one JSON-ready row per object. Recorded in
    the audit trail as an export (the studies and how many objects)."""
    who = current(actor)
    studies = sorted({f"study {getattr(ds, 'StudyInstanceUID', '') or '-'}" for ds in results.datasets()})
    with audit.attempt(audit.EXPORT_RESULT, who, studies, {"objects": len(results.objects), "to": "folder"}):
        require(who, "export-result", "exporting results")
        return _write(results, folder)


def _write(results: Results, folder: Path) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for obj in results.objects:
        path = folder / obj.filename
        path.write_bytes(obj.to_bytes())
        row = {"kind": obj.kind, "path": str(path), "sop_class_uid": obj.sop_class_uid,
               "sop_instance_uid": obj.sop_instance_uid}
        if obj.kind == "pdf":
            doc = folder / f"medui-report-{obj.sop_instance_uid[-12:]}.pdf"
            doc.write_bytes(results.pdf)
            row["document"] = str(doc)
        rows.append(row)
    return rows


def send(results: Results, node: Node, using: str | None = None, actor: Actor | None = None) -> list[str]:
    """Store every object on the PACS (the user's explicit action; never automatic). Permission and
    audit as `medui.usecases.pacs.send`."""
    return pacs.send(node, results.datasets(), using, actor=actor)


def read_inputs(paths: Sequence[str | Path]) -> list[tuple[str, bytes]]:
    """Files and folders (recursively) as (path, bytes) pairs: the loader reads the pixels, the
    results builder the headers, both from the same bytes."""
    out = []
    for p in map(Path, paths):
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                out.append((str(f), f.read_bytes()))
            except OSError as exc:
                raise ResultsError(f"cannot read {f} ({exc.strerror}); expected a readable DICOM file") from exc
    return out


@dataclass(frozen=True, eq=False)
class Scored:
    """One series of the inputs, its diagnosis, and its results (or why there are none)."""

    series: Series
    diagnosis: Diagnosis
    results: Results | None
    error: str = ""


def report(items: Sequence[tuple[str, bytes]], model: LoadedModel, method: str = "gradcam",
           index: int | None = None) -> tuple[list[Scored], LoadResult]:
    """Load, score and build the results of every series in `items` (the overlay of slice `index`,
    display numbering; by default the slice with the study score)."""
    loaded = load(items)
    headers = headers_from_bytes(items)
    out = []
    for series in loaded.series:
        dx = score(series, model)
        at = dx.peak_slice if index is None else index
        try:
            source, sources = source_headers(dx, headers, at)
            out.append(Scored(series, dx, build(result_input(dx, overlay(dx, at, method), source, sources))))
        except MedUIError as exc:
            out.append(Scored(series, dx, None, str(exc)))
    return out, loaded
