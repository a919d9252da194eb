"""The structure sets of a study and the CT each belongs to, as planning needs them.

Structure sets are recognised by their SOP class, not by Modality (files in
the wild carry wrong modalities; OpenTPS' SimpleFantom RTSTRUCT says
RTDOSE). Their ROI lists come from the file (Orthanc's index does not hold
them); a structure set never changes once stored, so the summaries are
cached by Orthanc instance id.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.rtstruct import read_structure_set
from orthanc_rt.errors import DicomInputError, OrthancError
from orthanc_rt.pacs.client import OrthancApi, get_json
from orthanc_rt.pacs.inputs import read_instance
from orthanc_rt.pacs.resources import (
    find_study,
    instance_tag,
    sop_class_of,
    study_series,
)

_FRAME_OF_REFERENCE = "0020,0052"
_CACHE_SIZE = 64


@dataclass(frozen=True)
class RoiSummary:
    number: int
    name: str
    contours: int  # usable closed planar contours
    interpreted_type: str = ""


@dataclass(frozen=True)
class StructureSetSummary:
    orthanc_id: str
    sop_instance_uid: str
    label: str
    created: str  # StructureSetDate + StructureSetTime, for "newest first"
    frame_of_reference_uid: str
    ct_series_instance_uid: str | None
    rois: tuple[RoiSummary, ...]
    problem: str = ""  # why it cannot be used for planning ("" when it can)

    def contoured(self) -> dict[str, bool]:
        return {roi.name: roi.contours > 0 for roi in self.rois}

    def as_dict(self) -> dict[str, Any]:
        return {"orthanc_id": self.orthanc_id, "sop_instance_uid": self.sop_instance_uid, "label": self.label,
                "created": self.created, "frame_of_reference_uid": self.frame_of_reference_uid,
                "ct_series_instance_uid": self.ct_series_instance_uid, "problem": self.problem or None,
                "rois": [{"number": r.number, "name": r.name, "contours": r.contours,
                          "interpreted_type": r.interpreted_type} for r in self.rois]}


@dataclass(frozen=True)
class CtSeries:
    orthanc_id: str
    series_instance_uid: str
    frame_of_reference_uid: str
    slices: int


class StructureSetIndex:
    """Summaries of structure sets in Orthanc, cached per instance."""

    def __init__(self, api: OrthancApi):
        self.api = api
        self._cache: OrderedDict[str, StructureSetSummary] = OrderedDict()
        self._lock = Lock()

    def study_id(self, study: str) -> str | None:
        """The Orthanc id of a study given by Orthanc id or StudyInstanceUID (None: not in Orthanc)."""
        try:
            return get_json(self.api, f"/studies/{study}")["ID"]
        except OrthancError as exc:
            if exc.status not in (400, 404):
                raise
        return find_study(self.api, study)

    def of_study(self, orthanc_study_id: str) -> list[StructureSetSummary]:
        """Every structure set of the study, newest first."""
        found = []
        for series in study_series(self.api, orthanc_study_id):
            instances = series.get("Instances", [])
            if instances and sop_class_of(self.api, instances[0]) == sop.RT_STRUCTURE_SET:
                found.extend(self.summary(i) for i in instances)
        return sorted(found, key=lambda s: s.created, reverse=True)

    def find(self, orthanc_study_id: str, key: str) -> StructureSetSummary | None:
        """A structure set of the study by Orthanc instance id or SOPInstanceUID."""
        for summary in self.of_study(orthanc_study_id):
            if key in (summary.orthanc_id, summary.sop_instance_uid):
                return summary
        return None

    def summary(self, instance_id: str) -> StructureSetSummary:
        with self._lock:
            if instance_id in self._cache:
                self._cache.move_to_end(instance_id)
                return self._cache[instance_id]
        summary = _summarise(self.api, instance_id)
        with self._lock:
            self._cache[instance_id] = summary
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return summary

    def planning_ct(self, orthanc_study_id: str, structure_set: StructureSetSummary,
                    explicit: str | None = None) -> CtSeries | None:
        """The CT series to plan on: `explicit` (Orthanc id or SeriesInstanceUID), else the one the
        structure set references, else the fullest CT series on its frame of reference."""
        candidates = self.ct_series(orthanc_study_id)
        if explicit:
            return next((c for c in candidates if explicit in (c.orthanc_id, c.series_instance_uid)), None)
        if structure_set.ct_series_instance_uid:
            named = [c for c in candidates if c.series_instance_uid == structure_set.ct_series_instance_uid]
            if named:
                return named[0]
        same_frame = [c for c in candidates if c.frame_of_reference_uid == structure_set.frame_of_reference_uid]
        return max(same_frame, key=lambda c: c.slices) if same_frame else None

    def ct_series(self, orthanc_study_id: str) -> list[CtSeries]:
        return [_ct(self.api, s) for s in study_series(self.api, orthanc_study_id)
                if s["MainDicomTags"].get("Modality") == "CT" and s.get("Instances")]


def _ct(api: OrthancApi, series: dict[str, Any]) -> CtSeries:
    return CtSeries(orthanc_id=series["ID"], series_instance_uid=series["MainDicomTags"].get("SeriesInstanceUID", ""),
                    frame_of_reference_uid=instance_tag(api, series["Instances"][0], _FRAME_OF_REFERENCE) or "",
                    slices=len(series["Instances"]))


def _summarise(api: OrthancApi, instance_id: str) -> StructureSetSummary:
    ds = read_instance(api, instance_id)
    uid = str(ds.get("SOPInstanceUID", ""))
    created = f"{ds.get('StructureSetDate', '')}{ds.get('StructureSetTime', '')}"
    label = str(ds.get("StructureSetLabel", ""))
    try:
        structure_set = read_structure_set(ds)
    except DicomInputError as exc:
        rois = tuple(RoiSummary(int(r.ROINumber), str(r.get("ROIName", "")), 0)
                     for r in ds.get("StructureSetROISequence", []) if "ROINumber" in r)
        return StructureSetSummary(instance_id, uid, label, created, "", None, rois, problem=str(exc))
    rois = tuple(RoiSummary(r.number, r.name, len(r.contours), r.interpreted_type) for r in structure_set.rois)
    return StructureSetSummary(instance_id, uid, label, created, structure_set.frame_of_reference_uid,
                               structure_set.ct_series_instance_uid, rois)

