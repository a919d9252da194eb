"""From a plan request (REST body, batch item or automatic rule) to a recorded plan and its queued job.

Everything that can be checked before a job exists is checked here, so a
bad request is a 400 with a message naming the problem and leaves nothing
behind: the workflow, the parameters, the study, the structure set and its
ROIs (listing the available ones), the CT. What can only be found by
computing (no spot reaches the target, a CT still arriving) is the job's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from orthanc_rt.errors import PlanRequestError
from orthanc_rt.pacs.resources import ORTHANC_ID, instance_ref
from orthanc_rt.pacs.structure_sets import StructureSetIndex, StructureSetSummary
from orthanc_rt.planning import workflows
from orthanc_rt.planning.request import PlanRequest, validate_parameters, validate_rois
from orthanc_rt.records import jobs, plans
from orthanc_rt.records.plans import PlanStore
from orthanc_rt.records.tables import Job, Plan
from orthanc_rt.scheduling.scheduler import Scheduler

INPUT_FIELDS = ("study", "ct_series", "structure_set")
MAX_BATCH = 100
# How a request names a study, series or instance: Orthanc's id (pacs.resources.ORTHANC_ID) or a DICOM UID.
_DICOM_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def is_resource_key(value: Any) -> bool:
    """Whether `value` can name an Orthanc resource: an Orthanc id or a DICOM UID (at most 64 characters)."""
    return isinstance(value, str) and len(value) <= 64 and bool(ORTHANC_ID.fullmatch(value)
                                                                or _DICOM_UID.fullmatch(value))


def parse(body: Any) -> tuple[str, PlanRequest]:
    """The workflow and the planning request of a body (without its inputs); PlanRequestError if bad."""
    if not isinstance(body, Mapping):
        raise PlanRequestError(f"a plan request is a JSON object, not {type(body).__name__}")
    workflow_id = body.get("workflow", "proton-impt")
    if not isinstance(workflow_id, str):
        raise PlanRequestError(f"workflow must be a string, not {workflow_id!r}")
    workflow = workflows.get(workflow_id)
    status = workflow.status()
    if not status.get("available"):
        raise PlanRequestError(f"workflow {workflow.id} is not available here: {status.get('reason')}")
    if workflow.id not in workflows.PLANNING:
        raise PlanRequestError(f"workflow {workflow.id} is not run through /rt/plans; use {workflow.submit_to}")
    fields = {k: v for k, v in body.items() if k not in (*INPUT_FIELDS, "workflow")}
    accepted = [p.name for p in workflow.parameters]
    foreign = sorted(set(fields) - set(accepted))
    if foreign:
        raise PlanRequestError(f"{', '.join(foreign)}: not a parameter of workflow {workflow.id} "
                               f"(its parameters: {', '.join(accepted)})")
    defaults = dict(workflow.defaults)
    if fields.get("protocol") is not None:
        defaults.pop("beam_count", None)  # the protocol's beams, unless the request names its own
    request = PlanRequest.from_dict({**defaults, **fields})
    validate_parameters(request)
    if workflow.id == "proton-robust" and not (request.robustness and request.robustness.enabled):
        raise PlanRequestError("proton-robust needs robustness with setup_mm or range_pct above 0")
    return workflow.id, request


@dataclass(frozen=True)
class Submitted:
    plan: Plan
    job: Job
    created: bool  # False: the same request on the same inputs existed (and was re-run if it had failed)


class PlanSubmitter:
    def __init__(self, index: StructureSetIndex, plan_store: PlanStore, scheduler: Scheduler):
        self.index = index
        self.plans = plan_store
        self.scheduler = scheduler

    def submit(self, body: Any, *, source: str = "api", requested_by: str = "", rule: str = "") -> Submitted:
        """Validate `body`, record the plan and queue its job (PlanRequestError: nothing was recorded)."""
        workflow_id, request = parse(body)
        for name in INPUT_FIELDS:
            value = body.get(name)
            if value is not None and not is_resource_key(value):
                raise PlanRequestError(f"{name} must be an Orthanc id or a DICOM UID, not {str(value)[:80]!r}")
        if not body.get("study"):
            raise PlanRequestError("study is required (Orthanc study id or StudyInstanceUID)")
        study_id = self.index.study_id(body["study"])
        if study_id is None:
            raise PlanRequestError(f"study {body['study']} is not in Orthanc")
        structure_set = self._structure_set(study_id, body.get("structure_set"), request.target_roi)
        validate_rois(request, structure_set.contoured())
        ct = self.index.planning_ct(study_id, structure_set, body.get("ct_series"))
        if ct is None:
            if body.get("ct_series"):
                raise PlanRequestError(f"ct_series {body['ct_series']} is not a CT series of the study")
            raise PlanRequestError(f"no CT series in the study for structure set {structure_set.sop_instance_uid} "
                                   f"(it references CT series {structure_set.ct_series_instance_uid or 'none'} "
                                   f"on frame of reference {structure_set.frame_of_reference_uid or 'none'})")
        return self.record(workflow_id, request, structure_set, ct_series=ct, source=source,
                           requested_by=requested_by, rule=rule)

    def record(self, workflow_id: str, request: PlanRequest, structure_set: StructureSetSummary, *, ct_series: Any,
               source: str, requested_by: str, rule: str = "") -> Submitted:
        """Record a validated request and queue its job; a failed, cancelled or deleted plan runs again."""
        study = instance_ref(self.index.api, structure_set.orthanc_id)
        request_json = request.as_dict()
        pid = plans.plan_id(workflow=workflow_id, structure_set_uid=structure_set.sop_instance_uid,
                            ct_series_uid=ct_series.series_instance_uid, request=request_json, rule=rule)
        existing = self.plans.get(pid)
        revived = existing is not None and existing.deleted_at is not None
        plan, created = self.plans.record(Plan(
            id=pid, job_id=jobs.job_id("plan", pid), workflow=workflow_id,
            study_instance_uid=study.study_instance_uid, orthanc_study_id=study.orthanc_study_id,
            ct_series_instance_uid=ct_series.series_instance_uid,
            structure_set_sop_instance_uid=structure_set.sop_instance_uid, target_roi=request.target_roi[:64],
            request=request_json, source=source[:80], requested_by=requested_by[:128]), actor=requested_by or source)
        job, job_created = self.scheduler.request(
            "plan", identity=[pid], identity_params={}, study=study, source=source.split(":")[0][:16],
            requested_by=requested_by,
            params={"workflow": workflow_id, "request": request_json, "plan_id": pid},
            inputs={"ct_series": {"orthanc_id": ct_series.orthanc_id,
                                  "series_instance_uid": ct_series.series_instance_uid},
                    "structure_set": {"orthanc_id": structure_set.orthanc_id,
                                      "sop_instance_uid": structure_set.sop_instance_uid}})
        if not job_created and (job.state in (jobs.FAILED, jobs.CANCELLED) or revived):
            job = self.scheduler.rerun(job, actor=requested_by or source, message="plan requested again")
        return Submitted(plan, job, created or revived)

    def _structure_set(self, study_id: str, key: str | None, target: str) -> StructureSetSummary:
        if key:
            found = self.index.find(study_id, key)
            if found is None:
                raise PlanRequestError(f"structure_set {key} is not an RTSTRUCT of the study")
            if found.problem:
                raise PlanRequestError(f"structure set {found.sop_instance_uid} cannot be used: {found.problem}")
            return found
        found = self.index.of_study(study_id)
        usable = [s for s in found if not s.problem]
        if not usable:
            raise PlanRequestError("the study has no usable RTSTRUCT; planning needs a structure set with the "
                                   "target contoured" + _problems(found))
        with_target = [s for s in usable if target in s.contoured()]
        if not with_target:
            names = sorted({roi.name for s in usable for roi in s.rois})
            raise PlanRequestError(f"target ROI {target!r} is not in any structure set of the study "
                                   f"(available: {', '.join(names) or 'none'})")
        return with_target[0]


def _problems(summaries: list[StructureSetSummary]) -> str:
    found = [f"{s.sop_instance_uid}: {s.problem}" for s in summaries if s.problem]
    return f" ({'; '.join(found)})" if found else ""
