"""What the /rt routes answer, as TypedDicts: the JSON bodies of plugin/routes/*, field by field.

They describe, they do not convert: a client call returns the server's JSON
as it came (`total=False` where a route leaves fields out), so a field the
server adds later is still there for a script that wants it.
"""
from __future__ import annotations

from typing import Any, Generic, TypedDict, TypeVar

T = TypeVar("T")


class JobEvent(TypedDict):
    at: str
    state: str
    stage: str
    message: str
    actor: str


class Job(TypedDict, total=False):
    """GET /rt/jobs/{id} (orthanc_rt.records.jobs.to_dict); `events` and `results_deleted` on one job only."""

    id: str
    kind: str  # dose, analysis, sr, plan, check, ...
    state: str  # queued, waiting-for-input, running, succeeded, failed, cancelled
    stage: str
    progress: float  # 0-1
    eta_seconds: float | None
    message: str
    source: str
    requested_by: str
    study_instance_uid: str
    orthanc_study_id: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]  # e.g. {"rtdose": {"orthanc_id", "sop_instance_uid", ...}}
    attempts: int
    created_at: str | None
    updated_at: str | None
    enqueued_at: str | None
    started_at: str | None
    finished_at: str | None
    wait_deadline: str | None
    events: list[JobEvent]
    results_deleted: list[str]


class Page(TypedDict, Generic[T]):
    """One page of a list route."""

    items: list[T]
    total: int
    limit: int
    offset: int


class JobRequest(TypedDict):
    """POST /rt/instances/{id}/dose and /analysis: `created` False when the same job existed."""

    created: bool
    job: Job


class RobustnessRequest(TypedDict):
    """POST /rt/instances/{id}/robustness: the job, the scenarios' names (nominal first), where the goals come
    from (request, protocol <name>, default)."""

    created: bool
    job: Job
    scenarios: list[str]
    goals_from: str


class PlanJob(TypedDict):
    id: str
    state: str
    stage: str
    progress: float
    eta_seconds: float | None
    message: str
    attempts: int


class Plan(TypedDict):
    """POST /rt/plans, GET /rt/plans/{id} (orthanc_rt.records.plans.to_dict)."""

    id: str
    workflow: str
    status: str  # a job state, "pending" or "deleted"
    study_instance_uid: str
    orthanc_study_id: str
    ct_series_instance_uid: str
    structure_set_sop_instance_uid: str
    target_roi: str
    request: dict[str, Any]
    source: str
    requested_by: str
    created_at: str
    deleted_at: str | None
    deleted_by: str | None
    job: PlanJob | None
    results: dict[str, dict[str, Any]]  # "rtplan", "rtdose": {"orthanc_id", "sop_instance_uid", ...}
    qa: dict[str, Any] | None  # target D95/D2/Dmean/V95%, beams, layers, spots, optimiser


class CheckRequest(TypedDict):
    """POST /rt/doses/{dose}/compare: the check's id is its job's id."""

    check_id: str
    job: Job
    links: dict[str, str]


class Check(TypedDict, total=False):
    """GET /rt/checks/{id} (orthanc_rt.records.checks.to_dict); `verdict` None while the check runs."""

    id: str
    job_id: str
    mode: str
    verdict: str | None
    reason: str
    criteria: dict[str, Any]
    pass_rate_percent: float | None
    study_instance_uid: str
    orthanc_study_id: str
    plan_sop_instance_uid: str | None
    reference_sop_instance_uids: list[str]
    evaluated_sop_instance_uids: list[str]
    report_orthanc_id: str | None
    source: str
    requested_by: str
    created_at: str
    high_dose_ratio: float | None
    results: dict[str, Any]
    provenance: dict[str, Any]
    job: dict[str, Any] | None


class Measurement(TypedDict):
    """A row of GET /rt/measurements (orthanc_rt.records.measurements.COLUMNS, and `details`)."""

    id: int
    source: str  # dvh, image, manual, sr
    type: str
    metric: str | None
    value: float
    unit: str | None
    label: str | None
    roi_number: int | None
    roi_name: str | None
    study_instance_uid: str
    series_instance_uid: str | None
    sop_instance_uid: str | None
    frame_number: int | None
    dose_sop_instance_uid: str | None
    dose_series_instance_uid: str | None
    structure_set_sop_instance_uid: str | None
    structure_set_series_instance_uid: str | None
    ct_series_instance_uid: str | None
    job_id: str | None
    sr_instance_uid: str | None
    method: str | None
    created_by: str | None
    created_at: str | None
    updated_at: str | None
    details: dict[str, Any]


class MeasurementPage(Page[Measurement]):
    columns: list[str]
