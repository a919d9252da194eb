"""TID 1500 measurement reports (DICOM SR, as OHIF stores them) to measurement records.

Walks the content tree for Measurement Groups (125007) and takes every NUM
item in them: its value, UCUM unit, concept, the image its SCOORD selects
(series from CurrentRequestedProcedureEvidenceSequence) and the group's
tracking identifier and finding. Units decide the measurement type.
"""
from __future__ import annotations

from typing import Any, Iterator

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from orthanc_rt.dicom import sop
from orthanc_rt.errors import DicomInputError
from orthanc_rt.records.tables import Measurement

SR_CLASSES = (sop.COMPREHENSIVE_SR, sop.ENHANCED_SR, "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
              "1.2.840.10008.5.1.4.1.1.88.34")  # Comprehensive 3D SR
_TYPE_OF_UNIT = {"mm": ("distance", "mm"), "mm2": ("area", "mm2"), "mm3": ("volume", "mm3"), "deg": ("angle", "deg"),
                 "[hnsf'U]": ("hounsfield", "HU"), "cm": ("distance", "mm"), "cm2": ("area", "mm2")}
_SCALE = {"cm": 10.0, "cm2": 100.0}
_MEASUREMENT_GROUP = "125007"


def is_measurement_report(ds: Dataset) -> bool:
    templates = [str(t.get("TemplateIdentifier", "")) for t in ds.get("ContentTemplateSequence", [])]
    concept = ds.get("ConceptNameCodeSequence", [None])[0]
    return "1500" in templates or (concept is not None and str(concept.get("CodeValue", "")) == "126000")


def read_measurement_report(ds: Dataset) -> tuple[list[Measurement], list[str]]:
    """Rows (source "sr", no id yet) and the reasons items were left out."""
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
            rows.append(Measurement(
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
