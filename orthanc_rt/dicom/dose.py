"""RTDOSE: reading one into a `DoseGrid`, and building one from a grid.

Geometry (docs/physics.md): ImagePositionPatient is the centre of the
first frame's first voxel; GridFrameOffsetVector gives each frame's z, relative
to that position when its first value is 0 and absolute otherwise; frames in
decreasing z are reordered so the grid always runs towards +z. Pixel values
times DoseGridScaling are Gy. The builder writes relative offsets, frames in
increasing z.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom._common import (
    IDENTITY_ORIENTATION,
    check_grid,
    check_study,
    check_text,
    check_uid,
    dicom_date,
    dicom_time,
    ds_value,
    ds_values,
    new_dataset,
    reference,
    set_monochrome_pixels,
)
from orthanc_rt.dicom.attributes import described, floats, number, required
from orthanc_rt.dicom.geometry import (
    SPACING_TOLERANCE_MM,
    pixel_spacing_xy,
    require_identity_orientation,
    uniform_spacing,
)
from orthanc_rt.dicom.models import DoseGrid, PatientStudy
from orthanc_rt.errors import DicomInputError

# RTDOSE pixels: unsigned 32 bit, DoseGridScaling = max dose / 4e9. Using 4e9 of the 4.29e9 available
# levels leaves room for DoseGridScaling's decimal-string rounding (16 characters) without overflow;
# the quantization error is at most max dose / 8e9 (1.25e-10 of the maximum).
_DOSE_LEVELS = 4.0e9
_DOSE_TYPES = ("PHYSICAL", "EFFECTIVE", "ERROR")
_DOSE_UNITS = ("GY", "RELATIVE")
_SUMMATION_TYPES = ("PLAN", "MULTI_PLAN", "PLAN_OVERVIEW", "FRACTION", "BEAM", "BRACHY", "FRACTION_SESSION",
                    "BEAM_SESSION", "BRACHY_SESSION", "CONTROL_POINT", "RECORD")


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
    if np.issubdtype(pixels.dtype, np.signedinteger) and pixels.min() < 0 and ds.get("DoseType") != "ERROR":
        raise DicomInputError(f"{where}: negative pixel values; a dose cannot be negative")
    return pixels.astype(np.float64)


def _single_frame_thickness(ds: Dataset, where: str) -> float:
    thickness = number(ds, "SliceThickness", where, default=0.0)
    if thickness <= 0:
        raise DicomInputError(f"{where}: one frame and no positive {described('SliceThickness')}: "
                              "the grid's z spacing is unknown")
    return thickness


# --- building ---------------------------------------------------------------------------------------------

def build_rtdose(grid: DoseGrid, study: PatientStudy, *, sop_instance_uid: str, series_instance_uid: str,
                 referenced_plan_uid: str, series_description: str,
                 referenced_plan_sop_class: str = sop.RT_ION_PLAN, content_description: str = "",
                 series_number: int = 4, created: datetime | None = None, units: str = "GY") -> Dataset:
    """An RT Dose of `grid` (Gy), referencing the plan it is the dose of.

    DoseType and DoseSummationType come from the grid (PHYSICAL and PLAN by
    default: the dose of all fractions). Pixels are unsigned 32 bit with
    DoseGridScaling = max / 4e9 (see _DOSE_LEVELS). GridFrameOffsetVector is
    relative (starts at 0). `content_description` goes to DoseComment.
    A dose of type ERROR (a difference of two doses) may be negative: its
    pixels are signed 32 bit, DoseGridScaling = max |value| / 2e9. `units`
    RELATIVE stores a unitless map (a gamma index) that dose viewers can show.
    """
    check_study(study)
    for value, what in ((sop_instance_uid, "sop_instance_uid"), (series_instance_uid, "series_instance_uid"),
                        (referenced_plan_uid, "referenced_plan_uid"),
                        (referenced_plan_sop_class, "referenced_plan_sop_class")):
        check_uid(value, what)
    check_text(series_description, "series_description", 64)
    check_text(content_description, "content_description", 64)
    dose = np.asarray(grid.dose_gy)
    check_grid(dose, grid.origin_mm, grid.spacing_mm, grid.frame_of_reference_uid, study, "dose grid")
    signed = grid.dose_type == "ERROR"
    if dose.min() < 0 and not signed:
        raise DicomInputError(f"dose grid: negative dose ({float(dose.min()):g} Gy); only an ERROR dose may be")
    if units not in _DOSE_UNITS:
        raise DicomInputError(f"dose grid: units {units!r} are not one of {', '.join(_DOSE_UNITS)}")
    if grid.dose_type not in _DOSE_TYPES:
        raise DicomInputError(f"dose grid: dose_type {grid.dose_type!r} is not one of {', '.join(_DOSE_TYPES)}")
    if grid.summation_type not in _SUMMATION_TYPES:
        raise DicomInputError(f"dose grid: summation_type {grid.summation_type!r} is not a DoseSummationType")
    when = created or datetime.now()
    ds = new_dataset(sop.RT_DOSE, sop_instance_uid, "RTDOSE", study, series_instance_uid=series_instance_uid,
                     series_number=series_number, series_description=series_description, created=when)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = dicom_date(when), dicom_time(when)
    (ox, oy, oz), (sx, sy, sz) = grid.origin_mm, grid.spacing_mm
    frames = dose.shape[0]
    ds.ImageOrientationPatient = IDENTITY_ORIENTATION
    ds.ImagePositionPatient = ds_values((ox, oy, oz))
    ds.PixelSpacing = ds_values((sy, sx))
    ds.SliceThickness = ds_value(sz)
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x3004000C  # GridFrameOffsetVector
    ds.GridFrameOffsetVector = ds_values(k * sz for k in range(frames))
    peak = float(np.abs(dose).max())
    levels = _DOSE_LEVELS / 2 if signed else _DOSE_LEVELS
    scaling = float(ds_value(peak / levels)) if peak > 0 else 1.0
    if signed:
        pixels = np.clip(np.rint(dose.astype(np.float64) / scaling), -(2**31), 2**31 - 1).astype("<i4")
    else:
        pixels = np.clip(np.rint(dose.astype(np.float64) / scaling), 0, 2**32 - 1).astype("<u4")
    set_monochrome_pixels(ds, pixels, bits=32, signed=signed)
    ds.DoseUnits = units
    ds.DoseType = grid.dose_type
    ds.DoseSummationType = grid.summation_type
    ds.DoseGridScaling = ds_value(scaling)
    if content_description:
        ds.DoseComment = content_description
    ds.ReferencedRTPlanSequence = [reference(referenced_plan_sop_class, referenced_plan_uid)]
    return ds
