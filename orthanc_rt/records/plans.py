"""Plan records: what was asked, by whom, for which study, and the job that makes it.

A plan's id is derived from its inputs and request (and, for automatic
plans, the rule), so the same request on the same structure set finds the
same plan: automatic planning runs once per structure set, and a client
that retries a POST does not start a second optimisation. The plan's job
(kind "plan") carries state, progress and results; `to_dict` joins the two.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from orthanc_rt.records import audit, jobs
from orthanc_rt.records.db import aware, paged, read_scope, session_scope
from orthanc_rt.records.tables import Job, Plan, utcnow

DELETED = "deleted"
PENDING = "pending"  # recorded, its job not (yet) recorded: the scheduler retries on the next request
STATUSES = (*jobs.STATES, DELETED, PENDING)
PLAN_DELETED = "plan.deleted"


def plan_id(*, workflow: str, structure_set_uid: str, ct_series_uid: str, request: dict[str, Any],
            rule: str = "") -> str:
    canonical = json.dumps({"workflow": workflow, "structure_set": structure_set_uid, "ct": ct_series_uid,
                            "request": request, "rule": rule}, sort_keys=True)
    return f"plan-{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"


@dataclass(frozen=True)
class PlanQuery:
    study: str | None = None  # StudyInstanceUID or Orthanc study id
    status: str | None = None  # a job state, "deleted" or "pending"
    workflow: str | None = None
    limit: int = 50
    offset: int = 0


class PlanStore:
    def __init__(self, database_url: str):
        self.url = database_url

    def record(self, plan: Plan, *, actor: str) -> tuple[Plan, bool]:
        """Insert `plan` unless its id exists; returns (row, created). A deleted plan asked for again revives."""
        try:
            with session_scope(self.url) as s:
                s.add(plan)
                s.flush()
            return plan, True
        except IntegrityError:
            with session_scope(self.url) as s:
                s.execute(update(Plan).where(Plan.id == plan.id, Plan.deleted_at.is_not(None))
                          .values(deleted_at=None, deleted_by=""))
            existing = self.get(plan.id)
            if existing is None:
                raise
            return existing, False

    def get(self, plan_id_: str) -> Plan | None:
        with session_scope(self.url) as s:
            return s.get(Plan, plan_id_)

    def with_job(self, plan_id_: str) -> tuple[Plan, Job | None] | None:
        with session_scope(self.url) as s:
            plan = s.get(Plan, plan_id_)
            return None if plan is None else (plan, s.get(Job, plan.job_id))

    def list(self, query: PlanQuery) -> tuple[list[tuple[Plan, Job | None]], int]:
        stmt = select(Plan, Job).outerjoin(Job, Job.id == Plan.job_id)
        if query.study:
            stmt = stmt.where((Plan.study_instance_uid == query.study) | (Plan.orthanc_study_id == query.study))
        if query.workflow:
            stmt = stmt.where(Plan.workflow == query.workflow)
        if query.status == DELETED:
            stmt = stmt.where(Plan.deleted_at.is_not(None))
        elif query.status == PENDING:
            stmt = stmt.where(Plan.deleted_at.is_(None), Job.id.is_(None))
        elif query.status:
            stmt = stmt.where(Plan.deleted_at.is_(None), Job.state == query.status)
        with read_scope(self.url) as s:
            return paged(s, stmt, (Plan.created_at.desc(), Plan.id), query.limit, query.offset)

    def mark_deleted(self, plan_id_: str, *, actor: str, detail: dict[str, Any]) -> bool:
        with session_scope(self.url) as s:
            moved = s.execute(update(Plan).where(Plan.id == plan_id_, Plan.deleted_at.is_(None))
                              .values(deleted_at=utcnow(), deleted_by=actor[:128])).rowcount == 1
            if moved:
                audit.record(s, actor, PLAN_DELETED, plan_id_, None, detail)
            return moved


def status_of(plan: Plan, job: Job | None) -> str:
    if plan.deleted_at is not None:
        return DELETED
    return job.state if job is not None else PENDING


def to_dict(plan: Plan, job: Job | None) -> dict[str, Any]:
    """The public JSON form of a plan (REST answers)."""
    outputs = job.outputs if job is not None else {}
    return {
        "id": plan.id,
        "workflow": plan.workflow,
        "status": status_of(plan, job),
        "study_instance_uid": plan.study_instance_uid,
        "orthanc_study_id": plan.orthanc_study_id,
        "ct_series_instance_uid": plan.ct_series_instance_uid,
        "structure_set_sop_instance_uid": plan.structure_set_sop_instance_uid,
        "target_roi": plan.target_roi,
        "request": plan.request,
        "source": plan.source,
        "requested_by": plan.requested_by,
        "created_at": aware(plan.created_at).isoformat(),
        "deleted_at": aware(plan.deleted_at).isoformat() if plan.deleted_at else None,
        "deleted_by": plan.deleted_by or None,
        "job": None if job is None else {
            "id": job.id, "state": job.state, "stage": job.stage, "progress": round(job.progress or 0.0, 4),
            "eta_seconds": None if job.eta_seconds is None else round(job.eta_seconds, 1),
            "message": job.message, "attempts": job.attempts},
        "results": {name: outputs[name] for name in ("rtplan", "rtdose") if name in outputs},
        "qa": outputs.get("qa"),
    }
