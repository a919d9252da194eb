"""The patient's body on a dose grid, and a recomputed dose restricted to it.

Monte Carlo scores dose to water in every voxel, air included: where the
density is near zero a few deposits divided by almost no mass give absurd
"doses" (a prostate recompute had 372 Gy in an air voxel at the corner of the
field of view, the TPS peak was 84 Gy). A dose outside the patient is no dose
anyone receives, so the recompute reports dose only inside the body:

- the body is the structure set's EXTERNAL ROI (RTROIInterpretedType
  EXTERNAL, else an ROI named BODY, External or Outline, case-insensitive)
  when a structure set on the dose's frame of reference has one; its mask
  follows the DVH rules of `orthanc_rt.analysis.roi_masks`, on the dose grid;
- otherwise a mask from the CT: voxels above `BODY_HU_THRESHOLD`, the largest
  3-D connected component (the couch and stray objects are other
  components), holes filled slice by slice so internal gas (bowel, rectum,
  lungs) stays inside; resampled to the dose grid by nearest voxel.

`restrict_to_body` then sets the dose outside the body to 0 and crops the
grid to the box holding the body's dose above `CROP_THRESHOLD_FRACTION` of
its maximum, plus `CROP_MARGIN_VOXELS`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from orthanc_rt.analysis.roi_masks import roi_mask
from orthanc_rt.dicom.models import CtVolume, DoseGrid
from orthanc_rt.dicom.rtstruct import Roi, StructureSet, read_structure_set
from orthanc_rt.errors import DicomInputError
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.inputs import read_instance
from orthanc_rt.pacs.structure_sets import StructureSetIndex, StructureSetSummary

# Air is -1000 HU, lung about -800..-500 at its lightest, fat -100: -500 separates the patient (lungs
# included, once holes are filled) from the air around, as commercial systems' default external contouring.
BODY_HU_THRESHOLD = -500.0
BODY_ROI_NAMES = ("body", "external", "outline")
# The grid keeps the voxels where the body's dose exceeds 0.5 % of its maximum: below that a voxel adds
# nothing to a gamma (passing far below the usual 10 % low-dose cut-off) or to a DVH, and MC noise in the
# tissue at the edge of the field stays out of the stored grid.
CROP_THRESHOLD_FRACTION = 0.005
# Two voxels around that box, so interpolating the dose at its edge (gamma search, DVH slabs) still sees the
# fall to zero on either side rather than the grid's edge.
CROP_MARGIN_VOXELS = 2
CT_BODY_SOURCE = f"body mask from CT (HU > {BODY_HU_THRESHOLD:g}, largest component)"


@dataclass(frozen=True)
class BodyMask:
    """Where the patient is, on some grid, and how that was decided."""

    mask: np.ndarray  # [z, y, x] bool
    source: str  # "ROI 'External' of RTSTRUCT <uid>" or CT_BODY_SOURCE
    label: str  # short, for the RTDOSE's DoseComment: "ROI External" or "CT body mask"


@dataclass(frozen=True)
class RestrictedDose:
    """A dose reported inside the body only, and what that changed."""

    grid: DoseGrid
    restricted_to: str | None  # BodyMask.source, None when the dose was not restricted
    dose_max_gy: float  # inside the body (the whole grid when not restricted)
    dose_max_outside_body_gy: float | None  # before restriction; None when not restricted
    shape_before: tuple[int, int, int]
    shape_after: tuple[int, int, int]
    comment: str  # for DoseComment (<= 64 characters); empty when nothing changed

    @property
    def cropped(self) -> bool:
        return self.shape_after != self.shape_before


def body_roi(structure_set: StructureSet) -> Roi | None:
    """The structure set's body outline: its EXTERNAL ROI, else one named BODY/External/Outline (with contours)."""
    usable = [roi for roi in structure_set.rois if roi.contours]
    by_type = [roi for roi in usable if roi.interpreted_type.strip().upper() == "EXTERNAL"]
    by_name = [roi for roi in usable if roi.name.strip().lower() in BODY_ROI_NAMES]
    return (by_type or by_name or [None])[0]


def body_mask_from_ct(ct: CtVolume, threshold_hu: float = BODY_HU_THRESHOLD) -> np.ndarray:
    """[z, y, x] mask of the patient on the CT grid: the largest connected region above `threshold_hu`,
    with its holes filled slice by slice (gas in the bowel or rectum, lungs)."""
    above = np.asarray(ct.hu) > threshold_hu
    labels, count = ndimage.label(above)
    if count == 0:
        raise DicomInputError(f"CT series {ct.series_instance_uid}: no voxel above {threshold_hu:g} HU, "
                              "no body to restrict the dose to")
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == int(np.argmax(sizes)) + 1
    # Axial slices: a 3-D fill would leave gas open to the top or bottom of the scan outside the body.
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return body


def body_on_grid(ct: CtVolume | None, grid: DoseGrid, structure_set: StructureSet | None = None) -> BodyMask | None:
    """The body on `grid`: the structure set's body ROI when it has one with a non-empty mask, else the CT's
    (None without either)."""
    roi = body_roi(structure_set) if structure_set is not None else None
    if roi is not None:
        mask = roi_mask(roi, grid_as_volume(grid))
        if mask.any():
            return BodyMask(mask=mask, label=f"ROI {roi.name}"[:40],
                            source=f"ROI '{roi.name}' of RTSTRUCT {structure_set.sop_instance_uid}")
    if ct is None:
        return None
    return BodyMask(mask=resample_nearest(body_mask_from_ct(ct), ct, grid), source=CT_BODY_SOURCE,
                    label="CT body mask")


def resample_nearest(mask: np.ndarray, ct: CtVolume, grid: DoseGrid) -> np.ndarray:
    """A [z, y, x] mask on `ct`'s grid, sampled at `grid`'s voxel centres (False outside the CT)."""
    indices = []
    for axis, (origin, spacing, size) in enumerate(zip(grid.origin_mm, grid.spacing_mm, grid.dose_gy.shape[::-1])):
        centres = origin + spacing * np.arange(size)
        index = np.rint((centres - ct.origin_mm[axis]) / ct.spacing_mm[axis]).astype(int)
        indices.append(index)
    ix, iy, iz = indices
    nz, ny, nx = mask.shape
    valid = [(i >= 0) & (i < n) for i, n in ((iz, nz), (iy, ny), (ix, nx))]
    out = mask[np.ix_(np.clip(iz, 0, nz - 1), np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1))]
    return out & np.logical_and.outer(np.logical_and.outer(valid[0], valid[1]), valid[2])


def restrict_to_body(grid: DoseGrid, body: BodyMask | None, *, crop: bool = True) -> RestrictedDose:
    """`grid` with zero dose outside `body` (None: not restricted), cropped to its dose region when `crop`."""
    dose = np.asarray(grid.dose_gy)
    shape = tuple(int(n) for n in dose.shape)
    if body is not None and body.mask.shape != dose.shape:
        raise ValueError(f"body mask {body.mask.shape} is not on the dose grid {dose.shape}")
    inside = body.mask if body is not None else np.ones(dose.shape, dtype=bool)
    dose_max = float(dose[inside].max()) if inside.any() else 0.0
    outside_max = float(dose[~inside].max()) if body is not None and (~inside).any() else (
        0.0 if body is not None else None)
    restricted = np.where(inside, dose, 0.0).astype(dose.dtype) if body is not None else dose
    result = replace(grid, dose_gy=restricted)
    if crop and dose_max > 0:
        result = _crop(result, inside & (restricted > CROP_THRESHOLD_FRACTION * dose_max))
    notes = ([f"restricted to {body.label}"] if body is not None else []) + (
        ["grid cropped to dose region"] if result.dose_gy.shape != dose.shape else [])
    return RestrictedDose(grid=result, restricted_to=body.source if body is not None else None,
                          dose_max_gy=dose_max, dose_max_outside_body_gy=outside_max, shape_before=shape,
                          shape_after=tuple(int(n) for n in result.dose_gy.shape), comment="; ".join(notes)[:64])


def body_structure_set(api: OrthancApi, orthanc_study_id: str, frame_of_reference_uid: str, *,
                       preferred_uid: str | None = None) -> StructureSet | None:
    """The structure set to take the body from: `preferred_uid` (the plan's) when it has a body ROI, else
    the newest one of the study on `frame_of_reference_uid` that has one; None when none has."""
    summaries = StructureSetIndex(api).of_study(orthanc_study_id)
    candidates = [s for s in summaries if not s.problem and s.frame_of_reference_uid == frame_of_reference_uid
                  and _has_body(s)]
    candidates.sort(key=lambda s: s.sop_instance_uid != preferred_uid)  # stable: newest first otherwise
    for summary in candidates:
        structure_set = read_structure_set(read_instance(api, summary.orthanc_id))
        if body_roi(structure_set) is not None:
            return structure_set
    return None


def _has_body(summary: StructureSetSummary) -> bool:
    return any(roi.contours and (roi.interpreted_type.strip().upper() == "EXTERNAL"
                                 or roi.name.strip().lower() in BODY_ROI_NAMES) for roi in summary.rois)


def grid_as_volume(grid: DoseGrid) -> CtVolume:
    """The grid's geometry in the form the ROI mask code takes (it reads only shape, origin and spacing)."""
    return CtVolume(hu=np.zeros(grid.dose_gy.shape, dtype=np.int8), origin_mm=grid.origin_mm,
                    spacing_mm=grid.spacing_mm, frame_of_reference_uid=grid.frame_of_reference_uid)


def _crop(grid: DoseGrid, region: np.ndarray) -> DoseGrid:
    """`grid` cut to the bounding box of `region` plus CROP_MARGIN_VOXELS (clipped to the grid)."""
    if not region.any():
        return grid
    start, stop = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(region.any(axis=other))
        start.append(max(int(hit[0]) - CROP_MARGIN_VOXELS, 0))
        stop.append(min(int(hit[-1]) + 1 + CROP_MARGIN_VOXELS, region.shape[axis]))
    z0, y0, x0 = start
    origin = tuple(o + s * i for o, s, i in zip(grid.origin_mm, grid.spacing_mm, (x0, y0, z0)))
    dose = np.ascontiguousarray(grid.dose_gy[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]])
    return replace(grid, dose_gy=dose, origin_mm=origin)
