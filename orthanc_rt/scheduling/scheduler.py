"""Where job records meet the queue: submit, flush pending triggers, resume, cancel.

A trigger is first written to the database and only then pushed to Redis, so
a Redis outage delays work instead of losing it: `flush_pending` pushes what
was recorded but never enqueued (the plugin calls it periodically and at
start-up; see docs/reliability-security.md).
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Sequence

from redis.exceptions import RedisError

from orthanc_rt.pacs.resources import InstanceRef
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job, utcnow
from orthanc_rt.scheduling.params import AnalysisParams, CheckParams, DoseParams
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.scheduling.robustness import RobustnessParams

log = logging.getLogger("orthanc_rt.scheduling.scheduler")


class Scheduler:
    def __init__(self, store: JobStore, dispatcher: Dispatcher):
        self.store = store
        self.dispatcher = dispatcher

    def request(self, kind: str, *, identity: Sequence[str], identity_params: dict[str, Any],
                params: dict[str, Any], inputs: dict[str, Any], study: InstanceRef, source: str,
                requested_by: str = "", waiting_for: str | None = None, wait_seconds: float | None = None,
                rerun_finished: bool = False, rerun_failed: bool = False) -> tuple[Job, bool]:
        """Record a job (its id derived from `identity` + `identity_params`), then enqueue it.

        A second request for the same work returns the first job; with
        `rerun_finished` a finished one runs again (its results are replaced,
        e.g. when a dose is re-sent), with `rerun_failed` a failed or
        cancelled one does (a person asking again: the identity of a job must
        not make its failure permanent). With `waiting_for` the job is
        recorded waiting for that input instead of being enqueued.
        """
        jid = jobs.job_id(kind, *identity, params=identity_params)
        state = jobs.WAITING if waiting_for else jobs.QUEUED
        row = Job(
            id=jid, kind=kind, state=state, stage="waiting for input" if waiting_for else "queued", progress=0.0,
            message=waiting_for or "", source=source, requested_by=requested_by,
            study_instance_uid=study.study_instance_uid, orthanc_study_id=study.orthanc_study_id,
            params=params, inputs=inputs, outputs={}, attempts=0,
            wait_deadline=jobs.deadline_after(wait_seconds) if wait_seconds is not None else None,
        )
        job, created = self.store.create(row, actor=requested_by or source)
        if created and not waiting_for:
            self.push(job.id, job.kind)
        elif not created and rerun_finished and job.state in jobs.FINAL_STATES and not waiting_for:
            job = self.rerun(job, actor=requested_by or source, message="input sent again: running again")
        elif not created and rerun_failed and job.state in (jobs.FAILED, jobs.CANCELLED):
            job = self.rerun(job, actor=requested_by or source, message=f"asked again after it {job.state}: "
                                                                        "running again")
        return job, created

    def rerun(self, job: Job, *, actor: str, message: str, from_states: Sequence[str] = jobs.FINAL_STATES) -> Job:
        """Queue a finished job again (its results are replaced); returns the current row."""
        if self.store.transition(job.id, jobs.QUEUED, from_states=from_states, stage="queued", message=message,
                                 actor=actor, enqueued_at=None, finished_at=None, progress=0.0):
            self.push(job.id, job.kind)
        return self.store.get(job.id) or job

    def request_dose(self, plan: InstanceRef, params: DoseParams, *, source: str, requested_by: str = "",
                     rerun_failed: bool = False) -> tuple[Job, bool]:
        """One job per (plan, parameters): a second request returns the first job (runs it again when it failed
        or was cancelled, with `rerun_failed`)."""
        return self.request(
            "dose", identity=[plan.sop_instance_uid], identity_params=params.identity(), params=params.as_dict(),
            inputs={"plan": _input(plan)}, study=plan, source=source, requested_by=requested_by,
            wait_seconds=params.wait_for_ct_seconds, rerun_failed=rerun_failed)

    def request_robustness(self, plan: InstanceRef, params: RobustnessParams, *, source: str,
                           requested_by: str = "", rerun_failed: bool = False,
                           wait_for_ct_seconds: float = 3600) -> tuple[Job, bool]:
        """One robustness evaluation per (plan, scenarios, goals, primaries): a second request returns the first
        job (runs it again when it failed or was cancelled, with `rerun_failed`). A CT still arriving is
        waited for, at most `wait_for_ct_seconds`, as a dose job waits."""
        return self.request(
            "robustness", identity=[plan.sop_instance_uid], identity_params=params.identity(),
            params=params.as_dict(), inputs={"plan": _input(plan)}, study=plan, source=source,
            requested_by=requested_by, rerun_failed=rerun_failed, wait_seconds=wait_for_ct_seconds)

    def request_analysis(self, dose: InstanceRef, structure_set: InstanceRef | None, params: AnalysisParams, *,
                         frame_of_reference_uid: str, source: str, requested_by: str = "") -> tuple[Job, bool]:
        """One job per (RTDOSE, RTSTRUCT, settings); without a structure set, one job waiting for it."""
        inputs: dict[str, Any] = {"dose": {**_input(dose), "frame_of_reference_uid": frame_of_reference_uid}}
        if structure_set is not None:
            inputs["structure_set"] = _input(structure_set)
        return self.request(
            "analysis", identity=[dose.sop_instance_uid, structure_set.sop_instance_uid if structure_set else ""],
            identity_params=params.as_dict(), params=params.as_dict(), inputs=inputs, study=dose, source=source,
            requested_by=requested_by, rerun_finished=True,
            waiting_for=None if structure_set else
            f"waiting for an RTSTRUCT with FrameOfReferenceUID {frame_of_reference_uid}")

    def request_check(self, plan: InstanceRef, params: CheckParams, recompute: DoseParams, *, source: str,
                      requested_by: str = "", wait_seconds: float = 3600,
                      rerun_failed: bool = False) -> tuple[Job, bool]:
        """Recompute a plan (its dose job, shared with the automatic dose when the parameters agree) and
        compare the recompute with the other system's doses of the plan: one check per (plan, parameters).

        The check waits while its recompute runs; the recompute's RTDOSE arriving wakes it (triggers).
        """
        dose_job, _ = self.request_dose(plan, recompute, source=source, requested_by=requested_by,
                                        rerun_failed=rerun_failed)
        waiting = None if dose_job.state == jobs.SUCCEEDED else f"waiting for the recompute (job {dose_job.id})"
        job, created = self.request(
            "check", identity=[plan.sop_instance_uid, "recompute"],
            identity_params={**params.as_dict(), "recompute": recompute.identity()}, params=params.as_dict(),
            inputs={"plan": _input(plan), "recompute_job": dose_job.id}, study=plan, source=source,
            requested_by=requested_by, waiting_for=waiting, wait_seconds=wait_seconds)
        if not created and rerun_failed and job.state in (jobs.FAILED, jobs.CANCELLED):
            # Asked again: it waits for its recompute again (running again itself, if that had failed).
            moved = self.store.transition(job.id, jobs.WAITING if waiting else jobs.QUEUED, from_states=[job.state],
                                          stage="waiting for input" if waiting else "queued",
                                          message=waiting or "asked again: checking again", actor=requested_by,
                                          enqueued_at=None, finished_at=None, progress=0.0,
                                          wait_deadline=jobs.deadline_after(wait_seconds))
            if moved and not waiting:
                self.push(job.id, "check")
            job = self.store.get(job.id) or job
        return job, created

    def request_comparison(self, reference: InstanceRef, evaluated: InstanceRef, params: CheckParams, *,
                           source: str, requested_by: str = "", rerun_failed: bool = False) -> tuple[Job, bool]:
        """Compare two stored RTDOSEs (a recompute, two versions of a plan, a scenario and the nominal)."""
        return self.request(
            "check", identity=[reference.sop_instance_uid, evaluated.sop_instance_uid],
            identity_params=params.as_dict(), params=params.as_dict(),
            inputs={"reference": _input(reference), "evaluated": _input(evaluated)}, study=reference,
            source=source, requested_by=requested_by, rerun_failed=rerun_failed)

    def rerun_after_outages(self, max_attempts: int = jobs.MAX_ATTEMPTS_AFTER_OUTAGES) -> list[str]:
        """Jobs that failed because Orthanc, the database or their worker was gone run again (the plugin calls
        this while it runs, so Orthanc is back); after `max_attempts` starts a job stays failed."""
        rerun = []
        for jid in self.store.failed_by_outages(max_attempts):
            job = self.store.get(jid)
            if job is None:
                continue
            again = self.rerun(job, actor="scheduler", from_states=[jobs.FAILED],
                               message=f"running again after an outage ({job.message})"[:500])
            if again.state == jobs.QUEUED:
                rerun.append(jid)
        return rerun

    def resume_checks_of_finished_recomputes(self) -> list[str]:
        """Waiting checks whose recompute has finished run now: to compare, or to fail with its reason. The
        recompute's RTDOSE arriving wakes them first (triggers), but a check woken in the moment between the
        RTDOSE stored and its job marked succeeded (another worker took it) would otherwise wait for nothing."""
        resumed = []
        for jid in self.store.ids_in_states([jobs.WAITING], kind="check"):
            check = self.store.get(jid)
            recompute = self.store.get(check.inputs.get("recompute_job", "")) if check is not None else None
            if recompute is not None and recompute.state in jobs.FINAL_STATES:
                for moved in self.store.requeue_waiting(job_ids=[jid], kind="check"):
                    self.push(moved, "check")
                    resumed.append(moved)
        return resumed

    def request_sr_import(self, sr: InstanceRef, *, source: str, requested_by: str = "") -> tuple[Job, bool]:
        return self.request("sr", identity=[sr.sop_instance_uid], identity_params={}, params={},
                            inputs={"sr": _input(sr)}, study=sr, source=source, requested_by=requested_by,
                            rerun_finished=True)

    def close_waiting_analysis(self, dose_sop_instance_uid: str, analysed_by: Sequence[str]) -> list[str]:
        """A dose that waited for a structure set now has its pair jobs: close its wait, naming them."""
        closed = []
        for jid in self.store.ids_in_states([jobs.WAITING], kind="analysis"):
            job = self.store.get(jid)
            if job is None or job.inputs.get("dose", {}).get("sop_instance_uid") != dose_sop_instance_uid:
                continue
            if self.store.transition(jid, jobs.SUCCEEDED, from_states=[jobs.WAITING], stage="done",
                                     message="analysed with the structure set that arrived: "
                                             + ", ".join(analysed_by),
                                     actor="scheduler", progress=1.0, outputs={"analysed_by": list(analysed_by)}):
                closed.append(jid)
        return closed

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
        """Jobs no worker will run are pushed again: queued ones that Redis no longer knows (it restarted empty),
        and running ones that RQ no longer runs (Redis restarted empty under them, or their worker's failure
        handling could not reach the database). Returns their ids."""
        cutoff = utcnow() - timedelta(seconds=grace_s)
        lost = [jid for jid in self.store.queued_enqueued_before(cutoff) if not self.dispatcher.knows(jid)]
        for jid in lost:
            job = self.store.get(jid)
            if job is None:
                continue
            log.warning("job %s was enqueued but Redis does not know it any more: pushing it again", jid)
            self.store.unmark_enqueued(jid)
            self.push(jid, job.kind)
        for jid in self.store.running_updated_before(cutoff):
            job = self.store.get(jid)
            if job is None or self.dispatcher.runs(jid):
                continue
            if job.attempts >= jobs.MAX_ATTEMPTS_AFTER_OUTAGES:  # lost every time: stop, say so
                self.store.transition(jid, jobs.FAILED, from_states=[jobs.RUNNING], stage=jobs.TRANSIENT_FAILURE,
                                      message=f"no worker ran it to its end in {job.attempts} starts",
                                      actor="scheduler")
                continue
            if self.store.transition(jid, jobs.QUEUED, from_states=[jobs.RUNNING], stage="queued",
                                     message="no worker runs it any more (Redis lost it, or its end could not be "
                                             "recorded): queued again", actor="scheduler"):
                log.warning("job %s is running in the database but RQ no longer runs it: pushing it again", jid)
                self.store.unmark_enqueued(jid)
                self.push(jid, job.kind)
                lost.append(jid)
        return lost

    def resume_waiting(self, orthanc_study_id: str, kind: str = "dose") -> list[str]:
        """Inputs of a study changed: waiting jobs of `kind` there try again."""
        ids = self.store.requeue_waiting(orthanc_study_id=orthanc_study_id, kind=kind)
        for jid in ids:
            self.push(jid, kind)
        return ids

    def expire_waiting(self) -> list[str]:
        """Fail jobs whose input did not arrive within their wait; returns their ids."""
        expired = []
        for jid in self.store.expired_waiting():
            job = self.store.get(jid)
            waited_for = job.message if job is not None else ""
            if self.store.transition(jid, jobs.FAILED, from_states=[jobs.WAITING], stage=jobs.WAITED_FOR_INPUT,
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


def _input(ref: InstanceRef) -> dict[str, str]:
    return {"orthanc_id": ref.orthanc_id, "sop_instance_uid": ref.sop_instance_uid,
            "sop_class_uid": ref.sop_class_uid, "series_instance_uid": ref.series_instance_uid}
