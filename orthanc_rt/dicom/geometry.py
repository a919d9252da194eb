"""Checks shared by the image-like readers (CT, RTDOSE): orientation, pixel spacing, frame spacing."""
from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom.attributes import described, floats
from orthanc_rt.errors import DicomInputError

IDENTITY_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_ORIENTATION_TOLERANCE = 1e-4
SPACING_TOLERANCE_MM = 0.01


def require_identity_orientation(ds: Dataset, where: str) -> None:
    """Our volumes are axis-aligned [z, y, x]; rotated or flipped images would be silently misplaced."""
    orientation = floats(ds, "ImageOrientationPatient", where)
    if orientation.size != 6 or not np.allclose(orientation, IDENTITY_ORIENTATION, atol=_ORIENTATION_TOLERANCE):
        found = ", ".join(f"{v:g}" for v in orientation)
        raise DicomInputError(
            f"{where}: {described('ImageOrientationPatient')} is [{found}]; only axial images with the "
            "identity orientation [1, 0, 0, 0, 1, 0] are supported (head-first supine, no gantry tilt)")


def pixel_spacing_xy(ds: Dataset, where: str) -> tuple[float, float]:
    """(column spacing, row spacing): PixelSpacing lists the row spacing (y) first."""
    spacing = floats(ds, "PixelSpacing", where)
    if spacing.size != 2 or np.any(spacing <= 0):
        raise DicomInputError(f"{where}: {described('PixelSpacing')} must be two positive numbers, "
                              f"not {list(spacing)}")
    return float(spacing[1]), float(spacing[0])


def uniform_spacing(positions: np.ndarray, where: str, what: str = "slice") -> float:
    """The spacing of sorted positions (mm), or a DicomInputError naming the first irregular gap.

    Gaps must agree within 0.01 mm. A gap of a whole number of spacings is
    reported as missing slices, since that is nearly always what it is.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.size < 2:
        raise DicomInputError(f"{where}: at least two {what}s are needed to know their spacing")
    gaps = np.diff(positions)
    duplicate = np.flatnonzero(gaps < SPACING_TOLERANCE_MM)
    if duplicate.size:
        i = duplicate[0]
        raise DicomInputError(f"{where}: two {what}s at z = {positions[i]:.3f} mm (duplicate or overlapping "
                              f"{what}s; {positions.size} {what}s in all)")
    spacing = float(np.median(gaps))  # the typical gap: robust to a few irregular ones
    for i, gap in enumerate(gaps):
        if abs(gap - spacing) <= SPACING_TOLERANCE_MM:
            continue
        steps = gap / spacing
        if abs(steps - round(steps)) * spacing <= SPACING_TOLERANCE_MM:
            missing = int(round(steps)) - 1
            raise DicomInputError(
                f"{where}: {missing} {what}(s) missing between z = {positions[i]:.3f} and z = {positions[i + 1]:.3f}"
                f" mm (gap {gap:.3f} mm, spacing {spacing:.3f} mm)")
        raise DicomInputError(
            f"{where}: non-uniform {what} spacing: gap of {gap:.3f} mm between z = {positions[i]:.3f} and "
            f"z = {positions[i + 1]:.3f} mm where the typical gap is {spacing:.3f} mm (tolerance "
            f"{SPACING_TOLERANCE_MM} mm)")
    return float((positions[-1] - positions[0]) / (positions.size - 1))
