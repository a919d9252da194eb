"""What a dose job with `let: true` (and an `rbe_model`) adds to the study and the records.

- the LETd as a Parametric Map (orthanc_rt.dicom.parametric_map) on the stored dose's grid, referencing the CT;
- an RBE-weighted RTDOSE (DoseType EFFECTIVE; orthanc_rt.analysis.rbe) whose SeriesDescription and
  DoseComment name the model and α/β; the analysis job that every new RTDOSE gets records its DVH metrics
  next to those of the physical dose;
- per-ROI LETd mean, maximum and L50 as measurement records (source "let", unit keV/um) of the job,
  against the physical RTDOSE, for every ROI of the structure set the dose was restricted with, and each ROI's
  cumulative dose-LET volume histogram (`GET /rt/doses/{dose}/dlvh`).

UIDs derive from the job id and RESULT_NAMES (orthanc_rt.scheduling.origin), so a retried job replaces them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.analysis.body import grid_as_volume
from orthanc_rt.analysis.let import dose_let_volume_histogram, let_on_region, let_statistics, restrict_let
from orthanc_rt.analysis.rbe import alpha_beta_map, describe, rbe_weighted_dose
from orthanc_rt.analysis.roi_masks import structure_masks
from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.models import DoseGrid, LetGrid, PatientStudy
from orthanc_rt.dicom.parametric_map import build_let_map
from orthanc_rt.dicom.rtstruct import StructureSet
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError
from orthanc_rt.records.tables import DoseLetHistogram, Measurement
from orthanc_rt.scheduling.origin import EFFECTIVE_DOSE_RESULT, LET_MAP_RESULT
from orthanc_rt.scheduling.params import DEFAULT_ALPHA_BETA_GY

LET_MAP, LET_MAP_SERIES = LET_MAP_RESULT, f"{LET_MAP_RESULT}-series"
EFFECTIVE, EFFECTIVE_SERIES = EFFECTIVE_DOSE_RESULT, f"{EFFECTIVE_DOSE_RESULT}-series"
LET_METHOD = "MCsquare LETd (StopPow), voxels with dose >= 1 % of max"


@dataclass(frozen=True)
class Built:
    """One DICOM object to store: its name (RESULT_NAMES), UIDs and bytes."""

    name: str
    sop_instance_uid: str
    series_instance_uid: str
    data: bytes


def let_objects(job_id: str, params: dict[str, Any], dose: DoseGrid, let_full: LetGrid | None,
                ct_datasets: Sequence[Dataset], study: PatientStudy, plan_uid: str, fractions: int,
                structure_set: StructureSet | None) -> tuple[list[Built], LetGrid | None, dict[str, Any]]:
    """The Parametric Map and the EFFECTIVE RTDOSE of the stored (restricted, cropped) dose `dose`."""
    built: list[Built] = []
    notes: dict[str, Any] = {}
    # On the stored grid, 0 outside the body, and kept where the stored dose is >= 1 % of its maximum (the
    # maximum inside the body: Monte Carlo noise in air can exceed the prescription).
    let = restrict_let(let_on_region(let_full, dose), dose) if let_full is not None else None
    if let is not None:
        uid, series = derive_uid("orthanc-rt", job_id, LET_MAP), derive_uid("orthanc-rt", job_id, LET_MAP_SERIES)
        ds = build_let_map(let, ct_datasets, sop_instance_uid=uid, series_instance_uid=series,
                           series_description="LETd keV/um, MCsquare (Orthanc-RT)",
                           content_description=f"LETd where dose >= {let.threshold_gy:.3g} Gy (1 % of max)")
        built.append(Built(LET_MAP, uid, series, to_bytes(ds)))
        notes["let_threshold_gy"] = round(let.threshold_gy, 6)
        notes["let_max_kev_um"] = round(float(np.max(let.let_kev_um)), 3)
    model = params.get("rbe_model")
    if model:
        if let is None:  # the constant model needs no LET
            let = LetGrid(let_kev_um=np.zeros_like(dose.dose_gy), origin_mm=dose.origin_mm,
                          spacing_mm=dose.spacing_mm, frame_of_reference_uid=dose.frame_of_reference_uid)
        alpha_beta = float(params.get("alpha_beta_gy") or DEFAULT_ALPHA_BETA_GY)
        by_roi = params.get("alpha_beta_by_roi") or {}
        ab: np.ndarray | float = alpha_beta
        if by_roi:
            masks = _masks(structure_set, dose)
            missing = sorted(set(by_roi) - set(masks))
            if missing:
                raise DicomInputError(f"alpha_beta_by_roi names ROI {missing[0]!r}, which the structure set "
                                      f"{_describe(structure_set)} does not have (it has: "
                                      f"{', '.join(sorted(masks)) or 'none'})")
            ab = alpha_beta_map(dose.dose_gy.shape, alpha_beta,
                                [(masks[name], value) for name, value in by_roi.items()])
        weighted = rbe_weighted_dose(dose, let, model=model, fractions=fractions, alpha_beta_gy=ab)
        text = describe(model, alpha_beta, per_roi=bool(by_roi))
        uid, series = derive_uid("orthanc-rt", job_id, EFFECTIVE), derive_uid("orthanc-rt", job_id, EFFECTIVE_SERIES)
        ds = build_rtdose(replace(weighted, dose_type="EFFECTIVE"), study, sop_instance_uid=uid,
                          series_instance_uid=series, referenced_plan_uid=plan_uid, series_description=text,
                          content_description=text, series_number=6)
        built.append(Built(EFFECTIVE, uid, series, to_bytes(ds)))
        notes["rbe"] = {"model": model, "alpha_beta_gy": alpha_beta, "alpha_beta_by_roi": by_roi,
                        "fractions": fractions, "max_gy_rbe": round(float(weighted.dose_gy.max()), 4),
                        "description": text}
    return built, (let if let_full is not None else None), notes


def let_records(job_id: str, let: LetGrid, dose: DoseGrid, structure_set: StructureSet | None,
                provenance: dict[str, Any], let_sop_instance_uid: str = ""
                ) -> tuple[list[Measurement], list[DoseLetHistogram]]:
    """Per-ROI LETd mean, maximum and L50 (keV/µm) over the ROI's voxels with dose above the threshold, and
    the ROI's dose-LET volume histogram (all its voxels)."""
    if structure_set is None:
        return [], []
    rows, histograms = [], []
    for name, mask in _masks(structure_set, dose).items():
        number = next((roi.number for roi in structure_set.rois if roi.name == name), None)
        histogram = dose_let_volume_histogram(let, dose, mask)
        if histogram is not None:
            histograms.append(DoseLetHistogram(
                job_id=job_id, study_instance_uid=provenance.get("study_instance_uid", ""),
                dose_sop_instance_uid=provenance.get("dose_sop_instance_uid", ""),
                let_sop_instance_uid=let_sop_instance_uid,
                structure_set_sop_instance_uid=structure_set.sop_instance_uid, roi_number=number,
                roi_name=name[:64], voxels=histogram.voxels, threshold_gy=round(let.threshold_gy, 6),
                histogram={"dose_gy": histogram.dose_gy, "let_kev_um": histogram.let_kev_um,
                           "volume_pct": histogram.volume_pct}))
        stats = let_statistics(let, dose, mask)
        if stats is None:
            continue
        for metric, value in (("LETd_mean", stats.mean_kev_um), ("LETd_max", stats.max_kev_um),
                              ("L50", stats.l50_kev_um)):
            rows.append(Measurement(source="let", type="let", metric=metric, value=round(value, 4), unit="keV/um",
                                    method=LET_METHOD, label=name[:128], roi_number=number, roi_name=name[:64],
                                    job_id=job_id, details={"voxels": stats.voxels,
                                                            "threshold_gy": round(let.threshold_gy, 6)},
                                    structure_set_sop_instance_uid=structure_set.sop_instance_uid,
                                    structure_set_series_instance_uid=structure_set.series_instance_uid,
                                    **provenance))
    return rows, histograms


def _masks(structure_set: StructureSet | None, dose: DoseGrid) -> dict[str, np.ndarray]:
    if structure_set is None:
        return {}
    return structure_masks(structure_set, grid_as_volume(dose))


def _describe(structure_set: StructureSet | None) -> str:
    return structure_set.sop_instance_uid if structure_set is not None else "(none found for the CT's frame)"
