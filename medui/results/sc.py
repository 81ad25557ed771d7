"""The overlay as a JPEG-compressed Secondary Capture, for PACS viewers that show neither SR nor SEG."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit

from medui.results.model import MANUFACTURER, SERIES_NUMBERS, ResultInput, finish


def build_sc(inp: ResultInput) -> Dataset:
    src = inp.source
    rgb = np.ascontiguousarray(inp.overlay_rgb, dtype=np.uint8)
    laterality = str(src.get("Laterality", "") or src.get("ImageLaterality", "") or "")
    orientation = _orientation(src)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=src, pixel_array=rgb, photometric_interpretation="YBR_FULL_422", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=hd.UID(), series_number=SERIES_NUMBERS["sc"],
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        laterality=laterality if laterality in ("L", "R") else None,
        patient_orientation=orientation or ("L", "F"),
        transfer_syntax_uid=JPEGBaseline8Bit)
    if "Laterality" not in sc:  # Type 2 in the General Series module
        sc.Laterality = None  # type: ignore[assignment]
    if orientation is None:  # not recorded by the source: present and empty (Type 2C), never guessed
        sc.PatientOrientation = None  # type: ignore[assignment]
    sc.BurnedInAnnotation = "NO"
    sc.DerivationDescription = f"{inp.method} saliency of {inp.explained_class} by {inp.card.id} over the image"
    return finish(sc, "sc", inp)


def _letter(vector: list[float]) -> str:
    axis = max(range(3), key=lambda k: abs(vector[k]))
    return ("LR", "PA", "HF")[axis][0 if vector[axis] > 0 else 1]


def _orientation(src: Dataset) -> tuple[str, str] | None:
    """The directions of the rows and columns (one letter each) from the source, if it records them."""
    iop = src.get("ImageOrientationPatient")
    if iop is not None and len(iop) == 6:
        cos = [float(v) for v in iop]
        return _letter(cos[:3]), _letter(cos[3:])
    po = src.get("PatientOrientation")
    if po is not None and len(po) == 2 and all(len(str(v)) == 1 and str(v) in "LRAPHF" for v in po):
        return str(po[0]), str(po[1])
    return None
