"""The dose job: an RTPLAN in Orthanc becomes an MCsquare RTDOSE in the same study.

Stages: fetch the plan and its CT from Orthanc, compute with MCsquare in a
folder of the job's own, build the RTDOSE (UIDs derived from the job id, so
a retry replaces rather than duplicates) and store it through Orthanc's REST
API. Input problems end the job as failed with a readable reason; a CT that
has not (completely) arrived puts it in waiting-for-input. A beam whose
isocentre lies outside the CT is a warning (in the job's message, the
RTDOSE's series description and DoseComment); one farther out than
`MAX_ISOCENTRE_OUTSIDE_MM` fails the job before the Monte Carlo (the plan is
not in this CT's coordinates), and a dose MCsquare left empty fails it after
(worker.engines.mcsquare).

The stored dose is the dose in the patient (orthanc_rt.analysis.body): zero
outside the body (the structure set's EXTERNAL ROI, else a body mask from the
CT), on a grid cropped to the dose region, unless the request's
`restrict_to_body` / `crop_grid` turn that off. The outputs say which body
was used, the maximum inside it and the one outside it before restriction,
and MCsquare's statistical uncertainty.

With `let: true` the same MCsquare run scores LETd, and the job also stores it as a Parametric Map, an
RBE-weighted RTDOSE when `rbe_model` is set, and per-ROI LETd records (worker.jobs.let_results).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from orthanc_rt.analysis.body import body_on_grid, body_structure_set, restrict_to_body
from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.models import CtVolume, DoseGrid, IonPlan
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError, DoseEngineError
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.inputs import fetch_series, locate_plan_ct, read_instance, study_of
from orthanc_rt.pacs.resources import exists
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.measurements import MeasurementStore
from orthanc_rt.settings import Settings
from worker.engines import mcsquare
from worker.engines.proton_dose import compute_dose, compute_dose_and_let
from worker.jobs import frame as job_frame
from worker.jobs.frame import Cancelled, store_result
from worker.jobs.let_results import LET_MAP, let_objects, let_records
from worker.jobs.progress import Progress

log = logging.getLogger("orthanc_rt.worker")
# A plan's isocentre lies in or near its target, inside the patient the CT shows. Half a metre outside the
# scanned volume it is in other coordinates (or the plan is on another CT): MCsquare would score next to nothing,
# and with the beam pointing away from the CT a stray voxel (measured: 0.02 Gy at 1 km) rather than no dose.
MAX_ISOCENTRE_OUTSIDE_MM = 500.0


def run(job_id: str, settings: Settings, store: JobStore) -> dict[str, Any]:
    work_dir = Path(settings.work_dir) / job_id
    return job_frame.run(
        job_id, settings, store,
        lambda job, api, settings_, store_: _compute_and_store(job, api, settings_, store_, work_dir),
        final_errors=(DoseEngineError,), cleanup=lambda: shutil.rmtree(work_dir, ignore_errors=True))


def _compute_and_store(job: Any, api: OrthancApi, settings: Settings, store: JobStore,
                       work_dir: Path) -> dict[str, Any]:
    progress = Progress(store, job.id)
    progress.enter("fetching inputs")
    plan_input = job.inputs["plan"]
    _, plan, ct_ref, ct_datasets, ct, warnings = plan_and_ct(api, job)

    progress.enter("preparing MCsquare")
    fresh_work_dir(work_dir)
    params = job.params
    progress.enter("Monte Carlo")
    simulate = dict(primaries=int(params["primaries"]), work_dir=work_dir,
                    scoring_spacing_mm=params.get("scoring_spacing_mm"), threads=settings.mcsquare_threads,
                    on_progress=lambda fraction, detail: progress.within(fraction, detail))
    let_full = None
    if params.get("let"):
        # The 1 % threshold is applied to the stored dose (worker.jobs.let_results): its maximum is the one inside
        # the body, not a noisy voxel of air.
        grid, let_full = compute_dose_and_let(ct, plan, threshold_fraction=0.0, **simulate)
    else:
        grid = compute_dose(ct, plan, **simulate)

    progress.enter("exporting RTDOSE")
    restrict, crop = bool(params.get("restrict_to_body", True)), bool(params.get("crop_grid", True))
    body = structure_set = None
    if restrict or let_full is not None or params.get("rbe_model"):
        structure_set = body_structure_set(api, job.orthanc_study_id, ct.frame_of_reference_uid,
                                           preferred_uid=plan.referenced_structure_set_uid)
    if restrict:
        body = body_on_grid(ct, grid, structure_set)
    reported = restrict_to_body(grid, body, crop=crop)
    uncertainty = mcsquare.stat_uncertainty_percent(mcsquare.JobFolder.at(work_dir))
    grid = reported.grid
    study = study_of(ct_datasets[0])
    sop_uid = derive_uid("orthanc-rt", job.id, "rtdose")
    series_uid = derive_uid("orthanc-rt", job.id, "rtdose-series")
    dose_ds = build_rtdose(
        grid, study, sop_instance_uid=sop_uid, series_instance_uid=series_uid,
        referenced_plan_uid=plan.sop_instance_uid,
        series_description=f"MCsquare dose {int(params['primaries']):.0e} primaries (Orthanc-RT)"
                           + (" WARNING" if warnings else ""),
        content_description=(warnings[0] if warnings else reported.comment)[:64],
    )
    dose_bytes = to_bytes(dose_ds)
    extra, let, let_notes = let_objects(job.id, params, grid, let_full, ct_datasets, study, plan.sop_instance_uid,
                                        plan.fractions_planned, structure_set)

    progress.enter("storing")
    current = store.get(job.id)
    if current is None or current.state != jobs.RUNNING:
        raise Cancelled()
    if not exists(api, f"/instances/{plan_input['orthanc_id']}"):
        raise DicomInputError("the RTPLAN was deleted from Orthanc while its dose was computed; nothing was stored")
    dose_id = store_result(api, store, job.id, sop_uid, dose_bytes, "rtdose")
    more = {item.name: {"orthanc_id": store_result(api, store, job.id, item.sop_instance_uid, item.data, item.name),
                        "sop_instance_uid": item.sop_instance_uid, "series_instance_uid": item.series_instance_uid}
            for item in extra}
    if let is not None:
        provenance = dict(study_instance_uid=study.study_instance_uid, series_instance_uid=series_uid,
                          sop_instance_uid=sop_uid, dose_sop_instance_uid=sop_uid, dose_series_instance_uid=series_uid,
                          ct_series_instance_uid=ct_ref.series_instance_uid)
        rows, histograms = let_records(job.id, let, grid, structure_set, provenance,
                                       let_sop_instance_uid=(more.get(LET_MAP) or {}).get("sop_instance_uid", ""))
        MeasurementStore(settings.database_url).replace_job_results(job.id, rows, histograms)
        let_notes["let_records"] = len(rows)
        let_notes["dose_let_histograms"] = len(histograms)
    return {
        **more, **let_notes,
        "rtdose": {"orthanc_id": dose_id, "sop_instance_uid": sop_uid, "series_instance_uid": series_uid},
        "ct": {"orthanc_series_id": ct_ref.orthanc_id, "series_instance_uid": ct_ref.series_instance_uid,
               "slices": len(ct_ref.instance_ids)},
        "ct_found_by": ct_ref.found_by,
        "plan": {"beams": len(plan.beams), "spots": plan.spot_count, "fractions": plan.fractions_planned,
                 "energies_mev": plan.energies_mev},
        "dose_max_gy": round(reported.dose_max_gy, 4),  # inside the body when restricted (= the stored maximum)
        "dose_max_outside_body_gy": (None if reported.dose_max_outside_body_gy is None
                                     else round(reported.dose_max_outside_body_gy, 4)),
        "restricted_to": reported.restricted_to,
        "grid_shape_zyx": {"computed": list(reported.shape_before), "stored": list(reported.shape_after)},
        "stat_uncertainty_percent": uncertainty,
        "stat_uncertainty_definition": mcsquare.STAT_UNCERTAINTY_DEFINITION,
        "dose_at_isocenter_gy": _dose_at(grid, plan.beams[0].isocenter_mm),
        "dose_summation": "PLAN (all fractions)",
        "primaries": int(params["primaries"]),
        "warnings": warnings,
    }


def plan_and_ct(api: OrthancApi, job: Any) -> tuple[Any, IonPlan, Any, list, CtVolume, list[str]]:
    """The job's RT Ion Plan (dataset and model) and its CT (reference, datasets, volume), with the warnings
    about them (isocentres outside the CT, a CT found by frame of reference only)."""
    plan_ds = read_instance(api, job.inputs["plan"]["orthanc_id"])
    plan = read_ion_plan(plan_ds)
    ct_ref = locate_plan_ct(api, orthanc_study_id=job.orthanc_study_id,
                            frame_of_reference_uid=plan.frame_of_reference_uid,
                            structure_set_uid=plan.referenced_structure_set_uid)
    ct_datasets = fetch_series(api, ct_ref)
    ct = read_ct_series(ct_datasets)
    warnings = beams_outside(plan, ct)
    if ct_ref.structure_set_missing:  # worth a look: matched by frame of reference, not by the plan's reference
        warnings.append(f"CT found by {ct_ref.found_by}")
    return plan_ds, plan, ct_ref, ct_datasets, ct, warnings


def fresh_work_dir(work_dir: Path) -> None:
    """An empty folder for the job's MCsquare runs, marked as this process's (worker.__main__ spares it)."""
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    (work_dir / "owner.pid").write_text(str(os.getpid()))


def beams_outside(plan: IonPlan, ct: CtVolume) -> list[str]:
    """One warning per beam whose isocentre lies outside the CT (its dose may be partial);
    DicomInputError when one lies more than MAX_ISOCENTRE_OUTSIDE_MM outside."""
    warnings = []
    for beam in plan.beams:
        outside = ct.distance_outside_mm(beam.isocenter_mm)
        where = f"isocentre of beam {beam.name or beam.number} is {outside:.0f} mm outside the CT"
        if outside > MAX_ISOCENTRE_OUTSIDE_MM:
            (x0, x1), (y0, y1), (z0, z1) = ct.bounds_mm()
            raise DicomInputError(
                f"the plan's beams miss the CT: the {where} (IsocenterPosition (300A,012C) "
                f"{tuple(round(v, 1) for v in beam.isocenter_mm)} mm; the CT spans x {x0:.0f}..{x1:.0f}, "
                f"y {y0:.0f}..{y1:.0f}, z {z0:.0f}..{z1:.0f} mm): is the plan on this CT's coordinates?")
        if outside > 0:
            warnings.append(where)
    return warnings


def _dose_at(grid: DoseGrid, point_mm: tuple[float, float, float]) -> float | None:
    """Dose in the voxel containing `point_mm` (None outside the grid)."""
    index = [int(round((p - o) / s)) for p, o, s in zip(point_mm, grid.origin_mm, grid.spacing_mm)]
    x, y, z = index
    nz, ny, nx = grid.dose_gy.shape
    if not (0 <= x < nx and 0 <= y < ny and 0 <= z < nz):
        return None
    return round(float(grid.dose_gy[z, y, x]), 4)
