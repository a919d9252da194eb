"""Dose analysis of one RTDOSE with one RTSTRUCT (and its CT): measurement rows and DVH curves.

Plain Python on pydicom datasets: the worker fetches the inputs, this module
computes, `measurements.MeasurementStore` writes. Each ROI that cannot be
analysed is skipped with a reason; the analysis as a whole is refused only
when dose and structures are on different frames of reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.analysis import dvh
from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.dose import read_rtdose
from orthanc_rt.dicom.rtstruct import read_structure_set
from orthanc_rt.errors import DicomInputError
from orthanc_rt.records.tables import DvhCurve, Measurement
from orthanc_rt.scheduling.params import AnalysisParams

# ROIs smaller than this are still analysed, but flagged: voxel counting is coarse for them.
SMALL_ROI_CC = 5.0


@dataclass
class AnalysisResult:
    measurements: list[Measurement] = field(default_factory=list)
    curves: list[DvhCurve] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"roi_number", "roi_name", "reason"}
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"rois_analysed": len(self.curves), "measurements": len(self.measurements),
                "skipped": self.skipped, "notes": self.notes}


def analyse(dose_ds: Dataset, struct_ds: Dataset, ct_datasets: Sequence[Dataset] | None, params: AnalysisParams,
            *, job_id: str) -> AnalysisResult:
    grid = read_rtdose(dose_ds)
    if grid.dose_type == "ERROR":
        raise DicomInputError("the RTDOSE is of DoseType ERROR (a difference of two doses): it has no DVH")
    structures = read_structure_set(struct_ds)
    if grid.frame_of_reference_uid != structures.frame_of_reference_uid:
        raise DicomInputError(f"the RTDOSE is on FrameOfReferenceUID {grid.frame_of_reference_uid}, the RTSTRUCT "
                              f"on {structures.frame_of_reference_uid}: they cannot be analysed together")
    ct = read_ct_series(ct_datasets) if ct_datasets else None
    result = AnalysisResult()
    if ct is None:
        result.notes.append("no CT: Hounsfield statistics left out")
    elif ct.frame_of_reference_uid != grid.frame_of_reference_uid:
        result.notes.append(f"CT series {ct.series_instance_uid} is on another frame of reference: HU left out")
        ct = None
    provenance = dict(
        study_instance_uid=str(dose_ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(dose_ds.get("SeriesInstanceUID", "")),
        sop_instance_uid=str(dose_ds.SOPInstanceUID),
        dose_sop_instance_uid=str(dose_ds.SOPInstanceUID),
        dose_series_instance_uid=str(dose_ds.get("SeriesInstanceUID", "")),
        structure_set_sop_instance_uid=structures.sop_instance_uid,
        structure_set_series_instance_uid=structures.series_instance_uid,
        ct_series_instance_uid=ct.series_instance_uid if ct else (structures.ct_series_instance_uid or ""),
        job_id=job_id, created_by="analysis",
    )
    grid_max = float(grid.dose_gy.max())
    reference = params.reference_dose_gy or grid_max
    reference_kind = "reference dose" if params.reference_dose_gy else "maximum of the dose grid"
    for roi in structures.rois:
        def skip(reason: str) -> None:
            result.skipped.append({"roi_number": roi.number, "roi_name": roi.name, "reason": reason})

        if not roi.contours:
            skip("no usable contours" + (f" ({'; '.join(roi.rejected[:3])})" if roi.rejected else ""))
            continue
        sample = dvh.sample_roi(roi, grid.dose_gy, grid.origin_mm, grid.spacing_mm, interpolate_z=True)
        if sample.values.size == 0:
            skip("the contours cover no voxel centre of the dose grid")
            continue
        v_pct_doses = [p / 100.0 * reference for p in params.v_at_dose_pct]
        stats = dvh.dose_stats(sample, d_at_volume_pct=params.d_at_volume_pct,
                               v_at_dose_gy=[*params.v_at_dose_gy, *v_pct_doses])
        roi_fields = dict(roi_number=roi.number, roi_name=roi.name[:64])
        details: dict[str, Any] = {"voxels": int(sample.values.size), "planes": sample.planes_used}
        if sample.planes_outside:
            details["planes_outside_dose_grid_mm"] = sample.planes_outside
        if roi.rejected:
            details["contours_dropped"] = roi.rejected
        if stats.volume_cc < SMALL_ROI_CC:
            details["small_roi"] = f"under {SMALL_ROI_CC:g} cc: voxel counting is coarse"

        def add(kind: str, metric: str, value: float, unit: str, source: str = "dvh", **extra: Any) -> None:
            result.measurements.append(Measurement(
                source=source, type=kind, metric=metric, value=float(value), unit=unit, method=dvh.METHOD[:128],
                label=roi.name[:128], details={**details, **extra}, **provenance, **roi_fields))

        add("volume", "volume", stats.volume_cc, "cc")
        add("dose", "Dmin", stats.d_min, "Gy")
        add("dose", "Dmean", stats.d_mean, "Gy")
        add("dose", "Dmax", stats.d_max, "Gy")
        for pct, value in stats.d_at_volume.items():
            add("dose", f"D{pct:g}", value, "Gy", volume_pct=pct)
        for gy in params.v_at_dose_gy:
            add("dose-volume", f"V{gy:g}Gy", stats.v_at_dose[float(gy)], "%", dose_gy=gy,
                volume_cc=stats.v_at_dose[float(gy)] / 100.0 * stats.volume_cc)
        for pct, gy in zip(params.v_at_dose_pct, v_pct_doses):
            add("dose-volume", f"V{pct:g}%", stats.v_at_dose[float(gy)], "%", dose_gy=gy,
                relative_to=reference_kind, reference_gy=reference)
        if ct is not None:
            hu_sample = dvh.sample_roi(roi, ct.hu, ct.origin_mm, ct.spacing_mm, interpolate_z=False)
            if hu_sample.values.size:
                for name, value in dvh.value_stats(hu_sample).items():
                    add("hounsfield", f"HU{name}", value, "HU", source="image",
                        ct_method="voxel centre in contour, nearest CT slice")
        result.curves.append(DvhCurve(
            job_id=job_id, study_instance_uid=provenance["study_instance_uid"],
            dose_sop_instance_uid=provenance["dose_sop_instance_uid"],
            structure_set_sop_instance_uid=structures.sop_instance_uid, roi_number=roi.number,
            roi_name=roi.name[:64], roi_color=roi.color, volume_cc=stats.volume_cc,
            bin_width_gy=stats.bin_width_gy,
            volume_pct={"values": np.round(stats.cumulative_pct, 4).tolist()}))
    return result
