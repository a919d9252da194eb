"""CT series: reading one (a dataset per slice) as an axis-aligned HU volume, and building one from a volume.

Only single-frame CT Image Storage slices with the identity orientation
(axial, head-first supine, no tilt) are accepted; everything that would place
the volume wrongly is refused with a message naming the slice and attribute.
The builder writes exactly such slices.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom._common import (
    IDENTITY_ORIENTATION,
    PATIENT_POSITION,
    check_grid,
    check_study,
    check_text,
    check_uid,
    dicom_date,
    dicom_time,
    ds_value,
    ds_values,
    new_dataset,
    set_monochrome_pixels,
)
from orthanc_rt.dicom.attributes import described, floats, number, required
from orthanc_rt.dicom.geometry import (
    SPACING_TOLERANCE_MM,
    pixel_spacing_xy,
    require_identity_orientation,
    uniform_spacing,
)
from orthanc_rt.dicom.models import CtVolume, PatientStudy
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError

# CT pixels: HU + 1024 stored as signed 16 bit, the usual CT convention (air -1000 HU is stored as 24).
CT_RESCALE_INTERCEPT = -1024
_CT_HU_RANGE = (-32768 + CT_RESCALE_INTERCEPT, 32767 + CT_RESCALE_INTERCEPT)  # HU = stored + intercept


@dataclass(frozen=True)
class CtGeometry:
    """Where a CT series' voxels are, without its pixels; slices sorted by z."""

    datasets: tuple[Dataset, ...]
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]
    frame_of_reference_uid: str
    series_instance_uid: str
    study_instance_uid: str

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def read_ct_geometry(datasets: Sequence[Dataset]) -> CtGeometry:
    """Validate a series' geometry and sort its slices along the slice normal (+z)."""
    if not datasets:
        raise DicomInputError("CT series: no slices")
    for ds in datasets:
        _require_ct_slice(ds)
    series_uid = _the_one(datasets, "SeriesInstanceUID")
    where = f"CT series {series_uid}"
    frame_uid = _the_one(datasets, "FrameOfReferenceUID", where)
    for ds in datasets:
        require_identity_orientation(ds, _slice_name(ds))
    rows, columns = _the_same_size(datasets, where)
    spacing_x, spacing_y = _the_same_pixel_spacing(datasets, where)
    positions = np.array([floats(ds, "ImagePositionPatient", _slice_name(ds))[:3] for ds in datasets])
    if positions.shape[1] != 3:
        raise DicomInputError(f"{where}: {described('ImagePositionPatient')} must hold x, y, z")
    # With the identity orientation the slice normal is +z, so z alone orders the slices.
    order = np.argsort(positions[:, 2], kind="stable")
    positions = positions[order]
    ordered = tuple(datasets[i] for i in order)
    shifted = np.flatnonzero(np.abs(positions[:, :2] - positions[0, :2]).max(axis=1) > SPACING_TOLERANCE_MM)
    if shifted.size:
        ds = ordered[shifted[0]]
        raise DicomInputError(f"{_slice_name(ds)}: {described('ImagePositionPatient')} x, y "
                              f"{tuple(positions[shifted[0], :2])} differ from the first slice's "
                              f"{tuple(positions[0, :2])}: the slices are not stacked along z")
    spacing_z = uniform_spacing(positions[:, 2], where)
    return CtGeometry(
        datasets=ordered,
        origin_mm=tuple(float(v) for v in positions[0]),
        spacing_mm=(spacing_x, spacing_y, spacing_z),
        shape_zyx=(len(ordered), rows, columns),
        frame_of_reference_uid=frame_uid,
        series_instance_uid=series_uid,
        study_instance_uid=str(ordered[0].get("StudyInstanceUID", "")),
    )


def read_ct_series(datasets: Sequence[Dataset]) -> CtVolume:
    """The series as HU (RescaleSlope/Intercept applied, float32), indexed [z, y, x]."""
    geometry = read_ct_geometry(datasets)
    hu = np.empty(geometry.shape_zyx, dtype=np.float32)
    for z, ds in enumerate(geometry.datasets):
        hu[z] = _hounsfield(ds, geometry.shape_zyx[1:])
    return CtVolume(hu=hu, origin_mm=geometry.origin_mm, spacing_mm=geometry.spacing_mm,
                    frame_of_reference_uid=geometry.frame_of_reference_uid,
                    series_instance_uid=geometry.series_instance_uid,
                    study_instance_uid=geometry.study_instance_uid,
                    sop_instance_uids=geometry.sop_instance_uids)


def build_ct_series(volume: CtVolume, study: PatientStudy, *, series_instance_uid: str,
                    series_description: str = "CT (Orthanc-RT)", series_number: int = 1,
                    created: datetime | None = None) -> list[Dataset]:
    """One CT Image Storage dataset per z slice of `volume`, in z order.

    SOPInstanceUIDs are derived from the series UID and the slice index.
    HU are rounded to integers (stored + RescaleIntercept -1024).
    """
    check_study(study)
    check_uid(series_instance_uid, "series_instance_uid")
    check_text(series_description, "series_description", 64)
    hu = np.asarray(volume.hu)
    check_grid(hu, volume.origin_mm, volume.spacing_mm, volume.frame_of_reference_uid, study, "CT volume")
    low, high = float(hu.min()), float(hu.max())
    if low < _CT_HU_RANGE[0] or high > _CT_HU_RANGE[1]:
        raise DicomInputError(f"CT volume: HU range {low:g}..{high:g} does not fit 16-bit pixels "
                              f"({_CT_HU_RANGE[0]}..{_CT_HU_RANGE[1]})")
    stored = (np.rint(hu) - CT_RESCALE_INTERCEPT).astype("<i2")
    when = created or datetime.now()
    (ox, oy, oz), (sx, sy, sz) = volume.origin_mm, volume.spacing_mm
    slices = []
    for z in range(hu.shape[0]):
        ds = new_dataset(sop.CT_IMAGE, derive_uid(series_instance_uid, "ct-slice", str(z)), "CT", study,
                         series_instance_uid=series_instance_uid, series_number=series_number,
                         series_description=series_description, created=when)
        ds.PatientPosition = PATIENT_POSITION
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.InstanceNumber = z + 1
        ds.AcquisitionNumber = None
        ds.KVP = None
        ds.PatientOrientation = None
        ds.ContentDate, ds.ContentTime = dicom_date(when), dicom_time(when)
        ds.ImageOrientationPatient = IDENTITY_ORIENTATION
        ds.ImagePositionPatient = ds_values((ox, oy, oz + z * sz))
        ds.SliceLocation = ds_value(oz + z * sz)
        ds.SliceThickness = ds_value(sz)
        ds.PixelSpacing = ds_values((sy, sx))
        set_monochrome_pixels(ds, stored[z], bits=16, signed=True)
        ds.RescaleIntercept = CT_RESCALE_INTERCEPT
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        slices.append(ds)
    return slices


def _slice_name(ds: Dataset) -> str:
    return f"CT slice {ds.get('SOPInstanceUID', '(no SOPInstanceUID)')}"


def _require_ct_slice(ds: Dataset) -> None:
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == sop.ENHANCED_CT_IMAGE:
        raise DicomInputError(f"{_slice_name(ds)}: {sop.describe(sop_class)} (multi-frame) is not supported; "
                              "send the CT as single-frame CT Image Storage slices")
    if sop_class != sop.CT_IMAGE and not (not sop_class and ds.get("Modality") == "CT"):
        raise DicomInputError(f"{_slice_name(ds)}: expected {sop.describe(sop.CT_IMAGE)}, "
                              f"got {sop.describe(sop_class) if sop_class else 'no SOPClassUID'}")
    required(ds, "SOPInstanceUID", _slice_name(ds))


def _the_one(datasets: Sequence[Dataset], keyword: str, where: str = "CT series") -> str:
    values = sorted({str(required(ds, keyword, _slice_name(ds))) for ds in datasets})
    if len(values) != 1:
        raise DicomInputError(f"{where}: the slices have {len(values)} different {described(keyword)} values "
                              f"({', '.join(values[:3])}{', ...' if len(values) > 3 else ''}); "
                              "a CT volume is one series in one frame of reference")
    return values[0]


def _the_same_size(datasets: Sequence[Dataset], where: str) -> tuple[int, int]:
    sizes = {(int(required(ds, "Rows", _slice_name(ds))), int(required(ds, "Columns", _slice_name(ds))))
             for ds in datasets}
    if len(sizes) != 1:
        raise DicomInputError(f"{where}: slices of different sizes (Rows x Columns): {sorted(sizes)}")
    return sizes.pop()


def _the_same_pixel_spacing(datasets: Sequence[Dataset], where: str) -> tuple[float, float]:
    first = pixel_spacing_xy(datasets[0], _slice_name(datasets[0]))
    for ds in datasets[1:]:
        other = pixel_spacing_xy(ds, _slice_name(ds))
        if not np.allclose(other, first, atol=1e-4):
            raise DicomInputError(f"{where}: {described('PixelSpacing')} differs between slices "
                                  f"({first[::-1]} and {other[::-1]}, row then column)")
    return first


def _hounsfield(ds: Dataset, shape_yx: tuple[int, int]) -> np.ndarray:
    where = _slice_name(ds)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds for undecodable or missing pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise DicomInputError(f"{where}: cannot decode the pixel data (transfer syntax {syntax}): {exc}") from None
    if pixels.shape != shape_yx:
        raise DicomInputError(f"{where}: pixel data has shape {pixels.shape}, expected {shape_yx} (Rows, Columns)")
    slope = number(ds, "RescaleSlope", where, default=1.0)
    intercept = number(ds, "RescaleIntercept", where, default=0.0)
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
