"""TID 1500 measurement reports: what the builder writes, the reader gives back as rows."""
import pytest

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.dicom.sr import is_measurement_report, read_measurement_report
from orthanc_rt.errors import DicomInputError
from orthanc_rt.records.tables import Measurement
from tests.support.cases import dvh_case, measurement_report


@pytest.fixture(scope="module")
def case():
    return dvh_case("sr")


def test_report_has_the_ohif_structure(case):
    ds = from_bytes(to_bytes(measurement_report(case)))
    assert ds.SOPClassUID == sop.COMPREHENSIVE_SR and ds.Modality == "SR"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    measurements = ds.ContentSequence[-1]
    assert measurements.ConceptNameCodeSequence[0].CodeValue == "126010"
    group = measurements.ContentSequence[0]
    assert group.ConceptNameCodeSequence[0].CodeValue == "125007"
    num = group.ContentSequence[-1]
    assert num.ValueType == "NUM" and num.ContentSequence[0].ValueType == "SCOORD"
    assert is_measurement_report(ds)


def test_reader_gives_rows_with_references(case):
    ds = from_bytes(to_bytes(measurement_report(case)))
    fields, skipped = read_measurement_report(ds)
    assert skipped == []
    rows = [Measurement(**f) for f in fields]
    length, area = rows
    assert (length.type, length.metric, length.value, length.unit) == ("distance", "length", 42.5, "mm")
    assert (area.type, area.metric, area.value, area.unit) == ("area", "area", 310.0, "mm2")
    assert length.sop_instance_uid == str(case.ct[20].SOPInstanceUID)
    assert length.series_instance_uid == str(case.ct[0].SeriesInstanceUID)
    assert (length.frame_number, area.frame_number) == (None, 1)
    assert length.label == "tumour width" and area.label.endswith("PlanarFreehandROI")
    assert {r.source for r in rows} == {"sr"} and {r.sr_instance_uid for r in rows} == {str(ds.SOPInstanceUID)}
    assert length.created_by == "OHIF^USER" and length.study_instance_uid == case.study.study_instance_uid


def test_reader_refuses_other_objects(case):
    with pytest.raises(DicomInputError, match="not a structured report"):
        read_measurement_report(case.rtdose)
    ds = measurement_report(case)
    ds.ContentTemplateSequence[0].TemplateIdentifier = "2000"
    ds.ConceptNameCodeSequence[0].CodeValue = "11528-7"
    with pytest.raises(DicomInputError, match="TID 1500"):
        read_measurement_report(ds)
