"""The plan job: a CT and a structure set in Orthanc become an optimised RTPLAN and its RTDOSE in the same study.

Protons (proton-impt, proton-robust) are planned by `worker.planning.impt.plan_impt`
and exported as an RT Ion Plan; photons (photon-ccc) by
`worker.planning.photon.plan_photon` and exported as an RT Plan.
Stages (progress and ETA in the job row): fetching, building plan, computing
beamlets, optimizing, final dose, exporting,
storing, analysing. The RTDOSE is stored first and the RTPLAN after it,
each naming the other and the CT's frame of reference; UIDs derive from the
job id, so a retried job replaces its results. If the study's CT or
structure set disappears while the plan runs (the study was deleted),
nothing is stored, and what was stored is removed again, so no half-written
result is left behind.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from orthanc_rt.analysis.body import body_on_grid, restrict_to_body
from orthanc_rt.analysis.roi_masks import structure_masks
from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.ion_plan import build_ion_plan
from orthanc_rt.dicom.photon_plan import build_photon_plan
from orthanc_rt.dicom.rtstruct import read_structure_set
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError, DoseEngineError, PlanRequestError
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.inputs import (
    complete_series,
    fetch_series,
    read_instance,
    study_of,
)
from orthanc_rt.pacs.resources import exists
from orthanc_rt.planning.request import PlanRequest
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.settings import Settings
from worker.engines import beamlet_fanout, mcsquare
from worker.jobs import frame as job_frame
from worker.jobs.frame import Cancelled, store_result
from worker.jobs.progress import Progress
from worker.planning.impt import plan_impt

log = logging.getLogger("orthanc_rt.worker")

# Overall fraction each stage starts at (beamlets dominate, then the final dose).
STAGES = {
    "fetching": 0.0,
    "building plan": 0.04,
    "computing beamlets": 0.08,
    "optimizing": 0.55,
    "final dose": 0.65,
    "exporting": 0.92,
    "storing": 0.94,
    "analysing": 0.98,
}


def run(job_id: str, settings: Settings, store: JobStore) -> dict[str, Any]:
    work_dir = Path(settings.work_dir) / job_id
    return job_frame.run(
        job_id, settings, store,
        lambda job, api, settings_, store_: _plan_and_store(job, api, settings_, store_, work_dir),
        final_errors=(DoseEngineError, PlanRequestError), cleanup=lambda: shutil.rmtree(work_dir, ignore_errors=True))


def _plan_and_store(job: Any, api: OrthancApi, settings: Settings, store: JobStore, work_dir: Path) -> dict[str, Any]:
    progress = Progress(store, job.id, STAGES)
    progress.enter("fetching")
    request = PlanRequest.from_dict(job.params["request"])
    ct_ref = complete_series(api, job.inputs["ct_series"]["orthanc_id"])
    ct_datasets = fetch_series(api, ct_ref)
    ct = read_ct_series(ct_datasets)
    if not ct.frame_of_reference_uid:
        raise DicomInputError(f"CT series {ct.series_instance_uid} has no FrameOfReferenceUID: a plan and a dose "
                              "cannot be registered to it")
    structure_set_id = job.inputs["structure_set"]["orthanc_id"]
    structure_set = read_structure_set(read_instance(api, structure_set_id))
    if structure_set.frame_of_reference_uid != ct.frame_of_reference_uid:
        raise DicomInputError(f"the structure set is on FrameOfReferenceUID {structure_set.frame_of_reference_uid}, "
                              f"the CT on {ct.frame_of_reference_uid}")
    masks = structure_masks(structure_set, ct)

    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    (work_dir / "owner.pid").write_text(str(os.getpid()))

    inputs = {"CT series": f"/series/{ct_ref.orthanc_id}", "structure set": f"/instances/{structure_set_id}"}

    def on_progress(stage: str, fraction: float) -> None:
        if stage != progress.stage:  # between stages, never inside an MCsquare run
            _require_inputs(api, inputs, f"planning stopped before {stage}; nothing was stored")
            _require_running(store, job.id)
            progress.enter(stage)
        progress.within(fraction)

    workflow = job.params["workflow"]
    photon = workflow == "photon-ccc"
    if photon:
        from worker.planning.photon import (
            plan_photon,  # the CCC engine: only for photon plans
        )

        result = plan_photon(ct, masks, request, work_dir=work_dir, threads=settings.mcsquare_threads,
                             on_progress=on_progress)
    else:
        # Beamlets fan out to every worker taking the beamlets queue (settings.distributed_beamlets).
        result = plan_impt(ct, masks, request, work_dir=work_dir, threads=settings.mcsquare_threads,
                           on_progress=on_progress, beamlet_runner=beamlet_fanout.runner_for(settings))

    progress.enter("exporting")
    study = study_of(ct_datasets[0])
    uids = {name: derive_uid("orthanc-rt", job.id, name) for name in ("rtplan", "rtplan-series", "rtdose",
                                                                        "rtdose-series")}
    label = {"proton-impt": "IMPT", "proton-robust": "RIMPT", "photon-ccc": "IMRT"}[workflow]
    plan_fields = dict(sop_instance_uid=uids["rtplan"], series_instance_uid=uids["rtplan-series"], label=label,
                       fractions_planned=request.fractions,
                       referenced_structure_set_uid=structure_set.sop_instance_uid, referenced_dose_uid=uids["rtdose"],
                       plan_name=f"{label} {request.target_roi} {request.prescription_gy:g} Gy"[:64],
                       series_description=f"{label} plan {request.target_roi} (Orthanc-RT)"[:64])
    if photon:
        plan_ds = build_photon_plan(study, result.plan.beams, weight_unit=result.plan.weight_unit, **plan_fields)
        dose_description = f"{label} dose, CCC 6 MV (Orthanc-RT)"
    else:
        plan_ds = build_ion_plan(study, result.plan.beams, **plan_fields)
        dose_description = f"{label} dose{_uncertainty_note(result)} (Orthanc-RT)"
    # Dose outside the patient is no dose (docs/physics.md), in a plan's dose as in a recompute. The grid stays the
    # one the plan was optimised and evaluated on (its QA summary), so it is not cropped.
    reported = restrict_to_body(result.dose, body_on_grid(ct, result.dose, structure_set), crop=False)
    dose_ds = build_rtdose(
        reported.grid, study, sop_instance_uid=uids["rtdose"], series_instance_uid=uids["rtdose-series"],
        referenced_plan_uid=uids["rtplan"], referenced_plan_sop_class=str(plan_ds.SOPClassUID),
        series_description=dose_description[:64], content_description=reported.comment)

    progress.enter("storing")
    _require_running(store, job.id)
    _require_inputs(api, inputs, "nothing was stored")
    stored = {}
    for name, ds in (("rtdose", dose_ds), ("rtplan", plan_ds)):  # the dose first: the plan names it
        stored[name] = store_result(api, store, job.id, uids[name], to_bytes(ds), name)
    try:
        _require_inputs(api, inputs, "the plan and dose just stored were removed again")
    except DicomInputError:
        for orthanc_id in stored.values():
            api.delete(f"/instances/{orthanc_id}")
        raise

    progress.enter("analysing")
    return {
        "rtplan": {"orthanc_id": stored["rtplan"], "sop_instance_uid": uids["rtplan"],
                   "series_instance_uid": uids["rtplan-series"], "sop_class_uid": str(plan_ds.SOPClassUID)},
        "rtdose": {"orthanc_id": stored["rtdose"], "sop_instance_uid": uids["rtdose"],
                   "series_instance_uid": uids["rtdose-series"]},
        "ct": {"orthanc_series_id": ct_ref.orthanc_id, "series_instance_uid": ct_ref.series_instance_uid,
               "slices": len(ct_ref.instance_ids)},
        "structure_set": {"orthanc_id": structure_set_id, "sop_instance_uid": structure_set.sop_instance_uid},
        "qa": qa_summary(result, request, photon=photon),
    }


def qa_summary(result: Any, request: PlanRequest, *, photon: bool = False) -> dict[str, Any]:
    """What a physicist checks first: per-ROI dose metrics, target coverage and indices, plan and optimiser facts.

    `result` is a `worker.planning.impt.PlanResult` or, with `photon`, a `worker.planning.photon.PhotonPlanResult`.
    """
    target = result.qa.get(request.target_roi, {})
    summary: dict[str, Any] = {
        "prescription_gy": request.prescription_gy,
        "fractions": request.fractions,
        "target_roi": request.target_roi,
        "target": {name: _rounded(target.get(name)) for name in ("D98", "D95", "D50", "D2", "Dmin", "Dmean", "Dmax",
                                                                 "V95%", "HI", "CI_RTOG", "CI_Paddick")},
        "rois": {name: {k: _rounded(v) for k, v in metrics.items()} for name, metrics in result.qa.items()},
        "optimizer": {"method": result.optimizer.method, "iterations": result.optimizer.iterations,
                      "objective_initial": _rounded(result.optimizer.objective_initial),
                      "objective_final": _rounded(result.optimizer.objective_final)},
        "times_s": {k: round(v, 1) for k, v in vars(result.optimizer.times).items()},
        "dose_grid_mm": list(result.dose.spacing_mm),
    }
    if photon:
        summary.update({
            "beamlets": result.beamlet_count, "beamlet_size_mm": request.beamlet_spacing_mm,
            "weight_unit": result.plan.weight_unit,
            "beams": [{"name": b.name, "gantry_angle_deg": b.gantry_angle_deg, "couch_angle_deg": b.couch_angle_deg,
                       "beamlets": int((b.beamlet_weight > 0).sum()), "energy_mv": b.nominal_energy_mv}
                      for b in result.plan.beams]})
    else:
        summary.update({
            "spots": result.spot_count, "layers": result.layer_count,
            "beams": [{"name": b.name, "gantry_angle_deg": b.gantry_angle_deg, "couch_angle_deg": b.couch_angle_deg,
                       "layers": len(b.layers), "spots": sum(len(layer.spot_mu) for layer in b.layers),
                       "meterset_mu": round(b.meterset_mu, 4)} for b in result.plan.beams],
            "primaries": {"beamlets_per_spot": request.beamlet_primaries, "final": request.final_primaries},
            "optimization_grid_mm": list(result.optimizer_dose.spacing_mm) if result.optimizer_dose else None,
            "final_dose_uncertainty": {"reached_pct": _rounded(result.final_uncertainty_pct),
                                       "target_pct": request.final_uncertainty_pct,
                                       "primaries_cap": request.final_primaries,
                                       "definition": mcsquare.STAT_UNCERTAINTY_DEFINITION}})
    if getattr(result, "goals", None):  # clinical goals (request or protocol): pass/fail next to the metrics
        summary["goals"] = result.goals
        summary["goals_passed"] = all(g["passed"] for g in result.goals)
    if getattr(result, "notes", None):
        summary["notes"] = list(result.notes)
    if getattr(result, "scenario_qa", None) is not None:  # robust proton plans
        summary["robustness"] = {"setup_mm": request.robustness.setup_mm, "range_pct": request.robustness.range_pct,
                                 "scenarios": len(result.scenario_qa["D95"]),
                                 "target_D95_gy": [_rounded(v) for v in result.scenario_qa["D95"]],
                                 "target_D5_gy": [_rounded(v) for v in result.scenario_qa["D5"]],
                                 "worst_D95_gy": _rounded(result.scenario_qa["worst_D95"]),
                                 "worst_D5_gy": _rounded(result.scenario_qa["worst_D5"])}
    return summary


def _uncertainty_note(result: Any) -> str:
    """' 0.9 % unc.' for the RTDOSE's SeriesDescription (64 characters): the noise of the dose, stated."""
    reached = getattr(result, "final_uncertainty_pct", None)
    return "" if reached is None else f" {reached:.2g} % stat. unc."


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return None if value != value else round(value, 5)  # NaN is not JSON
    return value


def _require_running(store: JobStore, job_id: str) -> None:
    current = store.get(job_id)
    if current is None or current.state != jobs.RUNNING:
        raise Cancelled()


def _require_inputs(api: OrthancApi, inputs: dict[str, str], consequence: str) -> None:
    gone = [name for name, path in inputs.items() if not exists(api, path)]
    if gone:
        raise DicomInputError(f"the {' and the '.join(gone)} left Orthanc while the plan was computed (study "
                              f"deleted?); {consequence}")
