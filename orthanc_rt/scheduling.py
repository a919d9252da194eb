"""Where job records meet the queue: submit, flush pending triggers, resume, cancel.

A trigger is first written to the database and only then pushed to Redis, so
a Redis outage delays work instead of losing it: `flush_pending` pushes what
was recorded but never enqueued (the plugin calls it periodically and at
start-up; see README, "Reliability").
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError

from orthanc_rt import jobs
from orthanc_rt.jobs import JobStore
from orthanc_rt.models import Job, utcnow
from orthanc_rt.params import DoseParams
from orthanc_rt.queue import Dispatcher
from orthanc_rt.resources import PlanRef

log = logging.getLogger("orthanc_rt.scheduling")


class Scheduler:
    def __init__(self, store: JobStore, dispatcher: Dispatcher):
        self.store = store
        self.dispatcher = dispatcher

    def request_dose(self, plan: PlanRef, params: DoseParams, *, source: str, requested_by: str = "") -> tuple[Job, bool]:
        """One job per (plan, parameters): a second request returns the first job."""
        jid = jobs.job_id("dose", plan.sop_instance_uid, params=params.identity())
        row = Job(
            id=jid, kind="dose", state=jobs.QUEUED, stage="queued", progress=0.0, message="",
            source=source, requested_by=requested_by,
            study_instance_uid=plan.study_instance_uid, orthanc_study_id=plan.orthanc_study_id,
            params=params.as_dict(),
            inputs={"plan": {"orthanc_id": plan.orthanc_id, "sop_instance_uid": plan.sop_instance_uid,
                             "sop_class_uid": plan.sop_class_uid,
                             "series_instance_uid": plan.series_instance_uid}},
            outputs={}, attempts=0,
            wait_deadline=jobs.deadline_after(params.wait_for_ct_seconds),
        )
        job, created = self.store.create(row, actor=requested_by or source)
        if created:
            self.push(job.id, job.kind)
        return job, created

    def push(self, job_id: str, kind: str) -> bool:
        """Enqueue a recorded job once; on a Redis fault it stays pending in the database."""
        if not self.store.mark_enqueued(job_id):
            return False
        try:
            self.dispatcher.enqueue(job_id, kind)
            return True
        except RedisError as exc:
            self.store.unmark_enqueued(job_id)
            log.warning("Redis unavailable, job %s kept pending in the database: %s", job_id, exc)
            return False

    def flush_pending(self) -> int:
        """Enqueue every recorded-but-not-enqueued job; returns how many were pushed."""
        pushed = 0
        for jid in self.store.not_enqueued():
            job = self.store.get(jid)
            if job is not None and self.push(jid, job.kind):
                pushed += 1
        return pushed

    def repush_lost(self, grace_s: float = 120.0) -> list[str]:
        """Queued jobs that Redis no longer knows (Redis restarted empty) are pushed again."""
        cutoff = utcnow() - timedelta(seconds=grace_s)
        lost = [jid for jid in self.store.queued_enqueued_before(cutoff) if not self.dispatcher.knows(jid)]
        for jid in lost:
            log.warning("job %s was enqueued but Redis does not know it any more: pushing it again", jid)
            self.store.unmark_enqueued(jid)
            self.push(jid, "dose")
        return lost

    def resume_waiting(self, orthanc_study_id: str) -> list[str]:
        """Inputs of a study changed: waiting jobs there try again."""
        ids = self.store.requeue_waiting(orthanc_study_id=orthanc_study_id)
        for jid in ids:
            self.push(jid, "dose")
        return ids

    def expire_waiting(self) -> list[str]:
        """Fail jobs whose input did not arrive within their wait; returns their ids."""
        expired = []
        for jid in self.store.expired_waiting():
            job = self.store.get(jid)
            waited_for = job.message if job is not None else ""
            if self.store.transition(jid, jobs.FAILED, from_states=[jobs.WAITING], stage="waiting for input",
                                     message=f"gave up waiting for input: {waited_for}", actor="scheduler"):
                expired.append(jid)
        return expired

    def cancel(self, job_id: str, *, actor: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.state in jobs.FINAL_STATES:
            return {"cancelled": False, "reason": f"job already {job.state}"}
        moved = self.store.transition(job_id, jobs.CANCELLED, from_states=jobs.ACTIVE_STATES,
                                      stage="cancelled", message=f"cancelled by {actor}", actor=actor)
        if not moved:
            return {"cancelled": False, "reason": "job finished meanwhile"}
        try:
            detail = self.dispatcher.cancel(job_id)
        except RedisError as exc:
            detail = f"redis unavailable ({exc}); the worker will see the cancellation when it starts the job"
        return {"cancelled": True, "detail": detail}
