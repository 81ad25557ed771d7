"""The saliency map as a fractional DICOM Segmentation of the explained image."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as srcodes

from medui.results import codes
from medui.results.model import MANUFACTURER, MODEL_NAME, SERIES_NUMBERS, ResultInput, finish


def _pixel_spacing(src: Dataset) -> list[float]:
    for key in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if key in src and src[key].value:
            return [float(v) for v in src[key].value]
    return [1.0, 1.0]


def build_seg(inp: ResultInput) -> Dataset:
    src = inp.source
    card = inp.card
    sal = np.clip(np.asarray(inp.saliency, dtype=np.float32), 0.0, 1.0)
    if sal.shape != (int(src.Rows), int(src.Columns)):
        raise ValueError(f"the saliency map is {sal.shape}, the source image {src.Rows}x{src.Columns}")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=f"{inp.method} saliency: {inp.explained_class}"[:64],
        segmented_property_category=codes.CATEGORY, segmented_property_type=codes.SALIENCY,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=card.id[:64], family=srcodes.cid7162.ArtificialIntelligence, version=str(card.version),
            parameters={"method": inp.method, "class": inp.explained_class}))
    extra: dict[str, object] = {}
    projection = "ImageOrientationPatient" not in src and "PerFrameFunctionalGroupsSequence" not in src
    if projection:  # a radiograph (no patient coordinates): highdicom needs the pixel size given. Its
        # reader (0.28) also needs a SliceThickness: the source's, else a nominal 1 mm (a projection has none)
        extra["pixel_measures"] = hd.PixelMeasuresSequence(pixel_spacing=_pixel_spacing(src),
                                                           slice_thickness=float(src.get("SliceThickness") or 1.0))
    seg = hd.seg.Segmentation(
        source_images=[src], pixel_array=sal[None], segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=SERIES_NUMBERS["seg"],
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=inp.software_versions, device_serial_number=card.id[:64],
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        content_description="Saliency (not a lesion boundary)", **extra)  # type: ignore[arg-type]
    if projection:  # Type 2C without patient coordinates: the source's, or present and empty
        seg.PatientOrientation = src.get("PatientOrientation")
    return finish(seg, "seg", inp)
