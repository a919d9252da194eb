"""Parametric Map: LETd on a dose grid, building one (with highdicom) and reading one back into a `LetGrid`.

Why a Parametric Map and not an RTDOSE: LETd is not a dose. An RTDOSE's pixels are Gy (or RELATIVE) by
definition (DoseUnits), and viewers treat it as dose (isodose lines, DVHs in Gy), so an LET map stored as an
RTDOSE would be read as a dose by every viewer and every script that trusts DoseUnits. The Parametric Map
(PS3.3 A.75, SOP class 1.2.840.10008.5.1.4.1.1.30) is DICOM's object for a quantity on an image grid: its
Real World Value Mapping states the quantity's unit (UCUM `keV/um`, keV/µm) and the pixel-to-value scaling,
it references the CT series it derives from, and it shares the CT's frame of reference, so OHIF (its
parametric-map extension) and other viewers overlay it on the CT.

Encoding: unsigned 16-bit pixels with slope = maximum LETd / 65000 (intercept 0), so every viewer can show it
(float pixel data is less widely supported); the quantization error is at most slope / 2 (below 1e-5 of the
maximum). Geometry: one frame per z plane of the LET grid, ImagePositionPatient per frame, identity
orientation, PixelSpacing row then column, in the CT's frame of reference.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom.models import LetGrid
from orthanc_rt.dicom.uids import MANUFACTURER, is_valid_uid
from orthanc_rt.errors import DicomInputError

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
LET_UNIT = "keV/um"  # UCUM
_LEVELS = 65000
_LUT_LABEL = "LETd"
_LUT_EXPLANATION = "dose-averaged LET (MCsquare), keV/um"


def build_let_map(let: LetGrid, ct_datasets: Sequence[Dataset], *, sop_instance_uid: str,
                  series_instance_uid: str, series_description: str, series_number: int = 5,
                  content_description: str = "") -> Dataset:
    """A Parametric Map of `let` (keV/µm) derived from the CT series `ct_datasets` (same frame of reference)."""
    import highdicom as hd  # heavy import; only the builders and readers of this family need it

    if not ct_datasets:
        raise DicomInputError("LET map: no CT slices to derive it from")
    for value, what in ((sop_instance_uid, "sop_instance_uid"), (series_instance_uid, "series_instance_uid")):
        if not is_valid_uid(value):
            raise DicomInputError(f"LET map: {what} {value!r} is not a valid DICOM UID")
    if not 0 < len(series_description) <= 64:
        raise DicomInputError(f"LET map: series_description must have 1 to 64 characters, "
                              f"got {len(series_description)}")
    if len(content_description) > 64:
        raise DicomInputError(f"LET map: content_description has {len(content_description)} characters; at most 64")
    values = np.asarray(let.let_kev_um, dtype=np.float64)
    if values.ndim != 3 or min(values.shape) < 1:
        raise DicomInputError(f"LET map: expected a 3-D [z, y, x] grid, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise DicomInputError("LET map: LETd values must be finite and not negative")
    if len(let.origin_mm) != 3 or len(let.spacing_mm) != 3 or any(not (s > 0) for s in let.spacing_mm):
        raise DicomInputError(f"LET map: spacing {let.spacing_mm} must be three positive numbers (mm)")
    frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in ct_datasets}
    if frames != {let.frame_of_reference_uid}:
        raise DicomInputError(f"LET map: its FrameOfReferenceUID {let.frame_of_reference_uid} is not the CT's "
                              f"({', '.join(sorted(frames))})")

    top = float(values.max())
    slope = (top if top > 0 else 1.0) / _LEVELS
    pixels = np.round(values / slope).astype(np.uint16)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=_LUT_LABEL, lut_explanation=_LUT_EXPLANATION,
        unit=hd.sr.CodedConcept(value=LET_UNIT, scheme_designator="UCUM", meaning="kiloelectronvolt per micrometer"),
        value_range=(0, _LEVELS), slope=slope, intercept=0.0)
    sx, sy, sz = (float(s) for s in let.spacing_mm)
    ox, oy, oz = (float(o) for o in let.origin_mm)
    positions = [hd.PlanePositionSequence(coordinate_system="PATIENT", image_position=(ox, oy, oz + k * sz))
                 for k in range(values.shape[0])]
    result = hd.pm.ParametricMap(
        source_images=list(ct_datasets), pixel_array=pixels, series_instance_uid=series_instance_uid,
        series_number=series_number, sop_instance_uid=sop_instance_uid, instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="Orthanc-RT", software_versions=_version(),
        device_serial_number="0", contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping], content_description=content_description or None,
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=_LEVELS / 2.0, window_width=float(_LEVELS))],
        content_label="LETD",
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=(sy, sx), slice_thickness=sz),
        plane_orientation=hd.PlaneOrientationSequence(coordinate_system="PATIENT",
                                                      image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0)),
        plane_positions=positions)
    result.SeriesDescription = series_description
    result.FrameOfReferenceUID = let.frame_of_reference_uid
    return result


def read_let_map(ds: Dataset) -> LetGrid:
    """The LETd (keV/µm, [z, y, x]) and geometry of a Parametric Map this module (or another system) built."""
    where = f"Parametric Map {ds.get('SOPInstanceUID', '(no SOPInstanceUID)')}"
    if str(ds.get("SOPClassUID", "")) != PARAMETRIC_MAP:
        raise DicomInputError(f"{where}: SOP class {ds.get('SOPClassUID', '(none)')} is not Parametric Map "
                              f"({PARAMETRIC_MAP})")
    shared = _one(ds, "SharedFunctionalGroupsSequence", where)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        raise DicomInputError(f"{where}: no PerFrameFunctionalGroupsSequence (5200,9230)")
    mapping = _group(shared, per_frame[0], "RealWorldValueMappingSequence", where)
    units = mapping.get("MeasurementUnitsCodeSequence")
    unit = str(units[0].CodeValue) if units else ""
    if unit != LET_UNIT:
        raise DicomInputError(f"{where}: real-world value unit is {unit!r}, expected {LET_UNIT!r} (UCUM keV/µm)")
    slope = float(mapping.get("RealWorldValueSlope", 1.0))
    intercept = float(mapping.get("RealWorldValueIntercept", 0.0))
    measures = _group(shared, per_frame[0], "PixelMeasuresSequence", where)
    orientation = _group(shared, per_frame[0], "PlaneOrientationSequence", where)
    if not np.allclose([float(v) for v in orientation.ImageOrientationPatient], [1, 0, 0, 0, 1, 0], atol=1e-4):
        raise DicomInputError(f"{where}: ImageOrientationPatient {list(orientation.ImageOrientationPatient)} is "
                              "not the identity orientation (only axial, head-first grids are read)")
    row, column = (float(v) for v in measures.PixelSpacing)
    positions = np.array([[float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
                          for item in per_frame])
    order = np.argsort(positions[:, 2])
    positions = positions[order]
    steps = np.diff(positions[:, 2])
    if len(steps) and (np.any(steps <= 0) or not np.allclose(steps, steps[0], atol=1e-3)):
        raise DicomInputError(f"{where}: frames are not evenly spaced along z")
    if not np.allclose(positions[:, :2], positions[0, :2], atol=1e-3):
        raise DicomInputError(f"{where}: frames do not share one x, y position")
    pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    values = (pixels[order] * slope + intercept).astype(np.float32)
    spacing_z = float(steps[0]) if len(steps) else float(measures.get("SliceThickness", 1.0) or 1.0)
    return LetGrid(let_kev_um=values, origin_mm=tuple(float(v) for v in positions[0]),
                   spacing_mm=(column, row, spacing_z), frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")))


def _one(ds: Dataset, keyword: str, where: str) -> Dataset:
    items = ds.get(keyword)
    if not items:
        raise DicomInputError(f"{where}: no {keyword}")
    return items[0]


def _group(shared: Dataset, first_frame: Dataset, keyword: str, where: str) -> Dataset:
    for source in (shared, first_frame):
        items = source.get(keyword)
        if items:
            return items[0]
    raise DicomInputError(f"{where}: no {keyword} in the shared or per-frame functional groups")


def _version() -> str:
    import orthanc_rt
    return str(orthanc_rt.__version__)
