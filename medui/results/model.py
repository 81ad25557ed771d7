"""What every AI result object is built from, and what building gives back."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset

from medui import __version__
from medui.ai.card import ModelCard

MANUFACTURER = "MedUI"
MODEL_NAME = "MedUI AI-assisted review"
SERIES_DESCRIPTION = "MedUI AI result — not for primary diagnosis"
NOTICE = ("Decision support only - not a medical device. Not for primary diagnosis: every finding must be "
          "confirmed by a qualified clinician.")
SERIES_NUMBERS = {"sr": 9901, "seg": 9902, "sc": 9903, "pdf": 9904}
KINDS = tuple(SERIES_NUMBERS)


@dataclass(frozen=True, eq=False)
class ResultInput:
    """A scored image and its explanation, in plain data (no Keras, no Streamlit).

    `source` is the header of the instance that was explained (the slice of the overlay) and
    `sources` every instance of the scored series; `saliency` lies on the source's grid in [0, 1]."""

    card: ModelCard
    probabilities: dict[str, float]
    label: str
    threshold: float
    score: float  # the probability the threshold is applied to (binary: the positive class)
    indeterminate: bool
    source: Dataset
    sources: list[Dataset]
    saliency: np.ndarray
    overlay_rgb: np.ndarray
    method: str
    explained_class: str
    slice_label: str = ""
    created: datetime = field(default_factory=datetime.now)
    source_note: str = ""  # what the image was, for the PDF, when it has no DICOM source (`source` is then empty)

    @property
    def software_versions(self) -> str:
        return f"MedUI {__version__}"


@dataclass(frozen=True, eq=False)
class ResultObject:
    """One built result: its kind (sr, seg, sc, pdf) and the DICOM dataset (Part 10, ready to write)."""

    kind: str
    dataset: Dataset

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.SOPClassUID)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def filename(self) -> str:
        return f"medui-{self.kind}-{self.sop_instance_uid[-12:]}.dcm"

    def to_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.dataset.save_as(buf, enforce_file_format=True)
        return buf.getvalue()


TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "InstanceNumber")


def complete(ds: Dataset) -> Dataset:
    """A copy of a source header with the Type 2 patient and study attributes present (empty when
    the source left them out): every result object copies them, and DICOM requires them."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    out = copy.deepcopy(ds)
    for key in TYPE2:
        if key not in out:
            tag = tag_for_keyword(key)
            if tag is not None:
                out[tag] = DataElement(tag, dictionary_VR(tag), None)
    return out


def finish(ds: Dataset, kind: str, inp: ResultInput) -> Dataset:
    """What every MedUI result carries: UTF-8 text, the series description, the equipment."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SeriesDescription = f"{SERIES_DESCRIPTION} ({kind.upper()})"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL_NAME
    ds.SoftwareVersions = inp.software_versions
    return ds
