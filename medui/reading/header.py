"""Masking of patient-identifying DICOM attributes (PS3.15 Annex E, Basic Application Level
Confidentiality Profile, Table E.1-1) for display. Nothing is written back to files."""

from __future__ import annotations

from typing import Any

from medui.series import HeaderRow

# Keywords of attributes the Basic Profile removes, empties or replaces (Table E.1-1).
BASIC_PROFILE = frozenset(["AccessionNumber", "AcquisitionComments", "AcquisitionContextSequence", "AcquisitionDate", "AcquisitionDateTime", "AcquisitionDeviceProcessingDescription", "AcquisitionProtocolDescription", "AcquisitionTime", "ActualHumanPerformersSequence", "AdditionalPatientHistory", "AdmissionID", "AdmittingDate", "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "AdmittingTime", "AffectedSOPInstanceUID", "Allergies", "Arbitrary", "AuthorObserverSequence", "BranchOfService", "CassetteID", "ConcatenationUID", "ConfidentialityConstraintOnPatientDataDescription", "ContentCreatorName", "ContentCreatorIdentificationCodeSequence", "ContentDate", "ContentSequence", "ContentTime", "ContextGroupExtensionCreatorUID", "ContrastBolusAgent", "ContributionDescription", "CountryOfResidence", "CreatorVersionUID", "CurrentPatientLocation", "CurveDate", "CurveTime", "CustodialOrganizationSequence", "DataSetTrailingPadding", "DerivationDescription", "DetectorID", "DeviceSerialNumber", "DeviceUID", "DigitalSignaturesSequence", "DimensionOrganizationUID", "DischargeDiagnosisDescription", "DistributionAddress", "DistributionName", "DoseReferenceUID", "EthnicGroup", "FailedSOPInstanceUIDList", "FiducialUID", "FillerOrderNumberImagingServiceRequest", "FrameComments", "FrameOfReferenceUID", "GantryID", "GeneratorID", "GraphicAnnotationSequence", "HumanPerformerName", "HumanPerformerOrganization", "IconImageSequence", "IdentifyingComments", "ImageComments", "ImagePresentationComments", "ImagingServiceRequestComments", "Impressions", "InstanceCreatorUID", "InstanceCreationDate", "InstanceCreationTime", "InstitutionAddress", "InstitutionCodeSequence", "InstitutionName", "InstitutionalDepartmentName", "InsurancePlanIdentification", "IntendedRecipientsOfResultsIdentificationSequence", "InterpretationApproverSequence", "InterpretationAuthor", "InterpretationDiagnosisDescription", "InterpretationIDIssuer", "InterpretationRecorder", "InterpretationText", "InterpretationTranscriber", "IrradiationEventUID", "IssuerOfAdmissionID", "IssuerOfPatientID", "IssuerOfServiceEpisodeID", "LargePaletteColorLookupTableUID", "MAC", "MediaStorageSOPInstanceUID", "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank", "ModifiedAttributesSequence", "ModifiedImageDescription", "ModifyingDeviceID", "NameOfPhysiciansReadingStudy", "NamesOfIntendedRecipientsOfResults", "Occupation", "OperatorIdentificationSequence", "OperatorsName", "OriginalAttributesSequence", "OrderCallbackPhoneNumber", "OrderEnteredBy", "OrderEntererLocation", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "OverlayDate", "OverlayTime", "PaletteColorLookupTableUID", "ParticipantSequence", "PatientAddress", "PatientAge", "PatientBirthDate", "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientID", "PatientInstitutionResidence", "PatientInsurancePlanCodeSequence", "PatientMotherBirthName", "PatientName", "PatientPrimaryLanguageCodeSequence", "PatientPrimaryLanguageModifierCodeSequence", "PatientReligiousPreference", "PatientSex", "PatientSexNeutered", "PatientSize", "PatientState", "PatientTelephoneNumbers", "PatientTransportArrangements", "PatientWeight", "PatientAddress", "PerformedLocation", "PerformedProcedureStepDescription", "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "PerformedProcedureStepID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedStationAETitle", "PerformedStationGeographicLocationCodeSequence", "PerformedStationName", "PerformedStationNameCodeSequence", "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName", "PersonAddress", "PersonIdentificationCodeSequence", "PersonName", "PersonTelephoneNumbers", "PhysicianApprovingInterpretation", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence", "PlacerOrderNumberImagingServiceRequest", "PlateID", "PreMedication", "PregnancyStatus", "PresentationDisplayCollectionUID", "PresentationSequenceCollectionUID", "ProtocolName", "ReasonForOmissionDescription", "ReasonForTheImagingServiceRequest", "ReasonForStudy", "ReferencedDigitalSignatureSequence", "ReferencedFrameOfReferenceUID", "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "ReferencedImageSequence", "ReferencedPatientAliasSequence", "ReferencedPatientPhotoSequence", "ReferencedPatientSequence", "ReferencedPerformedProcedureStepSequence", "ReferencedSOPInstanceMACSequence", "ReferencedSOPInstanceUID", "ReferencedStudySequence", "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence", "ReferringPhysicianName", "ReferringPhysicianTelephoneNumbers", "RegionOfResidence", "RelatedFrameOfReferenceUID", "RequestAttributesSequence", "RequestedContrastAgent", "RequestedProcedureComments", "RequestedProcedureDescription", "RequestedProcedureID", "RequestedProcedureLocation", "RequestedSOPInstanceUID", "RequestingPhysician", "RequestingService", "RequestingPhysicianIdentificationSequence", "ResponsibleOrganization", "ResponsiblePerson", "ResultsComments", "ResultsDistributionListSequence", "ResultsIDIssuer", "ReviewerName", "ScheduledHumanPerformersSequence", "ScheduledPatientInstitutionResidence", "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledPerformingPhysicianName", "ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime", "ScheduledProcedureStepDescription", "ScheduledProcedureStepLocation", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime", "ScheduledStationAETitle", "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName", "ScheduledStationNameCodeSequence", "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "SeriesDate", "SeriesInstanceUID", "SeriesTime", "ServiceEpisodeDescription", "ServiceEpisodeID", "SmokingStatus", "SOPInstanceUID", "SourceImageSequence", "SpecialNeeds", "StationName", "StorageMediaFileSetUID", "StudyComments", "StudyDate", "StudyID", "StudyIDIssuer", "StudyInstanceUID", "StudyTime", "SynchronizationFrameOfReferenceUID", "TemplateExtensionCreatorUID", "TemplateExtensionOrganizationUID", "TextComments", "TextString", "TimezoneOffsetFromUTC", "TopicAuthor", "TopicKeywords", "TopicSubject", "TopicTitle", "TransactionUID", "UID", "VerifyingObserverIdentificationCodeSequence", "VerifyingObserverName", "VerifyingObserverSequence", "VerifyingOrganization", "VisitComments"])

MASK = "•••"


def is_identifying(keyword: str, is_private: bool = False) -> bool:
    """True for attributes the basic profile removes; private attributes are always masked."""
    return is_private or keyword in BASIC_PROFILE


def _value_text(elem: Any, limit: int = 160) -> str:
    if elem.VR == "SQ":
        return f"<sequence of {len(elem.value)} item(s)>"
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or elem.tag == 0x7FE00010:
        n = len(elem.value) if elem.value is not None else 0
        return f"<{n} bytes of binary data>"
    text = str(elem.value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header_rows(ds: Any) -> list[HeaderRow]:
    """A flat table of a pydicom Dataset's top-level attributes, identifying values masked."""
    rows = []
    meta = getattr(ds, "file_meta", None)
    elements = list(meta or []) + list(ds)
    for elem in elements:
        keyword = elem.keyword or ""
        masked = is_identifying(keyword, elem.tag.is_private)
        rows.append(HeaderRow(
            tag=f"({elem.tag.group:04X},{elem.tag.element:04X})",
            keyword=keyword or (elem.name if not elem.tag.is_private else "private"),
            vr=str(elem.VR),
            value=_value_text(elem),
            masked=masked,
        ))
    return rows


def table(rows: list[HeaderRow], reveal: bool = False) -> list[dict[str, str]]:
    """Rows ready for a table widget: values of identifying attributes replaced unless revealed."""
    return [{"tag": r.tag, "attribute": r.keyword, "VR": r.vr,
             "value": r.value if (reveal or not r.masked) else MASK} for r in rows]
