"""TID 1500 measurement reports (DICOM SR, as OHIF stores them): reading them into measurement records, building them.

Reading walks the content tree for Measurement Groups (125007) and takes
every NUM item in them: its value, UCUM unit, concept, the image its SCOORD
selects (series from CurrentRequestedProcedureEvidenceSequence) and the
group's tracking identifier and finding. Units decide the measurement type.
Building writes what OHIF's "create report" writes, so the reader takes it back.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Sequence

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from orthanc_rt.dicom import sop
from orthanc_rt.dicom._common import (
    check_study,
    check_uid,
    dicom_date,
    dicom_time,
    ds_value,
    new_dataset,
    reference,
    seq_item,
)
from orthanc_rt.dicom.models import PatientStudy, SrMeasurement
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError

SR_CLASSES = (sop.COMPREHENSIVE_SR, sop.ENHANCED_SR, "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
              "1.2.840.10008.5.1.4.1.1.88.34")  # Comprehensive 3D SR
_TYPE_OF_UNIT = {"mm": ("distance", "mm"), "mm2": ("area", "mm2"), "mm3": ("volume", "mm3"), "deg": ("angle", "deg"),
                 "[hnsf'U]": ("hounsfield", "HU"), "cm": ("distance", "mm"), "cm2": ("area", "mm2")}
_SCALE = {"cm": 10.0, "cm2": 100.0}
_MEASUREMENT_GROUP = "125007"
# Concepts of TID 1500 numeric measurements as OHIF/dcmjs write them (SNOMED CT), and their UCUM units.
SR_CONCEPTS = {"Length": ("410668003", "SCT"), "Area": ("42798000", "SCT"), "Volume": ("118565006", "SCT"),
               "Angle": ("1483009", "SCT"), "Mean": ("373098007", "SCT")}
_UCUM_MEANINGS = {"mm": "millimeter", "mm2": "square millimeter", "mm3": "cubic millimeter", "deg": "degree",
                  "[hnsf'U]": "Hounsfield unit"}


def is_measurement_report(ds: Dataset) -> bool:
    templates = [str(t.get("TemplateIdentifier", "")) for t in ds.get("ContentTemplateSequence", [])]
    concept = ds.get("ConceptNameCodeSequence", [None])[0]
    return "1500" in templates or (concept is not None and str(concept.get("CodeValue", "")) == "126000")


def read_measurement_report(ds: Dataset) -> tuple[list[dict[str, Any]], list[str]]:
    """The fields of measurement records (source "sr", no id yet) and the reasons items were left out.

    Plain mappings, not database rows: DICOM sits below the records (the job makes them `Measurement`s)."""
    where = f"SR {ds.get('SOPInstanceUID', '?')}"
    if str(ds.get("SOPClassUID", "")) not in SR_CLASSES:
        raise DicomInputError(f"{where}: is {sop.describe(str(ds.get('SOPClassUID', '')))}, not a structured report")
    if not is_measurement_report(ds):
        raise DicomInputError(f"{where}: not a TID 1500 measurement report (ContentTemplateSequence)")
    series_of = {str(ref.ReferencedSOPInstanceUID): str(series.SeriesInstanceUID)
                 for study in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
                 for series in study.get("ReferencedSeriesSequence", [])
                 for ref in series.get("ReferencedSOPSequence", [])}
    observer = next((str(i.PersonName) for i in ds.get("ContentSequence", [])
                     if i.get("ValueType") == "PNAME" and "PersonName" in i), "")
    rows, skipped = [], []
    for group in _groups(ds):
        context = _group_context(group)
        for item in group.get("ContentSequence", []):
            if item.get("ValueType") != "NUM":
                continue
            concept = _meaning(item, "ConceptNameCodeSequence") or "measurement"
            values = item.get("MeasuredValueSequence", [])
            if not values or "NumericValue" not in values[0]:
                skipped.append(f"{concept}: no value")
                continue
            unit = str(values[0].MeasurementUnitsCodeSequence[0].CodeValue) \
                if values[0].get("MeasurementUnitsCodeSequence") else ""
            if unit not in _TYPE_OF_UNIT:
                skipped.append(f"{concept}: unit {unit!r} is not one we record")
                continue
            kind, our_unit = _TYPE_OF_UNIT[unit]
            image = _selected_image(item)
            rows.append(dict(
                source="sr", type=kind, metric=concept.lower()[:32],
                value=float(values[0].NumericValue) * _SCALE.get(unit, 1.0), unit=our_unit,
                method="imported from DICOM SR (TID 1500)", label=(context["finding"] or context["tracking"])[:128],
                study_instance_uid=str(ds.get("StudyInstanceUID", "")),
                series_instance_uid=series_of.get(image.get("sop", ""), ""), sop_instance_uid=image.get("sop", ""),
                frame_number=image.get("frame"), sr_instance_uid=str(ds.SOPInstanceUID),
                created_by=observer[:128] or "sr",
                details={"tracking_identifier": context["tracking"], "tracking_uid": context["tracking_uid"],
                         "graphic_type": image.get("graphic_type", ""), "sr_unit": unit}))
    return rows, skipped


def _groups(node: Any) -> Iterator[Dataset]:
    for item in node.get("ContentSequence", []):
        code = item.get("ConceptNameCodeSequence", [None])[0]
        if item.get("ValueType") == "CONTAINER" and code is not None and \
                str(code.get("CodeValue", "")) == _MEASUREMENT_GROUP:
            yield item
        elif item.get("ValueType") == "CONTAINER":
            yield from _groups(item)


def _group_context(group: Dataset) -> dict[str, str]:
    out = {"tracking": "", "tracking_uid": "", "finding": ""}
    for item in group.get("ContentSequence", []):
        code = item.get("ConceptNameCodeSequence", [None])[0]
        value = str(code.get("CodeValue", "")) if code is not None else ""
        if value == "112039":
            out["tracking"] = str(item.get("TextValue", ""))
        elif value == "112040":
            out["tracking_uid"] = str(item.get("UID", ""))
        elif value == "121071":
            out["finding"] = _meaning(item, "ConceptCodeSequence") or str(item.get("TextValue", ""))
    return out


def _selected_image(num: Dataset) -> dict[str, Any]:
    for child in num.get("ContentSequence", []):
        if child.get("ValueType") in ("SCOORD", "SCOORD3D"):
            for leaf in child.get("ContentSequence", []):
                if leaf.get("ValueType") == "IMAGE" and leaf.get("ReferencedSOPSequence"):
                    ref = leaf.ReferencedSOPSequence[0]
                    frames = ref.get("ReferencedFrameNumber")
                    frame = None if frames in (None, "") else \
                        int(frames[0] if isinstance(frames, MultiValue) else frames)
                    return {"sop": str(ref.ReferencedSOPInstanceUID), "frame": frame,
                            "graphic_type": str(child.get("GraphicType", ""))}
        if child.get("ValueType") == "IMAGE" and child.get("ReferencedSOPSequence"):
            return {"sop": str(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)}
    return {}


def _meaning(item: Dataset, sequence: str) -> str:
    codes = item.get(sequence, [])
    return str(codes[0].get("CodeMeaning", "")) if codes else ""


# --- building ---------------------------------------------------------------------------------------------

def build_measurement_report(study: PatientStudy, measurements: Sequence[SrMeasurement], *,
                             sop_instance_uid: str, series_instance_uid: str, observer: str = "OHIF^USER",
                             series_description: str = "Measurement report", series_number: int = 50,
                             created: datetime | None = None) -> Dataset:
    """A Comprehensive SR "Imaging Measurement Report" (TID 1500) as OHIF's "create report" stores it.

    One Measurement Group (TID 1501) per measurement: tracking identifier
    and UID, an optional finding, and one NUM item whose SCOORD (INFERRED
    FROM) selects the image it was drawn on.
    """
    check_study(study)
    check_uid(sop_instance_uid, "sop_instance_uid")
    check_uid(series_instance_uid, "series_instance_uid")
    if not measurements:
        raise DicomInputError("measurement report: no measurements")
    when = created or datetime.now()
    ds = new_dataset(sop.COMPREHENSIVE_SR, sop_instance_uid, "SR", study, series_instance_uid=series_instance_uid,
                     series_number=series_number, series_description=series_description, created=when,
                     frame_of_reference=False)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = dicom_date(when), dicom_time(when)
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("126000", "DCM", "Imaging Measurement Report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentTemplateSequence = [seq_item(MappingResource="DCMR", TemplateIdentifier="1500")]
    ds.CompletionFlag, ds.VerificationFlag = "PARTIAL", "UNVERIFIED"
    groups = [_measurement_group(index, m, sop_instance_uid) for index, m in enumerate(measurements, start=1)]
    ds.ContentSequence = [
        seq_item(RelationshipType="HAS CONCEPT MOD", ValueType="CODE",
                 ConceptNameCodeSequence=[_code("121049", "DCM", "Language of Content Item and Descendants")],
                 ConceptCodeSequence=[_code("eng", "RFC5646", "English")]),
        seq_item(RelationshipType="HAS OBS CONTEXT", ValueType="PNAME",
                 ConceptNameCodeSequence=[_code("121008", "DCM", "Person Observer Name")], PersonName=observer),
        seq_item(RelationshipType="CONTAINS", ValueType="CONTAINER", ContinuityOfContent="SEPARATE",
                 ConceptNameCodeSequence=[_code("126010", "DCM", "Imaging Measurements")], ContentSequence=groups),
    ]
    by_series: dict[str, list[SrMeasurement]] = {}
    for m in measurements:
        by_series.setdefault(m.referenced_series_instance_uid, []).append(m)
    ds.CurrentRequestedProcedureEvidenceSequence = [seq_item(
        StudyInstanceUID=study.study_instance_uid,
        ReferencedSeriesSequence=[seq_item(SeriesInstanceUID=series, ReferencedSOPSequence=[
            reference(m.referenced_sop_class_uid, m.referenced_sop_instance_uid) for m in items])
            for series, items in by_series.items()])]
    return ds


def _measurement_group(index: int, m: SrMeasurement, sop_instance_uid: str) -> Dataset:
    """TID 1501 for measurement number `index`; its tracking UID defaults to one derived from the report's."""
    if m.unit not in _UCUM_MEANINGS:
        raise DicomInputError(f"measurement {index}: unit {m.unit!r} is not one of {sorted(_UCUM_MEANINGS)}")
    check_uid(m.referenced_sop_instance_uid, f"measurement {index} referenced_sop_instance_uid")
    code, scheme = SR_CONCEPTS.get(m.concept, (f"ORT{index}", "99ORTHANCRT"))
    image = seq_item(RelationshipType="SELECTED FROM", ValueType="IMAGE", ReferencedSOPSequence=[seq_item(
        ReferencedSOPClassUID=m.referenced_sop_class_uid, ReferencedSOPInstanceUID=m.referenced_sop_instance_uid,
        **({"ReferencedFrameNumber": m.frame_number} if m.frame_number else {}))])
    scoord = seq_item(RelationshipType="INFERRED FROM", ValueType="SCOORD", GraphicType=m.graphic_type,
                      GraphicData=[float(v) for v in m.graphic_data], ContentSequence=[image])
    num = seq_item(RelationshipType="CONTAINS", ValueType="NUM",
                   ConceptNameCodeSequence=[_code(code, scheme, m.concept)],
                   MeasuredValueSequence=[seq_item(NumericValue=ds_value(m.value), MeasurementUnitsCodeSequence=[
                       _code(m.unit, "UCUM", _UCUM_MEANINGS[m.unit])])],
                   ContentSequence=[scoord])
    content = [
        seq_item(RelationshipType="HAS OBS CONTEXT", ValueType="TEXT",
                 ConceptNameCodeSequence=[_code("112039", "DCM", "Tracking Identifier")],
                 TextValue=m.tracking_identifier or f"Orthanc-RT:{m.concept}"),
        seq_item(RelationshipType="HAS OBS CONTEXT", ValueType="UIDREF",
                 ConceptNameCodeSequence=[_code("112040", "DCM", "Tracking Unique Identifier")],
                 UID=m.tracking_uid or derive_uid(sop_instance_uid, "tracking", str(index))),
    ]
    if m.finding:
        content.append(seq_item(RelationshipType="CONTAINS", ValueType="CODE",
                                ConceptNameCodeSequence=[_code("121071", "DCM", "Finding")],
                                ConceptCodeSequence=[_code("ORT-FINDING", "99ORTHANCRT", m.finding[:64])]))
    content.append(num)
    return seq_item(RelationshipType="CONTAINS", ValueType="CONTAINER", ContinuityOfContent="SEPARATE",
                    ConceptNameCodeSequence=[_code(_MEASUREMENT_GROUP, "DCM", "Measurement Group")],
                    ContentTemplateSequence=[seq_item(MappingResource="DCMR", TemplateIdentifier="1501")],
                    ContentSequence=content)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return seq_item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)
