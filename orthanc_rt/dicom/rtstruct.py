"""RT Structure Set datasets to plain ROI outlines (the writing side is `builders.build_rtstruct`).

Every ROI keeps its closed planar contours as (z, polygon) pairs in patient
mm; contours that cannot bound an area (fewer than three points, no area,
not CLOSED_PLANAR, off-axis planes) are dropped and counted, so the caller
can skip an ROI "with a reason" instead of failing the whole structure set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.raw_sequence import read_items
from orthanc_rt.errors import DicomInputError

# Points of one contour must share z to this tolerance to be a planar axial contour.
_PLANAR_TOLERANCE_MM = 0.01


@dataclass
class Roi:
    number: int
    name: str
    color: str = ""  # "#rrggbb"; empty when the ROI has no ROIDisplayColor
    interpreted_type: str = ""
    contours: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (z mm, [n, 2] x, y mm)
    rejected: list[str] = field(default_factory=list)  # why contours were dropped

    def planes(self) -> dict[float, list[np.ndarray]]:
        """Polygons by plane z (rounded to 1 µm so equal planes group)."""
        out: dict[float, list[np.ndarray]] = {}
        for z, polygon in self.contours:
            out.setdefault(round(z, 3), []).append(polygon)
        return dict(sorted(out.items()))


@dataclass
class StructureSet:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    ct_series_instance_uid: str | None
    rois: list[Roi]


def read_structure_set(ds: Dataset) -> StructureSet:
    where = f"RTSTRUCT {ds.get('SOPInstanceUID', '(no SOPInstanceUID)')}"
    if str(ds.get("SOPClassUID", "")) != sop.RT_STRUCTURE_SET:
        raise DicomInputError(f"{where}: is {sop.describe(str(ds.get('SOPClassUID', '')))}; expected "
                              f"{sop.describe(sop.RT_STRUCTURE_SET)}")
    frames = [str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])
              if f.get("FrameOfReferenceUID")]
    roi_frames = {int(r.ROINumber): str(r.get("ReferencedFrameOfReferenceUID", ""))
                  for r in ds.get("StructureSetROISequence", [])}
    frame = frames[0] if frames else next((f for f in roi_frames.values() if f), "")
    if not frame:
        raise DicomInputError(f"{where}: names no FrameOfReferenceUID (ReferencedFrameOfReferenceSequence)")
    types = {int(o.ReferencedROINumber): str(o.get("RTROIInterpretedType", ""))
             for o in ds.get("RTROIObservationsSequence", []) if "ReferencedROINumber" in o}
    rois = {int(r.ROINumber): Roi(number=int(r.ROINumber), name=str(r.get("ROIName", "")),
                                  interpreted_type=types.get(int(r.ROINumber), ""))
            for r in ds.get("StructureSetROISequence", [])}
    for number, color, contours in _roi_contours(ds):
        roi = rois.setdefault(number, Roi(number=number, name=f"ROI {number}"))
        if color is not None and len(color) == 3:
            roi.color = "#" + "".join(f"{int(c):02x}" for c in color)
        _add_contours(roi, contours)
    return StructureSet(
        sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")), frame_of_reference_uid=frame,
        ct_series_instance_uid=referenced_ct_series(ds), rois=[rois[k] for k in sorted(rois)])


# (ReferencedROINumber, ROIDisplayColor or None, [(ContourGeometricType, ContourData bytes or its Dataset)])
_RoiContours = tuple[int, Sequence[Any] | None, list[tuple[str, "bytes | Dataset"]]]
_REFERENCED_ROI_NUMBER, _COLOR, _CONTOURS = 0x30060084, 0x3006002A, 0x30060040
_GEOMETRIC_TYPE, _CONTOUR_DATA = 0x30060042, 0x30060050


def _roi_contours(ds: Dataset) -> list[_RoiContours]:
    """ROIContourSequence, from its bytes when it is still raw (see raw_sequence.py), else through pydicom."""
    items = read_items(ds.get_item("ROIContourSequence"), {_REFERENCED_ROI_NUMBER, _COLOR, _GEOMETRIC_TYPE,
                                                            _CONTOUR_DATA}, {_CONTOURS})
    if items is not None and all(_REFERENCED_ROI_NUMBER in item for item in items):
        try:
            return [(int(item[_REFERENCED_ROI_NUMBER]), _color(item.get(_COLOR)),
                     [(c.get(_GEOMETRIC_TYPE, b"").decode("ascii").strip(" \x00"), c.get(_CONTOUR_DATA, b""))
                      for c in item.get(_CONTOURS, [])])
                    for item in items]
        except (ValueError, UnicodeDecodeError):  # let pydicom read (and complain about) what is unusual
            pass
    return [(int(item.ReferencedROINumber), item.get("ROIDisplayColor"),
             [(str(c.get("ContourGeometricType", "")), c) for c in item.get("ContourSequence", [])])
            for item in ds.get("ROIContourSequence", [])]


def _color(raw: bytes | None) -> list[int] | None:
    text = (raw or b"").strip(b" \x00")
    return [int(v) for v in text.split(b"\\")] if text else None


def _add_contours(roi: Roi, contours: list[tuple[str, "bytes | Dataset"]]) -> None:
    """Keep the usable contours of one ROIContourSequence item, note why the others were dropped.

    The geometry checks run on all of the item's contours at once: structure
    sets carry thousands of contours, and per-contour numpy calls were most
    of the reading time.
    """
    reasons: dict[int, str] = {}
    candidates: list[tuple[int, np.ndarray]] = []
    for index, (kind, source) in enumerate(contours, start=1):
        if kind != "CLOSED_PLANAR":
            reasons[index] = f"contour {index}: {kind or 'no'} geometric type, not CLOSED_PLANAR"
            continue
        data = _ds_floats(source) if isinstance(source, bytes) else _contour_data(source)
        if data.size % 3 or data.size < 9:
            reasons[index] = f"contour {index}: {data.size // 3} points; a closed contour needs at least 3"
            continue
        candidates.append((index, data.reshape(-1, 3)))
    kept = []
    if candidates:
        points = np.concatenate([p for _, p in candidates])
        sizes = np.array([len(p) for _, p in candidates])
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        z_span = np.maximum.reduceat(points[:, 2], starts) - np.minimum.reduceat(points[:, 2], starts)
        areas = polygon_areas(points[:, :2], sizes)
        for (index, p), span, area in zip(candidates, z_span, areas):
            if span > _PLANAR_TOLERANCE_MM:
                reasons[index] = f"contour {index}: not on one axial plane (z spans {span:.3g} mm)"
            elif area <= 1e-6:
                reasons[index] = f"contour {index}: encloses no area"
            else:
                kept.append((float(p[0, 2]), p[:, :2]))
    roi.rejected.extend(reasons[i] for i in sorted(reasons))
    roi.contours.extend(kept)


def _contour_data(contour: Dataset) -> np.ndarray:
    """ContourData as floats; parsed straight from the raw bytes when read from a file (far faster than DS)."""
    element = contour.get_item("ContourData")
    if element is None or element.value is None:
        return np.zeros(0)
    if isinstance(element.value, bytes):
        return _ds_floats(element.value)
    return np.asarray(contour.ContourData, dtype=float).ravel()


def _ds_floats(raw: bytes) -> np.ndarray:
    """A multi-valued DS as encoded (backslash-separated decimal strings) to floats."""
    text = raw.strip(b" \x00")
    return np.array(text.split(b"\\"), dtype=float) if text else np.zeros(0)


def next_vertex(sizes: np.ndarray) -> np.ndarray:
    """For polygons stored one after the other (`sizes` vertices each): the index of each vertex's successor,
    the last vertex of a polygon closing on its first."""
    following = np.arange(1, int(np.sum(sizes)) + 1)
    following[np.cumsum(sizes) - 1] -= sizes
    return following


def polygon_areas(xy: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Shoelace areas in mm² of polygons stored one after the other in `xy` (orientation does not matter)."""
    following = next_vertex(sizes)
    cross = xy[:, 0] * xy[following, 1] - xy[:, 1] * xy[following, 0]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return np.abs(np.add.reduceat(cross, starts)) / 2.0


def referenced_ct_series(ds: Dataset) -> str | None:
    """The CT series the structure set names in ReferencedFrameOfReferenceSequence."""
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if series.get("SeriesInstanceUID"):
                    return str(series.SeriesInstanceUID)
    return None
