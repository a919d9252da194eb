"""RTDOSE datasets to `DoseGrid` (the writing side is `builders.build_rtdose`).

Geometry (DESIGN.md section 8): ImagePositionPatient is the centre of the
first frame's first voxel; GridFrameOffsetVector gives each frame's z, relative
to that position when its first value is 0 and absolute otherwise; frames in
decreasing z are reordered so the grid always runs towards +z. Pixel values
times DoseGridScaling are Gy.
"""
from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.attributes import described, floats, number, required
from orthanc_rt.dicom.geometry import (
    SPACING_TOLERANCE_MM,
    pixel_spacing_xy,
    require_identity_orientation,
    uniform_spacing,
)
from orthanc_rt.dicom.models import DoseGrid
from orthanc_rt.errors import DicomInputError


def read_rtdose(ds: Dataset) -> DoseGrid:
    """The dose in Gy, [z, y, x] float32, on the grid the RTDOSE describes."""
    where = f"RTDOSE {ds.get('SOPInstanceUID', '(no SOPInstanceUID)')}"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != sop.RT_DOSE and not (not sop_class and ds.get("Modality") == "RTDOSE"):
        raise DicomInputError(f"{where}: is {sop.describe(sop_class) if sop_class else 'no SOP class'}; "
                              f"expected {sop.describe(sop.RT_DOSE)}")
    units = str(required(ds, "DoseUnits", where)).upper()
    if units != "GY":
        raise DicomInputError(f"{where}: {described('DoseUnits')} is {units}; only absolute dose (GY) is supported")
    require_identity_orientation(ds, where)
    spacing_x, spacing_y = pixel_spacing_xy(ds, where)
    position = floats(ds, "ImagePositionPatient", where)
    if position.size != 3:
        raise DicomInputError(f"{where}: {described('ImagePositionPatient')} must hold x, y, z")
    scaling = number(ds, "DoseGridScaling", where)
    if scaling <= 0:
        raise DicomInputError(f"{where}: {described('DoseGridScaling')} is {scaling:g}; it must be positive")
    frames = int(number(ds, "NumberOfFrames", where, default=1))
    z = _frame_positions(ds, float(position[2]), frames, where)
    pixels = _pixels(ds, frames, where)
    order = np.argsort(z, kind="stable")
    z, pixels = z[order], pixels[order]
    spacing_z = uniform_spacing(z, where, "frame") if frames > 1 else _single_frame_thickness(ds, where)
    return DoseGrid(
        dose_gy=(pixels * scaling).astype(np.float32),
        origin_mm=(float(position[0]), float(position[1]), float(z[0])),
        spacing_mm=(spacing_x, spacing_y, spacing_z),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        dose_type=str(ds.get("DoseType", "PHYSICAL")),
        summation_type=str(ds.get("DoseSummationType", "")),
    )


def _frame_positions(ds: Dataset, first_z: float, frames: int, where: str) -> np.ndarray:
    if frames == 1 and "GridFrameOffsetVector" not in ds:
        return np.array([first_z])
    offsets = floats(ds, "GridFrameOffsetVector", where)
    if offsets.size != frames:
        raise DicomInputError(f"{where}: {described('GridFrameOffsetVector')} has {offsets.size} values for "
                              f"{frames} frames ({described('NumberOfFrames')})")
    if offsets[0] == 0.0:
        return first_z + offsets
    if abs(offsets[0] - first_z) > SPACING_TOLERANCE_MM:
        raise DicomInputError(f"{where}: {described('GridFrameOffsetVector')} starts at {offsets[0]:g}, neither 0 "
                              f"(relative) nor the ImagePositionPatient z {first_z:g} (absolute)")
    return offsets.copy()


def _pixels(ds: Dataset, frames: int, where: str) -> np.ndarray:
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds for undecodable or missing pixel data
        raise DicomInputError(f"{where}: cannot decode the pixel data: {exc}") from None
    shape = (frames, int(required(ds, "Rows", where)), int(required(ds, "Columns", where)))
    if pixels.size != np.prod(shape):
        raise DicomInputError(f"{where}: pixel data holds {pixels.size} values, expected {shape} "
                              "(frames, rows, columns)")
    pixels = pixels.reshape(shape)
    if np.issubdtype(pixels.dtype, np.signedinteger) and pixels.min() < 0:
        raise DicomInputError(f"{where}: negative pixel values; a dose cannot be negative")
    return pixels.astype(np.float64)


def _single_frame_thickness(ds: Dataset, where: str) -> float:
    thickness = number(ds, "SliceThickness", where, default=0.0)
    if thickness <= 0:
        raise DicomInputError(f"{where}: one frame and no positive {described('SliceThickness')}: "
                              "the grid's z spacing is unknown")
    return thickness
