"""The robustness job: a stored RT Ion Plan's dose in every error scenario, its clinical goals in each, and
the scenarios' minimum and maximum dose in the study.

Stages: fetch the plan, its CT and the structure set on the CT's frame of
reference; check the goals' ROIs before any Monte Carlo (an unknown ROI
fails the job naming it); compute every scenario's dose (one MCsquare run
each, fanned out over the workers: worker.engines.scenario_fanout); evaluate
every goal in every scenario and its worst case (orthanc_rt.analysis.robustness);
store the voxel-wise minimum and maximum doses as RTDOSEs (zero outside the
body, cropped, as the dose job stores its dose; UIDs derived from the job
id); record the goals (source `robustness`) and keep the DVH bands of every
ROI in the job's outputs (GET /rt/instances/{plan}/robustness/{job}/dvh-bands).

Goals come from the request, a configured protocol, or default to target
coverage: D95 >= 95 % for every ROI typed PTV, CTV or GTV (else named so),
relative to the plan's TargetPrescriptionDose (DoseReferenceSequence) when it
has one, else to the nominal scenario's D95; the outputs say which.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from orthanc_rt.analysis.body import body_on_grid, body_structure_set, grid_as_volume, restrict_to_body
from orthanc_rt.analysis.goals import GoalResult, evaluate_goals
from orthanc_rt.analysis.robustness import default_goals, dose_envelope, dvh_bands
from orthanc_rt.analysis.roi_masks import structure_masks
from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.rtstruct import StructureSet
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError, DoseEngineError
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.inputs import study_of
from orthanc_rt.pacs.resources import exists
from orthanc_rt.planning.goals import Goal, parse_goals
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.measurements import MeasurementStore
from orthanc_rt.records.tables import Measurement
from orthanc_rt.scheduling.origin import MAX_DOSE_RESULT, MIN_DOSE_RESULT
from orthanc_rt.scheduling.robustness import Scenario
from orthanc_rt.settings import Settings
from worker.jobs import frame as job_frame
from worker.jobs.dose import fresh_work_dir, plan_and_ct
from worker.jobs.frame import Cancelled, store_result
from worker.jobs.progress import Progress

log = logging.getLogger("orthanc_rt.worker")
TARGET_TYPES = ("PTV", "CTV", "GTV")
# Overall fraction each stage starts at: the scenarios' Monte Carlo runs dominate.
STAGES = {"fetching inputs": 0.0, "scenario doses": 0.05, "goals and DVH bands": 0.93, "storing": 0.96}
METHOD = "robustness: MCsquare dose per error scenario; Dx interpolated between voxels (dvh_metrics)"


def run(job_id: str, settings: Settings, store: JobStore) -> dict[str, Any]:
    work_dir = Path(settings.work_dir) / job_id
    return job_frame.run(
        job_id, settings, store,
        lambda job, api, settings_, store_: _evaluate(job, api, settings_, store_, work_dir),
        final_errors=(DoseEngineError,), cleanup=lambda: shutil.rmtree(work_dir, ignore_errors=True))


def _evaluate(job: Any, api: OrthancApi, settings: Settings, store: JobStore, work_dir: Path) -> dict[str, Any]:
    from worker.engines.scenario_fanout import ScenarioDoses  # OpenTPS: only when the job runs

    progress = Progress(store, job.id, STAGES)
    progress.enter("fetching inputs")
    params = job.params
    plan_input = job.inputs["plan"]
    plan_ds, plan, ct_ref, ct_datasets, ct, warnings = plan_and_ct(api, job)
    structure_set = body_structure_set(api, job.orthanc_study_id, ct.frame_of_reference_uid,
                                       preferred_uid=plan.referenced_structure_set_uid)
    goals, goals_from = _goals(params, structure_set)
    prescription = prescription_gy(plan_ds)

    progress.enter("scenario doses")
    fresh_work_dir(work_dir)
    scenarios = [Scenario(tuple(s["shift_mm"]), float(s["range_pct"])) for s in params["scenario_list"]]
    runner = ScenarioDoses(settings.redis_url, part_timeout_s=settings.dose_job_timeout_seconds)
    doses = runner(ct, plan, scenarios, primaries=int(params["primaries"]), work_dir=work_dir,
                   threads=settings.mcsquare_threads,
                   on_progress=lambda fraction, detail: progress.within(fraction, detail))
    report = runner.last_report

    progress.enter("goals and DVH bands")
    masks = structure_masks(structure_set, grid_as_volume(doses[0])) if structure_set is not None else {}
    arrays = [grid.dose_gy for grid in doses]
    results = evaluate_goals(goals, arrays, masks, prescription_gy=prescription)
    bands = dvh_bands(arrays, masks)
    low, high = dose_envelope(doses)

    progress.enter("storing")
    body = body_on_grid(ct, doses[0], structure_set)
    study = study_of(ct_datasets[0])
    label = f"{len(scenarios)} scenarios, setup {params['setup_error_mm']:g} mm, range {params['range_error_pct']:g} %"
    built = {}
    for name, grid, what in ((MIN_DOSE_RESULT, low, "minimum"), (MAX_DOSE_RESULT, high, "maximum")):
        reported = restrict_to_body(grid, body)
        sop_uid = derive_uid("orthanc-rt", job.id, name)
        series_uid = derive_uid("orthanc-rt", job.id, f"{name}-series")
        ds = build_rtdose(reported.grid, study, sop_instance_uid=sop_uid, series_instance_uid=series_uid,
                          referenced_plan_uid=plan.sop_instance_uid,
                          series_description=f"Robustness {what} dose over {len(scenarios)} scenarios (Orthanc-RT)",
                          content_description=f"voxel-wise {what} over {label}"[:64])
        built[name] = (sop_uid, series_uid, to_bytes(ds))
    current = store.get(job.id)
    if current is None or current.state != jobs.RUNNING:
        raise Cancelled()
    if not exists(api, f"/instances/{plan_input['orthanc_id']}"):
        raise DicomInputError("the RTPLAN was deleted from Orthanc during the evaluation; nothing was stored")
    stored = {name: {"orthanc_id": store_result(api, store, job.id, sop_uid, data, name),
                     "sop_instance_uid": sop_uid, "series_instance_uid": series_uid}
              for name, (sop_uid, series_uid, data) in built.items()}
    provenance = dict(study_instance_uid=study.study_instance_uid, sop_instance_uid=plan.sop_instance_uid,
                      series_instance_uid=plan.series_instance_uid,
                      dose_sop_instance_uid=stored[MIN_DOSE_RESULT]["sop_instance_uid"],
                      dose_series_instance_uid=stored[MIN_DOSE_RESULT]["series_instance_uid"],
                      ct_series_instance_uid=ct_ref.series_instance_uid)
    rows = goal_records(job.id, results, scenarios, structure_set, provenance)
    MeasurementStore(settings.database_url).replace_job_results(job.id, rows, [])
    return {
        **{name: value for name, value in stored.items()},
        "scenarios": [scenario.as_dict() | {"dose_max_gy": round(float(grid.dose_gy.max()), 4)}
                      for scenario, grid in zip(scenarios, doses)],
        "goals_from": goals_from,
        "prescription_gy": prescription,
        "goals": [goal_summary(result, scenarios) for result in results],
        "robust": all(result.passed for result in results),
        "dvh_bands": bands,
        "records": len(rows),
        "structure_set_sop_instance_uid": structure_set.sop_instance_uid if structure_set else None,
        "fanout": {"parts": len(report.parts), "computed_by_this_job": len(report.stolen),
                   "seconds": round(report.seconds, 2), "attempts": report.attempts},
        "primaries": int(params["primaries"]),
        "warnings": warnings,
    }


def _goals(params: dict[str, Any], structure_set: StructureSet | None) -> tuple[list[Goal], str]:
    """The goals to evaluate, checked against the structure set's ROIs before any Monte Carlo."""
    names = [roi.name for roi in structure_set.rois] if structure_set is not None else []
    if params.get("goals"):
        goals = list(parse_goals([dict(g) for g in params["goals"]], "goals"))
        missing = sorted({goal.roi for goal in goals} - set(names))
        if missing:
            raise DicomInputError(f"goals name ROI {', '.join(repr(m) for m in missing)}, not in the structure "
                                  f"set ({', '.join(names) or 'no structure set with the body on the CT'})")
        return goals, str(params.get("goals_from") or "request")
    if structure_set is None:
        raise DicomInputError("no structure set on the plan's CT (with a body ROI): no target to evaluate")
    targets = [roi.name for roi in structure_set.rois if roi.interpreted_type.strip().upper() in TARGET_TYPES
               and roi.contours] or [name for name in names if name.strip().upper()[:3] in TARGET_TYPES]
    if not targets:
        raise DicomInputError(f"no target ROI (RTROIInterpretedType PTV, CTV or GTV) in the structure set "
                              f"({', '.join(names)}): name the goals in the request")
    return list(default_goals(targets)), "default (target coverage)"


def prescription_gy(plan_ds: Any) -> float | None:
    """The plan's TargetPrescriptionDose (300A,0026) of its first target dose reference, if any."""
    for reference in getattr(plan_ds, "DoseReferenceSequence", []) or []:
        value = getattr(reference, "TargetPrescriptionDose", None)
        if value is not None and float(value) > 0:
            return float(value)
    return None


def goal_summary(result: GoalResult, scenarios: list[Scenario]) -> dict[str, Any]:
    return {"goal": result.goal.text, "roi": result.goal.roi, "metric": result.goal.metric,
            "worst": round(result.worst, 4), "worst_scenario": scenarios[result.worst_scenario].name,
            "passed": result.passed, "nominal": round(result.values[0], 4), "reference": result.reference,
            "reference_gy": None if result.reference_gy is None else round(result.reference_gy, 4),
            "values": {s.name: round(v, 4) for s, v in zip(scenarios, result.values)}}


def goal_records(job_id: str, results: list[GoalResult], scenarios: list[Scenario], structure_set: StructureSet | None,
                 provenance: dict[str, Any]) -> list[Measurement]:
    """One record per goal and scenario (label: the scenario's name) and one per goal for its worst case."""
    rows = []
    for result in results:
        goal = result.goal
        number = next((roi.number for roi in structure_set.rois if roi.name == goal.roi), None) \
            if structure_set is not None else None
        unit = goal.unit if goal.is_dose else "%"
        common = dict(source="robustness", type="dose" if goal.is_dose else "volume", metric=goal.metric[:32],
                      unit=unit, method=METHOD, roi_number=number, roi_name=goal.roi[:64], job_id=job_id,
                      structure_set_sop_instance_uid=structure_set.sop_instance_uid if structure_set else "",
                      structure_set_series_instance_uid=structure_set.series_instance_uid if structure_set else "",
                      **provenance)
        reference = {"reference": result.reference, "reference_gy": result.reference_gy} if result.reference else {}
        for k, scenario in enumerate(scenarios):
            rows.append(Measurement(value=round(result.values[k], 4), label=scenario.name[:128], **common,
                                    details={"goal": goal.text, "scenario": scenario.as_dict(),
                                             "passed": result.passed_in(k), **reference}))
        rows.append(Measurement(value=round(result.worst, 4), label="worst case", **common,
                                details={"goal": goal.text, "scenario": scenarios[result.worst_scenario].name,
                                         "passed": result.passed, "scenarios": len(scenarios), **reference}))
    return rows


