"""SOP Class UIDs of the objects Orthanc-RT reads and writes (DICOM PS3.4 B.5)."""
from __future__ import annotations

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RT_ION_PLAN = "1.2.840.10008.5.1.4.1.1.481.8"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
# Retired, but still what RTReferencedStudySequence items name by convention.
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"

NAMES: dict[str, str] = {
    CT_IMAGE: "CT Image Storage",
    ENHANCED_CT_IMAGE: "Enhanced CT Image Storage",
    RT_STRUCTURE_SET: "RT Structure Set Storage",
    RT_PLAN: "RT Plan Storage",
    RT_ION_PLAN: "RT Ion Plan Storage",
    RT_DOSE: "RT Dose Storage",
    COMPREHENSIVE_SR: "Comprehensive SR Storage",
    ENHANCED_SR: "Enhanced SR Storage",
    ENCAPSULATED_PDF: "Encapsulated PDF Storage",
    DETACHED_STUDY_MANAGEMENT: "Detached Study Management",
}


def name_of(uid: str) -> str:
    """The SOP class's name, e.g. "RT Plan Storage"; the UID itself when we do not know it."""
    return NAMES.get(str(uid), str(uid))


def describe(uid: str) -> str:
    """Name and UID for messages, e.g. "RT Plan Storage (1.2.840.10008.5.1.4.1.1.481.5)"."""
    name = NAMES.get(str(uid))
    return f"{name} ({uid})" if name else f"SOP class {uid}"
