"""The AI result as a Comprehensive 3D SR: TID 1500 Measurement Report, preliminary and unverified."""

from __future__ import annotations

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as srcodes
from pydicom.uid import generate_uid

from medui.results import codes
from medui.results.model import MANUFACTURER, SERIES_NUMBERS, ResultInput, finish


def algorithm(inp: ResultInput) -> AlgorithmIdentification:
    """The model as TID 4019 Algorithm Identification: its card id and version, and the threshold used."""
    card = inp.card
    return AlgorithmIdentification(name=card.id, version=str(card.version),
                                   parameters=[f"threshold={inp.threshold:.6g}", f"model={card.name}"])


def finding(inp: ResultInput) -> hd.sr.CodedConcept:
    """The finding the score is about: the positive class (binary), the predicted class (multi-class)."""
    card = inp.card
    return codes.finding_code(card, card.positive_class if card.task == "binary" else inp.label)


def build_sr(inp: ResultInput) -> Dataset:
    card = inp.card
    algo = algorithm(inp)
    device = DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["medui-model", card.id]), name=card.id[:64], manufacturer_name=MANUFACTURER,
        model_name=card.name[:64], serial_number=card.id[:64])
    context = ObservationContext(observer_device_context=ObserverContext(
        observer_type=srcodes.cid270.Device, observer_identifying_attributes=device))
    measurements = [
        Measurement(name=codes.PROBABILITY, value=float(inp.score), unit=codes.UNITLESS, algorithm_id=algo),
        Measurement(name=codes.THRESHOLD, value=float(inp.threshold), unit=codes.UNITLESS, algorithm_id=algo),
    ]
    measurements += [Measurement(name=codes.probability_of(name), value=float(p), unit=codes.UNITLESS,
                                 algorithm_id=algo) for name, p in inp.probabilities.items()]
    if card.task == "binary":
        present = inp.label == card.positive_class
        evaluations = [QualitativeEvaluation(finding(inp), codes.PRESENT if present else codes.ABSENT)]
    else:
        evaluations = [QualitativeEvaluation(codes.FINDING, codes.finding_code(card, inp.label))]
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=f"MedUI {card.id}"[:64]),
        finding_type=finding(inp), algorithm_id=algo, measurements=measurements, qualitative_evaluations=evaluations,
        source_images=[SourceImageForMeasurementGroup.from_source_image(inp.source)])
    report = MeasurementReport(observation_context=context, procedure_reported=codes.PROCEDURE,
                               imaging_measurements=[group])
    sr = Comprehensive3DSR(
        evidence=inp.sources, content=report, series_instance_uid=hd.UID(), series_number=SERIES_NUMBERS["sr"],
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        is_final=False, is_verified=False)
    return finish(sr, "sr", inp)
