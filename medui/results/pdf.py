"""A one-page PDF report (fpdf2) and the same PDF as a DICOM Encapsulated PDF."""

from __future__ import annotations

import io

import highdicom as hd
from fpdf import FPDF
from PIL import Image
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian

from medui.results.model import NOTICE, SERIES_NUMBERS, ResultInput, finish

PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _latin1(text: str) -> str:
    """The core PDF fonts are Latin-1: typographic dashes and quotes become their ASCII forms."""
    table = str.maketrans({"—": "-", "–": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "·": "-", "≥": ">=",
                           "≤": "<=", "…": "..."})
    return text.translate(table).encode("latin-1", "replace").decode("latin-1")


def report_pdf(inp: ResultInput) -> bytes:
    """One A4 page: the image with its overlay, the score against the threshold, the probabilities,
    the model card summary and intended use, the date and the not-a-medical-device notice."""
    card = inp.card
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_title(_latin1(f"MedUI AI result - {card.id}"))
    pdf.set_font("helvetica", "B", 15)
    pdf.cell(0, 9, "MedUI AI result - not for primary diagnosis", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 9)
    pdf.cell(0, 5, _latin1(f"Created {inp.created:%Y-%m-%d %H:%M} by {inp.software_versions}; model {card.id}"),
             new_x="LMARGIN", new_y="NEXT")
    if inp.source_note:
        pdf.cell(0, 5, _latin1(inp.source_note), new_x="LMARGIN", new_y="NEXT")
    png = io.BytesIO()
    Image.fromarray(inp.overlay_rgb).save(png, format="PNG")
    h, w = inp.overlay_rgb.shape[:2]
    size = 105.0
    iw, ih = (size, size * h / w) if w >= h else (size * w / h, size)
    top = pdf.get_y() + 3
    pdf.image(png, x=10, y=top, w=iw, h=ih)
    pdf.set_xy(10 + size + 6, top)
    col = 190 - size - 6
    verdict = "indeterminate (close to the threshold)" if inp.indeterminate else inp.label
    pdf.set_font("helvetica", "B", 12)
    pdf.multi_cell(col, 6, _latin1(f"Result: {verdict}"), new_x="LEFT", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    relation = ">=" if inp.score >= inp.threshold else "<"
    lines = [f"Score {inp.score:.3f} {relation} operating threshold {inp.threshold:.3f}", "", "Probabilities:"]
    lines += [f"  {name}: {p:.3f}" for name, p in inp.probabilities.items()]
    lines += ["", f"Overlay: {inp.method} saliency of '{inp.explained_class}'"
              + (f", {inp.slice_label}" if inp.slice_label else "")]
    pdf.multi_cell(col, 5, _latin1("\n".join(lines)), new_x="LEFT", new_y="NEXT")
    pdf.set_xy(10, top + ih + 6)
    pdf.set_font("helvetica", "B", 11)
    pdf.cell(0, 6, "Model card", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 9)
    summary = [f"{card.id} ({card.architecture}, {card.task}, classes: {', '.join(card.class_names)})",
               f"Threshold: {card.threshold:.3f} - {card.threshold_method}",
               f"Modalities: {', '.join(card.modalities) or 'any'}; body parts: {', '.join(card.body_parts) or 'any'}",
               f"Intended use: {card.intended_use}"]
    if card.limitations:
        summary.append(f"Limitations: {card.limitations}")
    if card.demo:
        summary.append("This is a demonstration model trained on synthetic data.")
    pdf.multi_cell(0, 4.5, _latin1("\n".join(summary)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(270)
    pdf.set_font("helvetica", "B", 10)
    pdf.set_text_color(170, 0, 0)
    pdf.multi_cell(0, 5, _latin1(NOTICE), border=1, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def build_encapsulated_pdf(inp: ResultInput, document: bytes) -> Dataset:
    """The PDF as an Encapsulated PDF instance in the source's study."""
    src = inp.source
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = hd.UID()
    for key in PATIENT_KEYS + STUDY_KEYS:
        ds[key] = src[key] if key in src else _empty(key)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = hd.UID()
    ds.SeriesNumber = SERIES_NUMBERS["pdf"]
    ds.InstanceNumber = 1
    ds.ConversionType = "SYN"
    now = inp.created
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"MedUI AI result report ({inp.card.id})"[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    payload = document + (b"\0" if len(document) % 2 else b"")
    ds.EncapsulatedDocument = payload
    ds.EncapsulatedDocumentLength = len(document)
    return finish(ds, "pdf", inp)


def _empty(key: str) -> DataElement:
    """A Type 2 attribute the source lacks, present and empty."""
    tag = tag_for_keyword(key)
    if tag is None:
        raise KeyError(key)
    return DataElement(tag, dictionary_VR(tag), None)
