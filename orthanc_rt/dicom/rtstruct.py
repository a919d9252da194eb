"""RT Structure Sets: reading one into plain ROI outlines, and building one from masks on a CT grid.

Reading: every ROI keeps its closed planar contours as (z, polygon) pairs in
patient mm; contours that cannot bound an area (fewer than three points, no
area, not CLOSED_PLANAR, off-axis planes) are dropped and counted, so the
caller can skip an ROI "with a reason" instead of failing the whole structure
set. Building: each mask becomes one CLOSED_PLANAR polygon per outline per
slice, along voxel edges (see `contours`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom._common import (
    check_same_frame,
    check_study,
    check_text,
    check_uid,
    dicom_date,
    dicom_time,
    ds_values,
    new_dataset,
    reference,
    seq_item,
)
from orthanc_rt.dicom.contours import slice_polygons
from orthanc_rt.dicom.ct import read_ct_geometry
from orthanc_rt.dicom.models import PatientStudy
from orthanc_rt.dicom.raw_sequence import read_items
from orthanc_rt.errors import DicomInputError

# Points of one contour must share z to this tolerance to be a planar axial contour.
_PLANAR_TOLERANCE_MM = 0.01
ROI_TYPES = ("EXTERNAL", "PTV", "CTV", "GTV", "ORGAN", "AVOIDANCE", "TREATED_VOLUME", "IRRADIATED_VOLUME",
             "BOLUS", "CAVITY", "SUPPORT", "FIXATION", "CONTROL", "DOSE_REGION", "MARKER", "ISOCENTER")
_ROI_COLOURS = ((255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 200, 0), (255, 0, 255), (0, 200, 200))


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


# --- building ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoiSpec:
    """One ROI to write into an RTSTRUCT: a mask on the CT grid."""

    name: str
    mask: np.ndarray  # [z, y, x] bool, the CT's shape
    type: str = "ORGAN"  # RTROIInterpretedType: PTV, CTV, ORGAN, EXTERNAL, ...
    color: tuple[int, int, int] | None = None  # RGB 0-255; None picks one


def build_rtstruct(ct_datasets: Sequence[Dataset], study: PatientStudy, rois: Sequence[RoiSpec], *,
                   series_instance_uid: str, sop_instance_uid: str, label: str,
                   series_description: str = "Structures (Orthanc-RT)", series_number: int = 2,
                   created: datetime | None = None) -> Dataset:
    """An RT Structure Set of `rois` (masks on the grid of `ct_datasets`), one polygon per outline per slice.

    Contours run along voxel edges (see `contours`), are CLOSED_PLANAR and
    reference the CT slice they lie on; ReferencedFrameOfReferenceSequence
    names the CT series.
    """
    check_study(study)
    check_uid(series_instance_uid, "series_instance_uid")
    check_uid(sop_instance_uid, "sop_instance_uid")
    check_text(label, "label", 16)
    check_text(series_description, "series_description", 64)
    geometry = read_ct_geometry(ct_datasets)
    check_same_frame(geometry.frame_of_reference_uid, study, f"CT series {geometry.series_instance_uid}")
    if geometry.study_instance_uid and geometry.study_instance_uid != study.study_instance_uid:
        raise DicomInputError(f"CT series {geometry.series_instance_uid} belongs to study "
                              f"{geometry.study_instance_uid}, not {study.study_instance_uid}")
    _check_rois(rois, geometry.shape_zyx)
    when = created or datetime.now()
    ds = new_dataset(sop.RT_STRUCTURE_SET, sop_instance_uid, "RTSTRUCT", study,
                     series_instance_uid=series_instance_uid, series_number=series_number,
                     series_description=series_description, created=when, frame_of_reference=False)
    ds.StructureSetLabel = label
    ds.StructureSetName = label
    ds.StructureSetDate, ds.StructureSetTime = dicom_date(when), dicom_time(when)
    ds.InstanceNumber = 1
    images = [reference(sop.CT_IMAGE, uid) for uid in geometry.sop_instance_uids]
    ds.ReferencedFrameOfReferenceSequence = [seq_item(
        FrameOfReferenceUID=study.frame_of_reference_uid,
        RTReferencedStudySequence=[seq_item(
            ReferencedSOPClassUID=sop.DETACHED_STUDY_MANAGEMENT,
            ReferencedSOPInstanceUID=study.study_instance_uid,
            RTReferencedSeriesSequence=[seq_item(SeriesInstanceUID=geometry.series_instance_uid,
                                             ContourImageSequence=images)],
        )],
    )]
    ds.StructureSetROISequence = [
        seq_item(ROINumber=number, ReferencedFrameOfReferenceUID=study.frame_of_reference_uid, ROIName=roi.name,
             ROIGenerationAlgorithm="AUTOMATIC")
        for number, roi in enumerate(rois, start=1)]
    ds.ROIContourSequence = [
        seq_item(ReferencedROINumber=number, ROIDisplayColor=list(_colour(roi, number)),
             ContourSequence=_contours(roi.mask, geometry.origin_mm, geometry.spacing_mm, geometry.sop_instance_uids))
        for number, roi in enumerate(rois, start=1)]
    ds.RTROIObservationsSequence = [
        seq_item(ObservationNumber=number, ReferencedROINumber=number, ROIObservationLabel=roi.name[:16],
             RTROIInterpretedType=roi.type, ROIInterpreter=None)
        for number, roi in enumerate(rois, start=1)]
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _check_rois(rois: Sequence[RoiSpec], shape_zyx: tuple[int, int, int]) -> None:
    if not rois:
        raise DicomInputError("RTSTRUCT: no ROIs given")
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        raise DicomInputError(f"RTSTRUCT: ROI names repeat: {names}")
    for roi in rois:
        check_text(roi.name, "ROI name", 64)
        if not roi.name.strip():
            raise DicomInputError("RTSTRUCT: an ROI has an empty name")
        if roi.type not in ROI_TYPES:
            raise DicomInputError(f"ROI {roi.name!r}: type {roi.type!r} is not an RTROIInterpretedType "
                                  f"({', '.join(ROI_TYPES)})")
        mask = np.asarray(roi.mask)
        if mask.shape != tuple(shape_zyx):
            raise DicomInputError(f"ROI {roi.name!r}: mask shape {mask.shape} is not the CT's {tuple(shape_zyx)}")
        if mask.dtype != bool:
            raise DicomInputError(f"ROI {roi.name!r}: mask must be boolean, not {mask.dtype}")
        if not mask.any():
            raise DicomInputError(f"ROI {roi.name!r}: mask is empty")
        if roi.color is not None and (len(roi.color) != 3 or not all(0 <= int(c) <= 255 for c in roi.color)):
            raise DicomInputError(f"ROI {roi.name!r}: color {roi.color!r} must be three integers 0-255")


def _colour(roi: RoiSpec, number: int) -> tuple[int, int, int]:
    if roi.color is not None:
        return tuple(int(c) for c in roi.color)  # type: ignore[return-value]
    return _ROI_COLOURS[(number - 1) % len(_ROI_COLOURS)]


def _contours(mask: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float],
              slice_uids: Sequence[str]) -> list[Dataset]:
    (ox, oy, oz), (sx, sy, sz) = origin_mm, spacing_mm
    contours = []
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        for polygon in slice_polygons(mask[z]):
            rows, columns = polygon[:, 0], polygon[:, 1]
            points = np.column_stack([ox + columns * sx, oy + rows * sy, np.full(len(polygon), oz + z * sz)])
            contours.append(seq_item(
                ContourImageSequence=[reference(sop.CT_IMAGE, slice_uids[z])],
                ContourGeometricType="CLOSED_PLANAR",
                NumberOfContourPoints=len(polygon),
                ContourNumber=len(contours) + 1,
                ContourData=ds_values(points.ravel()),
            ))
    return contours
