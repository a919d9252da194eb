"""ROI contours as voxel masks on a CT grid (what the planning engine optimises on).

The rules are those of the DVH module (`orthanc_rt.analysis.dvh`): a CT voxel is in
an ROI when its centre lies inside the contours (even-odd, so inner contours
are holes) of the ROI's plane nearest to the voxel's slice, provided that
plane is within half the ROI's plane spacing; slices beyond the ROI's first
and last planes stay empty. Contours coarser than the CT therefore fill the
slices between them, as a slab per plane does in the DVH.
"""
from __future__ import annotations

import numpy as np

from orthanc_rt.analysis.dvh import plane_thickness, planes_mask
from orthanc_rt.dicom.models import CtVolume
from orthanc_rt.dicom.rtstruct import Roi, StructureSet

_TOLERANCE_MM = 1e-3


def roi_mask(roi: Roi, ct: CtVolume) -> np.ndarray:
    """[z, y, x] bool mask of `roi` on `ct`'s grid."""
    nz, ny, nx = ct.shape_zyx
    (ox, oy, oz), (sx, sy, sz) = ct.origin_mm, ct.spacing_mm
    out = np.zeros((nz, ny, nx), dtype=bool)
    planes = roi.planes()
    if not planes:
        return out
    plane_z = np.array(list(planes), dtype=float)
    slice_z = oz + sz * np.arange(nz)
    nearest = np.abs(slice_z[:, None] - plane_z[None, :]).argmin(axis=1)
    reach = plane_thickness(plane_z, sz) / 2 + _TOLERANCE_MM
    covered = np.abs(slice_z - plane_z[nearest]) <= reach
    if not covered.any():
        return out
    masks, r0 = planes_mask(list(planes.values()), ox + sx * np.arange(nx), oy + sy * np.arange(ny))
    rows = slice(r0, r0 + masks.shape[1])
    for k in np.flatnonzero(covered):
        out[k, rows] = masks[nearest[k]]
    return out


def structure_masks(structure_set: StructureSet, ct: CtVolume) -> dict[str, np.ndarray]:
    """Every named ROI's mask on `ct` (ROIs sharing a name are united)."""
    masks: dict[str, np.ndarray] = {}
    for roi in structure_set.rois:
        mask = roi_mask(roi, ct)
        masks[roi.name] = masks[roi.name] | mask if roi.name in masks else mask
    return masks
