"""Reading an RTDOSE back into a DoseGrid (ours or a planning system's)."""
from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom.errors import DicomInputError
from orthanc_rt.dicom.models import DoseGrid


def read_rtdose(ds: Dataset) -> DoseGrid:
    """Gy on an axis-aligned grid; GridFrameOffsetVector may be relative (first 0) or absolute."""
    orientation = tuple(round(float(v), 4) for v in ds.get("ImageOrientationPatient", ()))
    if orientation != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        raise DicomInputError(f"RTDOSE {ds.get('SOPInstanceUID')}: ImageOrientationPatient {list(orientation)} "
                              "is not axial; only axis-aligned dose grids are supported")
    if ds.get("DoseGridScaling") is None:
        raise DicomInputError(f"RTDOSE {ds.get('SOPInstanceUID')}: DoseGridScaling (3004,000E) is missing")
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1))
    pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
    dose = pixels.astype(np.float64) * float(ds.DoseGridScaling)
    position = [float(v) for v in ds.ImagePositionPatient]
    offsets = [float(v) for v in ds.get("GridFrameOffsetVector", [0.0])]
    if len(offsets) != frames:
        raise DicomInputError(f"RTDOSE: GridFrameOffsetVector has {len(offsets)} values for {frames} frames")
    # Relative offsets start at 0; absolute ones start at the first frame's z (PS3.3 C.8.8.3.2).
    z = np.array(offsets) if offsets[0] == 0.0 else np.array(offsets) - position[2]
    dz = float(np.median(np.diff(z))) if frames > 1 else float(ds.get("SliceThickness", 1.0) or 1.0)
    if frames > 1 and np.ptp(np.diff(z)) > 1e-3:
        raise DicomInputError("RTDOSE: GridFrameOffsetVector is not evenly spaced")
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    return DoseGrid(
        dose_gy=dose,
        origin_mm=(position[0], position[1], position[2] + float(z[0])),
        spacing_mm=(col_spacing, row_spacing, dz),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
    )
