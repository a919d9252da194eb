"""Encapsulated PDF: what the builder writes survives Part 10 bytes, the reader gives the PDF back, dciodvfy agrees."""
import shutil
import subprocess
from datetime import datetime

import pytest
from pydicom.datadict import dictionary_VR

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.encapsulated_pdf import build_encapsulated_pdf, read_encapsulated_pdf
from orthanc_rt.dicom.models import PatientStudy
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError
from orthanc_rt.rendering.check_report import render_check_report
from tests.support.comparisons import bare_comparison

STUDY = PatientStudy(patient_id="EPDF-1", patient_name="Doe^Jane", study_instance_uid=derive_uid("epdf", "study"),
                     frame_of_reference_uid=derive_uid("epdf", "for"), study_date="20260101", study_time="101500")
PLAN = (sop.RT_ION_PLAN, derive_uid("epdf", "plan"))
DOSES = [(sop.RT_DOSE, derive_uid("epdf", "dose", str(i))) for i in range(2)]
WHEN = datetime(2026, 11, 29, 13, 45, 7)


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return render_check_report(bare_comparison())


def _build(pdf: bytes, **overrides):
    arguments = dict(sop_instance_uid=derive_uid("epdf", "sop"), series_instance_uid=derive_uid("epdf", "series"),
                     document_title="Independent dose check: PASS", referenced=[PLAN, *DOSES], created=WHEN)
    arguments.update(overrides)
    return build_encapsulated_pdf(pdf, STUDY, **arguments)


def test_round_trip_through_part10_bytes(pdf):
    for document in (pdf, pdf + b"\n"):  # one of the two has an odd length and gets a pad byte
        ds = from_bytes(to_bytes(_build(document)))
        assert read_encapsulated_pdf(ds) == document
        assert len(ds.EncapsulatedDocument) % 2 == 0 and ds.EncapsulatedDocumentLength == len(document)
    assert len(pdf) % 2 != len(pdf + b"\n") % 2


def test_required_attributes_with_their_vrs(pdf):
    ds = from_bytes(to_bytes(_build(pdf)))
    expected = {"SOPClassUID": sop.ENCAPSULATED_PDF, "Modality": "DOC", "ConversionType": "WSD",
                "MIMETypeOfEncapsulatedDocument": "application/pdf", "BurnedInAnnotation": "YES",
                "DocumentTitle": "Independent dose check: PASS", "InstanceNumber": 1, "ContentDate": "20261129",
                "ContentTime": "134507", "AcquisitionDateTime": "20261129134507", "SeriesNumber": 60}
    for keyword, value in expected.items():
        assert ds[keyword].value == value, keyword
        assert ds[keyword].VR == dictionary_VR(keyword), keyword
    for keyword in ("EncapsulatedDocument", "EncapsulatedDocumentLength", "ConceptNameCodeSequence",
                    "SourceInstanceSequence", "Manufacturer", "PatientName", "PatientID", "StudyID"):
        assert ds[keyword].VR == dictionary_VR(keyword), keyword
    assert ds.file_meta.MediaStorageSOPClassUID == sop.ENCAPSULATED_PDF
    concept = ds.ConceptNameCodeSequence[0]
    assert concept.CodingSchemeDesignator.startswith("99")  # a private scheme, declared in the SOP Common module
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == concept.CodingSchemeDesignator
    assert "FrameOfReferenceUID" not in ds  # the IOD has no Frame of Reference module


def test_study_series_and_source_references(pdf):
    ds = from_bytes(to_bytes(_build(pdf)))
    assert (ds.PatientID, str(ds.PatientName)) == ("EPDF-1", "Doe^Jane")
    assert ds.StudyInstanceUID == STUDY.study_instance_uid
    assert ds.SeriesInstanceUID == derive_uid("epdf", "series") != ds.StudyInstanceUID
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in ds.SourceInstanceSequence] \
        == [PLAN, *DOSES]
    assert "SourceInstanceSequence" not in _build(pdf, referenced=())


@pytest.mark.parametrize("document, message", [
    (b"", "empty"), (b"<html></html>", "not a PDF"), ("%PDF-1.4", "must be bytes")])
def test_builder_refuses_what_is_not_a_pdf(document, message):
    with pytest.raises(DicomInputError, match=message):
        _build(document)


@pytest.mark.parametrize("overrides, message", [
    ({"document_title": "x" * 1025}, "document_title must be text of at most 1024"),
    ({"document_title": "  "}, "document_title: empty"),
    ({"sop_instance_uid": "1.2.abc"}, "sop_instance_uid '1.2.abc' is not a valid DICOM UID"),
    ({"series_instance_uid": "1." + "2" * 70}, "series_instance_uid"),
    ({"referenced": [(sop.RT_DOSE, "not-a-uid")]}, r"referenced\[1\] SOP instance"),
    ({"series_number": -1}, "series_number"),
])
def test_builder_refuses_bad_header_values(pdf, overrides, message):
    with pytest.raises(DicomInputError, match=message):
        _build(pdf, **overrides)


def test_reader_refuses_other_objects(pdf):
    ds = _build(pdf)
    ds.SOPClassUID = sop.RT_DOSE
    with pytest.raises(DicomInputError, match=r"is RT Dose Storage .*expected Encapsulated PDF Storage"):
        read_encapsulated_pdf(ds)
    ds = _build(pdf)
    ds.MIMETypeOfEncapsulatedDocument = "text/XML"
    with pytest.raises(DicomInputError, match=r"MIMETypeOfEncapsulatedDocument \(0042,0012\) is 'text/XML'"):
        read_encapsulated_pdf(ds)
    ds = _build(pdf)
    del ds.EncapsulatedDocument
    with pytest.raises(DicomInputError, match=r"EncapsulatedDocument \(0042,0011\) is missing"):
        read_encapsulated_pdf(ds)
    ds = _build(pdf)
    ds.EncapsulatedDocumentLength = len(pdf) + 10
    with pytest.raises(DicomInputError, match="EncapsulatedDocumentLength"):
        read_encapsulated_pdf(ds)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) not installed")
def test_dciodvfy_finds_no_error(pdf, tmp_path):
    path = tmp_path / "report.dcm"
    path.write_bytes(to_bytes(_build(pdf)))
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Warning"))]
    # dciodvfy knows only the standard coding schemes: our declared private one is the one warning left
    unexpected = [line for line in lines if "99ORTHANCRT" not in line]
    assert result.returncode == 0 and unexpected == [], lines
    # the validator does fail an object that lacks a Type 1 attribute
    broken = _build(pdf)
    del broken.BurnedInAnnotation
    path.write_bytes(to_bytes(broken))
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert "BurnedInAnnotation" in result.stdout + result.stderr
