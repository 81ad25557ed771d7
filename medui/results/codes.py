"""Coded concepts of MedUI's AI results: the finding of each class, and MedUI's own local codes."""

from __future__ import annotations

from highdicom.sr import CodedConcept

from medui.ai.card import ModelCard

LOCAL = "99MEDUI"  # a private coding scheme (PS3.16 8.2: '99' prefix) for what no standard code says
# Standard codes for common class names (SNOMED CT); a model card's `finding_codes` takes precedence.
KNOWN = {
    "pneumonia": ("233604007", "SCT", "Pneumonia"),
    "normal": ("17621005", "SCT", "Normal"),
    "abnormal": ("263654008", "SCT", "Abnormal"),
    "lesion": ("52988006", "SCT", "Lesion"),
}
PROBABILITY = CodedConcept("PROB", LOCAL, "Probability of finding")
THRESHOLD = CodedConcept("THRESH", LOCAL, "Operating threshold")
FINDING = CodedConcept("121071", "DCM", "Finding")
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("2667000", "SCT", "Absent")
UNITLESS = CodedConcept("1", "UCUM", "no units")
PROCEDURE = CodedConcept("363679005", "SCT", "Imaging procedure")
SALIENCY = CodedConcept("SALIENCY", LOCAL, "Saliency map")
CATEGORY = CodedConcept("49755003", "SCT", "Morphologically Altered Structure")


def finding_code(card: ModelCard, class_name: str) -> CodedConcept:
    """The card's code for the class, else a known SNOMED CT code, else a local code named after it."""
    own = card.finding_codes.get(class_name)
    if own:
        return CodedConcept(own["value"], own["scheme"], own["meaning"])
    if class_name.lower() in KNOWN:
        value, scheme, meaning = KNOWN[class_name.lower()]
        return CodedConcept(value, scheme, meaning)
    value = "".join(ch for ch in class_name.upper() if ch.isalnum())[:16] or "FINDING"
    return CodedConcept(value, LOCAL, class_name[:64])


def probability_of(class_name: str) -> CodedConcept:
    value = "P-" + ("".join(ch for ch in class_name.upper() if ch.isalnum())[:14] or "CLASS")
    return CodedConcept(value, LOCAL, f"Probability of {class_name}"[:64])
