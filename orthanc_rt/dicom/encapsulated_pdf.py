"""Encapsulated PDF (PS3.3 A.45.1): reading the PDF out of one, and building one around a PDF in a study.

Built with pydicom: highdicom (0.28) builds SR, SEG, SC, KO, PM, PR and
annotations but has no Encapsulated Document class, so this module writes
the IOD's modules itself: Patient, General Study, Encapsulated Document
Series (Modality DOC), General Equipment, SC Equipment (ConversionType WSD:
made on a workstation, not scanned) and the Encapsulated Document module
(C.24.2). The instances the document reports on (plan, doses) go in
SourceInstanceSequence (0042,0013), the module's own reference to what the
document was derived from; the IOD has no other place for them.

The document's concept (ConceptNameCodeSequence, CID 7020 "Document Title",
extensible) is a local code of the house's private coding scheme: LOINC and
DCM have no concept for a patient-specific independent dose-calculation
check, and the nearest standard ones ("Diagnostic imaging report", "X-Ray
Radiation Dose Report") would file the document as something it is not.
"""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom._common import (
    MANUFACTURER,
    check_study,
    check_text,
    check_uid,
    dicom_date,
    dicom_time,
    new_dataset,
    reference,
    seq_item,
)
from orthanc_rt.dicom.attributes import described
from orthanc_rt.dicom.models import PatientStudy
from orthanc_rt.errors import DicomInputError

MIME_TYPE = "application/pdf"
MODALITY = "DOC"
# A private coding scheme (PS3.16 8: designators starting "99"); sr.py uses the same designator.
CODING_SCHEME = "99ORTHANCRT"
DOSE_CHECK_CODE = ("DOSECHECK", CODING_SCHEME, "Independent dose calculation check")
_TITLE_LIMIT = 1024  # DocumentTitle is ST
_PDF_MAGIC = b"%PDF-"


def build_encapsulated_pdf(pdf: bytes, study: PatientStudy, *, sop_instance_uid: str, series_instance_uid: str,
                           document_title: str, referenced: Sequence[tuple[str, str]] = (),
                           series_number: int = 60, series_description: str = "Dose check report",
                           concept: tuple[str, str, str] = DOSE_CHECK_CODE,
                           created: datetime | None = None) -> Dataset:
    """An Encapsulated PDF Storage instance holding `pdf` in `study`.

    `referenced`: (SOP class UID, SOP instance UID) of each instance the
    document was derived from (the plan and the doses it compares).
    `concept`: (code value, coding scheme designator, code meaning).
    BurnedInAnnotation is YES: the report prints the patient's name and ID.
    """
    _check_pdf(pdf)
    check_study(study)
    check_uid(sop_instance_uid, "sop_instance_uid")
    check_uid(series_instance_uid, "series_instance_uid")
    if not isinstance(document_title, str) or not document_title.strip():
        raise DicomInputError("document_title: empty; DocumentTitle (0042,0010) names the document in viewers")
    check_text(document_title, "document_title", _TITLE_LIMIT)
    check_text(series_description, "series_description", 64)
    if isinstance(series_number, bool) or not isinstance(series_number, int) or not 0 <= series_number < 2 ** 31:
        raise DicomInputError(f"series_number must be a whole number from 0 to 2^31 - 1, not {series_number!r}")
    for index, (sop_class, sop_instance) in enumerate(referenced, start=1):
        check_uid(sop_class, f"referenced[{index}] SOP class")
        check_uid(sop_instance, f"referenced[{index}] SOP instance")
    code_value, scheme, meaning = concept
    check_text(code_value, "concept code value", 16)
    check_text(meaning, "concept code meaning", 64)

    when = created or datetime.now()
    ds = new_dataset(sop.ENCAPSULATED_PDF, sop_instance_uid, MODALITY, study,
                     series_instance_uid=series_instance_uid, series_number=series_number,
                     series_description=series_description, created=when, frame_of_reference=False)
    del ds.OperatorsName  # General Series has it; the Encapsulated Document Series does not
    if scheme == CODING_SCHEME:
        # SOP Common: a private coding scheme is declared where it is used (PS3.3 C.12.1.1.2)
        ds.CodingSchemeIdentificationSequence = [seq_item(
            CodingSchemeDesignator=CODING_SCHEME, CodingSchemeName="Orthanc-RT local codes",
            CodingSchemeResponsibleOrganization=MANUFACTURER)]
    # SC Equipment: a document made on a workstation; the software that made it is the device.
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = MANUFACTURER
    ds.SecondaryCaptureDeviceSoftwareVersions = ds.SoftwareVersions
    # Encapsulated Document module
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = dicom_date(when), dicom_time(when)
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    if referenced:
        ds.SourceInstanceSequence = [reference(c, i) for c, i in referenced]
    ds.DocumentTitle = document_title
    ds.ConceptNameCodeSequence = [seq_item(CodeValue=code_value, CodingSchemeDesignator=scheme,
                                           CodeMeaning=meaning)]
    ds.MIMETypeOfEncapsulatedDocument = MIME_TYPE
    # OB values have even length (PS3.5 7.1.1): a PDF of odd length gets one NUL, which the length excludes.
    ds.EncapsulatedDocument = bytes(pdf) + b"\0" * (len(pdf) % 2)
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def read_encapsulated_pdf(ds: Dataset) -> bytes:
    """The PDF an Encapsulated PDF instance holds, without the pad byte."""
    where = f"Encapsulated PDF {ds.get('SOPInstanceUID', '(no SOPInstanceUID)')}"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != sop.ENCAPSULATED_PDF:
        raise DicomInputError(f"{where}: is {sop.describe(sop_class) if sop_class else 'no SOP class'}; "
                              f"expected {sop.describe(sop.ENCAPSULATED_PDF)}")
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "")).strip()
    if mime.lower() != MIME_TYPE:
        raise DicomInputError(f"{where}: {described('MIMETypeOfEncapsulatedDocument')} is {mime!r}, "
                              f"not {MIME_TYPE!r}")
    data = ds.get("EncapsulatedDocument")
    if not data:
        raise DicomInputError(f"{where}: {described('EncapsulatedDocument')} is missing or empty")
    document = bytes(data)
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and length != "":
        length = int(length)
        if not 0 < length <= len(document) or len(document) - length > 1:
            raise DicomInputError(f"{where}: {described('EncapsulatedDocumentLength')} is {length}, the document "
                                  f"{len(document)} bytes")
        document = document[:length]
    if not document.startswith(_PDF_MAGIC):
        raise DicomInputError(f"{where}: {described('EncapsulatedDocument')} is not a PDF (does not start with %PDF-)")
    return document


def _check_pdf(pdf: bytes) -> None:
    if not isinstance(pdf, (bytes, bytearray)):
        raise DicomInputError(f"pdf must be bytes, not {type(pdf).__name__}")
    if not pdf:
        raise DicomInputError("pdf is empty: nothing to encapsulate")
    if not bytes(pdf[:5]) == _PDF_MAGIC:
        raise DicomInputError(f"pdf is not a PDF: it must start with %PDF-, starts with {bytes(pdf[:8])!r}")
    # 0xFFFFFFFE: the largest even length an explicit-length OB value can have (PS3.5 7.1.2)
    if len(pdf) > 0xFFFFFFFE:
        raise DicomInputError(f"pdf is {len(pdf)} bytes; an OB value holds at most 4 GiB")
