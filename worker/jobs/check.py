"""The check job: compare an RTDOSE of another system with Orthanc-RT's recompute (or any two RTDOSEs).

Two modes, by the job's inputs (orthanc_rt.scheduling.scheduler):

- `recompute`: the inputs name an RT Ion Plan and the dose job that
  recomputes it. The check waits for that job; the reference is every
  RTDOSE in the plan's study that references the plan and no Orthanc-RT job
  made (`orthanc_rt.scheduling.origin`): one PLAN dose, or one BEAM dose per
  beam (summed; the check waits for missing beams), or a FRACTION dose
  (scaled by the fractions planned).
- `pair`: the inputs name two RTDOSEs; the first is the reference.

The recompute is physical dose. The TPS dose is read by the RBE convention
of its manufacturer (CheckParams.convention_for): a dose taken as RBE
1.1-weighted is compared with the recompute times 1.1, and the check says so.

Results: a `checks` record (verdict, every number, provenance), and in the
study an RTDOSE of type ERROR (recompute - reference, Gy), the gamma map as
an RTDOSE of units RELATIVE (so any dose viewer, OHIF included, shows it as
a colour wash over the CT), and the PDF report as an Encapsulated PDF. All
UIDs derive from the job id: a check run again replaces its results.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.analysis.body import body_on_grid
from orthanc_rt.analysis.dose_comparison import (
    DoseComparison,
    DoseDescription,
    compare,
    ct_on,
    resample_onto,
    roi_masks_on,
)
from orthanc_rt.dicom import sop
from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.dose import build_rtdose, read_rtdose
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.models import CtVolume, DoseGrid, IonPlan, PatientStudy
from orthanc_rt.dicom.rtstruct import StructureSet, read_structure_set
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError, InputNotReady, OrthancError
from orthanc_rt.pacs.client import OrthancApi, post_json
from orthanc_rt.pacs.inputs import complete_series, fetch_series, read_instance, study_of
from orthanc_rt.pacs.resources import find_instance, find_instances, frame_of_reference_of
from orthanc_rt.records import jobs
from orthanc_rt.records.checks import CheckStore
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Check, Job
from orthanc_rt.scheduling.origin import foreign_doses_of
from orthanc_rt.scheduling.params import PROTON_RBE, RBE_AS_LABELLED, RBE_WEIGHTED, CheckParams
from orthanc_rt.settings import Settings
from worker.jobs import frame as job_frame
from worker.jobs.frame import Cancelled, store_result
from worker.jobs.progress import Progress

log = logging.getLogger("orthanc_rt.worker")
STAGES = {"fetching inputs": 0.0, "comparing": 0.2, "writing the report": 0.7, "storing": 0.9}
_TARGET_TYPES = ("PTV", "CTV", "GTV")
_MIN_REPORT_GY = 1e-6
_LIMITS = ("pass_percent", "action_percent", "dose_level_warn_percent", "dose_level_action_percent")


def run(job_id: str, settings: Settings, store: JobStore) -> dict[str, Any]:
    return job_frame.run(job_id, settings, store, compute)


@dataclass
class _Inputs:
    """The two doses of a check and what identifies them, gathered the way the check's mode needs."""

    mode: str  # "recompute": a plan against its MCsquare recompute; "pair": two stored doses
    reference: DoseGrid
    reference_label: DoseDescription
    reference_uids: list[str]
    reference_ds: Dataset  # (the first of) the reference's datasets: study, patient, frame
    evaluated: DoseGrid
    evaluated_label: DoseDescription
    plan_uid: str
    structure_hint: str | None  # the plan's structure set, preferred for the per-ROI table
    recompute: Job | None = None
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


def compute(job: Job, api: OrthancApi, settings: Settings, store: JobStore) -> dict[str, Any]:
    started = time.perf_counter()
    progress = Progress(store, job.id, STAGES)
    progress.enter("fetching inputs")
    params = CheckParams.from_dict(job.params)
    given = _recompute_inputs(api, store, job, params) if "plan" in job.inputs else _pair_inputs(api, job)
    reference, reference_ds, mode = given.reference, given.reference_ds, given.mode
    notes = list(given.notes)
    provenance: dict[str, Any] = {"check_job": job.id, "requested_by": job.requested_by, "source": job.source,
                                  **given.provenance}
    structures, structure_note = _structure_set(api, reference_ds, reference.frame_of_reference_uid,
                                                given.structure_hint)
    if structure_note:
        notes.append(structure_note)
    progress.enter("comparing")
    masks = roi_masks_on(reference, structures)
    target = _target_of(structures, masks)
    ct = _ct_of(api, given.recompute, structures)
    body = body_on_grid(ct, reference, structures)
    provenance["params"] = params.as_dict()
    comparison = compare(reference, given.evaluated, params, reference_label=given.reference_label,
                         evaluated_label=given.evaluated_label, rois=masks, target=target, body=body, notes=notes,
                         provenance=provenance)
    if comparison.evaluated.max_gy < _MIN_REPORT_GY:
        raise DicomInputError("the evaluated dose is zero on the reference's grid: the grids do not overlap")
    study = study_of(reference_ds)
    if ct is not None:
        comparison.ct_hu = ct_on(ct, reference)
    progress.enter("writing the report")
    plan_uid = given.plan_uid
    comparison.provenance.update(_identification(reference_ds, plan_uid))
    pdf = _report(comparison)
    progress.enter("storing")
    current = store.get(job.id)
    if current is None or current.state != jobs.RUNNING:
        raise Cancelled()
    stored = _store_results(api, store, job, comparison, study, plan_uid, pdf)
    primary = comparison.primary
    record = Check(
        id=job.id, mode=mode, study_instance_uid=study.study_instance_uid, orthanc_study_id=job.orthanc_study_id,
        plan_sop_instance_uid=plan_uid, reference_sop_instance_uids={"uids": given.reference_uids},
        evaluated_sop_instance_uids={"uids": list(given.evaluated_label.sop_instance_uids)},
        criteria=primary.criteria.name + f", {primary.criteria.low_dose_threshold_percent:g} % threshold",
        pass_rate_percent=round(primary.pass_rate_percent, 3), verdict=comparison.verdict,
        reason=comparison.verdict_reason, results=results_of(comparison), provenance=comparison.provenance,
        report_orthanc_id=stored.get("report", {}).get("orthanc_id", ""), source=job.source,
        requested_by=job.requested_by)
    CheckStore(settings.database_url).record(record, actor=jobs.actor_name())
    return {"verdict": comparison.verdict, "reason": comparison.verdict_reason,
            "pass_rate_percent": record.pass_rate_percent, "criteria": record.criteria, "mode": mode,
            "check_id": job.id, **stored, "notes": comparison.notes,
            "seconds": round(time.perf_counter() - started, 2)}


def _recompute_inputs(api: OrthancApi, store: JobStore, job: Job, params: CheckParams) -> _Inputs:
    """The other system's dose of the plan against the plan's finished MCsquare recompute, in one convention."""
    plan_ds = read_instance(api, job.inputs["plan"]["orthanc_id"])
    if str(plan_ds.get("SOPClassUID", "")) != sop.RT_ION_PLAN:
        raise DicomInputError(f"the plan is {sop.describe(str(plan_ds.get('SOPClassUID', '')))}: only RT Ion "
                              "Plans are recomputed (compare two stored doses instead)")
    plan = read_ion_plan(plan_ds)
    recompute = _finished_recompute(store, job.inputs["recompute_job"])
    evaluated_ds = read_instance(api, recompute.outputs["rtdose"]["orthanc_id"])
    reference, reference_label, reference_uids, reference_ds, notes = _tps_dose(api, store, plan)
    convention = params.convention_for(reference_label.manufacturer)
    evaluated, rbe_note = _in_reference_convention(read_rtdose(evaluated_ds), reference_label.dose_type, convention)
    evaluated_label = DoseDescription(
        label=f"MCsquare recompute ({int(recompute.params['primaries']):.0e} primaries)",
        sop_instance_uids=(str(evaluated_ds.SOPInstanceUID),), summation="PLAN", dose_type=evaluated.dose_type,
        manufacturer="Orthanc-RT")
    return _Inputs("recompute", reference, reference_label, reference_uids, reference_ds, evaluated, evaluated_label,
                   plan_uid=plan.sop_instance_uid, structure_hint=plan.referenced_structure_set_uid,
                   recompute=recompute, notes=[*notes, rbe_note],
                   provenance={**_recompute_provenance(recompute), "rbe_convention": convention,
                               **engine_provenance()})


def _pair_inputs(api: OrthancApi, job: Job) -> _Inputs:
    """Two stored doses, compared as stored."""
    reference_ds = read_instance(api, job.inputs["reference"]["orthanc_id"])
    evaluated_ds = read_instance(api, job.inputs["evaluated"]["orthanc_id"])
    reference, evaluated = read_rtdose(reference_ds), read_rtdose(evaluated_ds)
    notes = []
    if evaluated.dose_type != reference.dose_type:
        notes.append(f"the reference is {reference.dose_type}, the evaluated dose {evaluated.dose_type}: compared "
                     "as stored")
    plan_uid = str(reference_ds.get("ReferencedRTPlanSequence", [Dataset()])[0].get("ReferencedSOPInstanceUID", ""))
    return _Inputs("pair", reference, _label_of(reference_ds, "reference"), [str(reference_ds.SOPInstanceUID)],
                   reference_ds, evaluated, _label_of(evaluated_ds, "evaluated"), plan_uid=plan_uid,
                   structure_hint=None, notes=notes)


def _finished_recompute(store: JobStore, job_id: str) -> Job:
    recompute = store.get(job_id)
    if recompute is None:
        raise DicomInputError(f"the recompute job {job_id} is gone")
    if recompute.state in (jobs.FAILED, jobs.CANCELLED):
        raise DicomInputError(f"the recompute (job {job_id}) {recompute.state}: {recompute.message}")
    if recompute.state != jobs.SUCCEEDED or "rtdose" not in (recompute.outputs or {}):
        raise InputNotReady(f"waiting for the recompute (job {job_id}, {recompute.state}"
                            + (f", {recompute.stage}" if recompute.stage else "") + ")")
    return recompute


def _tps_dose(api: OrthancApi, store: JobStore,
              plan: IonPlan) -> tuple[DoseGrid, DoseDescription, list[str], Dataset, list[str]]:
    """The other system's dose of the plan as one whole-plan grid, its label and UIDs, its first dataset, and
    notes on how it was made whole."""
    found = foreign_doses_of(api, store, plan.study_instance_uid, plan.sop_instance_uid)
    if not found:
        raise DicomInputError(f"no RTDOSE of another system references the plan {plan.sop_instance_uid} in its "
                              "study (ReferencedRTPlanSequence, 300C,0002): nothing to check the recompute against")
    datasets = [read_instance(api, d) for d in found]
    by_type: dict[str, list[Dataset]] = {}
    for ds in datasets:
        by_type.setdefault(str(ds.get("DoseSummationType", "")).upper(), []).append(ds)
    notes: list[str] = []
    if "PLAN" in by_type:
        chosen = sorted(by_type["PLAN"], key=_created)[-1]
        if len(by_type["PLAN"]) > 1:
            notes.append(f"{len(by_type['PLAN'])} PLAN doses reference the plan: the newest "
                         f"({chosen.SOPInstanceUID}) was checked")
        grid, summation, used = read_rtdose(chosen), "PLAN", [chosen]
    elif "FRACTION" in by_type:
        chosen = sorted(by_type["FRACTION"], key=_created)[-1]
        one = read_rtdose(chosen)
        grid = replace(one, dose_gy=one.dose_gy * plan.fractions_planned, summation_type="PLAN")
        summation, used = f"FRACTION dose x {plan.fractions_planned} fractions planned", [chosen]
        notes.append(f"the TPS dose is of one fraction: scaled by the {plan.fractions_planned} fractions planned")
    elif "BEAM" in by_type:
        grid, used, summation = _summed_beams(by_type["BEAM"], plan)
        notes.append(f"{summation} onto the first beam dose's grid")
    else:
        kinds = ", ".join(sorted(by_type)) or "none"
        raise DicomInputError(f"the plan's RTDOSEs are of DoseSummationType {kinds}: only PLAN, BEAM and FRACTION "
                              "doses can be checked against a recompute of the plan")
    first = used[0]
    label = DoseDescription(
        label=f"{str(first.get('Manufacturer', '') or 'TPS')} {summation.split(' ')[0]} dose",
        sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in used), summation=summation,
        dose_type=str(first.get("DoseType", "PHYSICAL")).upper(), manufacturer=str(first.get("Manufacturer", "")))
    return grid, label, [str(ds.SOPInstanceUID) for ds in used], first, notes


def _summed_beams(doses: list[Dataset], plan: IonPlan) -> tuple[DoseGrid, list[Dataset], str]:
    """One BEAM dose per treatment beam of the plan, summed; waits (InputNotReady) while beams are missing."""
    by_beam: dict[int, Dataset] = {}
    for ds in sorted(doses, key=_created):
        number = _referenced_beam(ds)
        if number is None:
            raise DicomInputError(f"BEAM dose {ds.SOPInstanceUID} names no beam (ReferencedRTPlanSequence > "
                                  "ReferencedFractionGroupSequence > ReferencedBeamSequence > ReferencedBeamNumber)")
        by_beam[number] = ds  # the newest of a beam's doses
    wanted = [beam.number for beam in plan.beams]
    missing = [n for n in wanted if n not in by_beam]
    if missing:
        raise InputNotReady(f"waiting for the BEAM doses of beams {', '.join(map(str, missing))} "
                            f"({len(by_beam)} of {len(wanted)} arrived)")
    extra = sorted(set(by_beam) - set(wanted))
    if extra:
        raise DicomInputError(f"BEAM doses reference beams {extra}, which the plan does not have")
    used = [by_beam[n] for n in wanted]
    first = read_rtdose(used[0])
    total = np.array(first.dose_gy, dtype=np.float64)
    for ds in used[1:]:
        total += resample_onto(read_rtdose(ds), first)
    return replace(first, dose_gy=total.astype(np.float32), summation_type="PLAN"), used, \
        f"{len(used)} BEAM doses summed"


def _referenced_beam(ds: Dataset) -> int | None:
    try:
        return int(ds.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence[0]
                   .ReferencedBeamSequence[0].ReferencedBeamNumber)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


def _created(ds: Dataset) -> str:
    return f"{ds.get('InstanceCreationDate', '')}{ds.get('InstanceCreationTime', '')}{ds.get('ContentDate', '')}" \
           f"{ds.get('ContentTime', '')}"


def _in_reference_convention(evaluated: DoseGrid, reference_type: str, convention: str) -> tuple[DoseGrid, str]:
    """The recompute (physical dose) in the convention the TPS dose is read by, and the note saying so."""
    weighted = convention == RBE_WEIGHTED or (convention == RBE_AS_LABELLED and reference_type == "EFFECTIVE")
    if not weighted:
        return evaluated, (f"RBE convention {convention}: the TPS dose ({reference_type}) is taken as physical dose "
                           "and compared with the physical recompute")
    return (replace(evaluated, dose_gy=evaluated.dose_gy * PROTON_RBE, dose_type="EFFECTIVE"),
            f"RBE convention {convention}: the TPS dose ({reference_type}) is taken as RBE-weighted; the recompute "
            f"(physical) is multiplied by {PROTON_RBE}")


def _ct_of(api: OrthancApi, recompute: Job | None, structures: StructureSet | None) -> CtVolume | None:
    """The CT under the doses (the body mask, the report's slices): the recompute's, else the structure set's."""
    series = ((recompute.outputs or {}).get("ct", {}).get("orthanc_series_id") if recompute is not None else None)
    if not series and structures is not None and structures.ct_series_instance_uid:
        found = post_json(api, "/tools/find", {"Level": "Series",
                                               "Query": {"SeriesInstanceUID": structures.ct_series_instance_uid}})
        series = found[0] if found else None
    if not series:
        return None
    try:
        return read_ct_series(fetch_series(api, complete_series(api, series)))
    except (DicomInputError, InputNotReady, OrthancError) as exc:  # deleted or changed since: go on without it
        log.warning("check: CT %s not used: %s", series, exc)
        return None


def _label_of(ds: Dataset, role: str) -> DoseDescription:
    manufacturer = str(ds.get("Manufacturer", ""))
    return DoseDescription(label=f"{role}: {manufacturer or 'RTDOSE'} {ds.get('SeriesDescription', '')}".strip(),
                           sop_instance_uids=(str(ds.SOPInstanceUID),),
                           summation=str(ds.get("DoseSummationType", "")), dose_type=str(ds.get("DoseType", "")),
                           manufacturer=manufacturer)


def _structure_set(api: OrthancApi, dose_ds: Dataset, frame: str,
                   preferred_uid: str | None) -> tuple[StructureSet | None, str]:
    """The structure set for the per-ROI table: the plan's own when stored, else the newest on the frame."""
    if preferred_uid:
        found = find_instance(api, preferred_uid)
        if found is not None:
            return read_structure_set(read_instance(api, found)), ""
    candidates = [i for i in find_instances(api, "RTSTRUCT", StudyInstanceUID=str(dose_ds.StudyInstanceUID))
                  if frame_of_reference_of(api, i, "RTSTRUCT") == frame]
    if not candidates:
        return None, "no structure set on the dose's frame of reference is in Orthanc: no per-ROI table"
    datasets = sorted((read_instance(api, i) for i in candidates), key=_created)
    note = f"per-ROI table from structure set {datasets[-1].SOPInstanceUID} (on the dose's frame of reference)"
    if preferred_uid:
        note += f"; the plan's own, {preferred_uid}, is not in Orthanc"
    return read_structure_set(datasets[-1]), note


def _target_of(structures: StructureSet | None, masks: dict[str, np.ndarray]) -> str | None:
    """The target the report centres on: the first PTV/CTV/GTV by type, else by name."""
    if structures is None:
        return None
    for kind in _TARGET_TYPES:
        for roi in structures.rois:
            if roi.name in masks and (roi.interpreted_type.upper() == kind or roi.name.upper().startswith(kind)):
                return roi.name
    return None


def _recompute_provenance(recompute: Job) -> dict[str, Any]:
    outputs = recompute.outputs or {}
    return {"recompute_job": recompute.id, "primaries": recompute.params.get("primaries"),
            "scoring_spacing_mm": recompute.params.get("scoring_spacing_mm"),
            "stat_uncertainty_percent": outputs.get("stat_uncertainty_percent"),
            "recompute_restricted_to": outputs.get("restricted_to"),
            "recompute_ct": (outputs.get("ct") or {}).get("series_instance_uid")}


def engine_provenance() -> dict[str, Any]:
    """Engine, versions and the checksums of the beam model and CT calibration this worker computes with."""
    from importlib import metadata

    import orthanc_rt
    from worker.engines.proton_dose import default_beam_model  # OpenTPS: loaded only when a check records

    model = default_beam_model()
    bdl, calibration = Path(model.bdl_path), Path(model.calibration_path)
    return {"engine": "MCsquare (OpenTPS)", "opentps_version": metadata.version("opentps-core"),
            "orthanc_rt_version": orthanc_rt.__version__,
            "beam_model": bdl.name, "beam_model_sha256": _sha256_of([bdl]),
            "ct_calibration": calibration.name,
            "ct_calibration_sha256": _sha256_of(sorted(p for p in calibration.rglob("*") if p.is_file()))}


def _sha256_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _identification(dose_ds: Dataset, plan_uid: str) -> dict[str, Any]:
    return {"patient_id": str(dose_ds.get("PatientID", "")), "patient_name": str(dose_ds.get("PatientName", "")),
            "study_instance_uid": str(dose_ds.get("StudyInstanceUID", "")), "plan_sop_instance_uid": plan_uid}


def _report(comparison: DoseComparison) -> bytes:
    from orthanc_rt.rendering.check_report import render_check_report  # matplotlib only here

    return render_check_report(comparison)


def results_of(comparison: DoseComparison) -> dict[str, Any]:
    """Every number of the comparison, as the record keeps it (JSON)."""
    return {
        "gamma": [{"criteria": g.criteria.name, "dose_percent": g.criteria.dose_percent,
                   "distance_mm": g.criteria.distance_mm, "local": g.criteria.local,
                   "low_dose_threshold_percent": g.criteria.low_dose_threshold_percent,
                   "pass_rate_percent": round(g.pass_rate_percent, 3), "points": g.evaluated_points}
                  for g in comparison.gamma],
        "rois": [{"name": r.name, "volume_cc": r.volume_cc,
                  "gamma_pass_rate_percent": None if r.gamma_pass_rate_percent is None
                  else round(r.gamma_pass_rate_percent, 2),
                  "metrics": {k: {"reference_gy": a, "evaluated_gy": b, "difference_gy": round(b - a, 4),
                                  "difference_percent": round(100.0 * (b - a) / a, 2) if a else None}
                              for k, (a, b) in r.metrics.items()}}
                 for r in comparison.rois],
        "difference": comparison.difference,
        "high_dose_ratio": comparison.high_dose_ratio,
        "reference": {"label": comparison.reference.label, "summation": comparison.reference.summation,
                      "dose_type": comparison.reference.dose_type, "max_gy": round(comparison.reference.max_gy, 4),
                      "manufacturer": comparison.reference.manufacturer},
        "evaluated": {"label": comparison.evaluated.label, "summation": comparison.evaluated.summation,
                      "dose_type": comparison.evaluated.dose_type, "max_gy": round(comparison.evaluated.max_gy, 4)},
        "limits": {name: getattr(comparison.params, name) for name in _LIMITS},
        "notes": comparison.notes,
    }


def _store_results(api: OrthancApi, store: JobStore, job: Job, comparison: DoseComparison, study: PatientStudy,
                   plan_uid: str, pdf: bytes) -> dict[str, Any]:
    """The difference and gamma RTDOSEs and the report, in the reference's study (earlier ones replaced)."""
    from orthanc_rt.dicom.encapsulated_pdf import build_encapsulated_pdf

    reference = comparison.reference_gy
    evaluated = comparison.evaluated_gy
    assert reference is not None and evaluated is not None
    frame = study.frame_of_reference_uid
    plan_ref = plan_uid or derive_uid("orthanc-rt", job.id, "no-plan")
    gamma = np.nan_to_num(comparison.primary.gamma, nan=0.0)
    objects = {
        "difference": build_rtdose(
            DoseGrid(evaluated - reference, comparison.origin_mm, comparison.spacing_mm, frame, dose_type="ERROR"),
            study, sop_instance_uid=derive_uid("orthanc-rt", job.id, "difference"),
            series_instance_uid=derive_uid("orthanc-rt", job.id, "difference-series"),
            referenced_plan_uid=plan_ref, series_description="Dose difference recompute - TPS (Orthanc-RT)",
            content_description="evaluated minus reference dose, Gy", series_number=5),
        "gamma": build_rtdose(
            DoseGrid(gamma.astype(np.float32), comparison.origin_mm, comparison.spacing_mm, frame,
                     dose_type="ERROR"),
            study, sop_instance_uid=derive_uid("orthanc-rt", job.id, "gamma"),
            series_instance_uid=derive_uid("orthanc-rt", job.id, "gamma-series"), referenced_plan_uid=plan_ref,
            series_description=f"Gamma {comparison.primary.criteria.name} (Orthanc-RT)"[:64],
            content_description="gamma index, unitless; 0 where not evaluated", series_number=6,
            units="RELATIVE"),
        "report": build_encapsulated_pdf(
            pdf, study, sop_instance_uid=derive_uid("orthanc-rt", job.id, "report"),
            series_instance_uid=derive_uid("orthanc-rt", job.id, "report-series"),
            document_title=f"Dose check {comparison.verdict.upper()} {comparison.primary.criteria.name}"[:64],
            referenced=[(sop.RT_DOSE, uid) for uid in (*comparison.reference.sop_instance_uids,
                                                       *comparison.evaluated.sop_instance_uids)]
            + ([(sop.RT_ION_PLAN, plan_uid)] if plan_uid else [])),
    }
    stored: dict[str, Any] = {}
    for name, ds in objects.items():
        uid = str(ds.SOPInstanceUID)
        orthanc_id = store_result(api, store, job.id, uid, to_bytes(ds), name)
        stored[name] = {"orthanc_id": orthanc_id, "sop_instance_uid": uid}
    return stored
