"""Job records in the database: identity, states, history and progress.

A job's id is derived from what it computes, so asking twice for the same
work finds the same row. State changes are conditional updates, which keeps
concurrent writers (plugin, several workers, a cancelling user) from
overwriting each other: a cancelled job stays cancelled.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from orthanc_rt.records import audit, durations
from orthanc_rt.records.db import aware, paged, read_scope, session_scope
from orthanc_rt.records.durations import stage_name
from orthanc_rt.records.tables import Job, JobEvent, utcnow

QUEUED = "queued"
WAITING = "waiting-for-input"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, WAITING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)
# The stage of a job that failed for want of Orthanc, the database or a living worker, not for its inputs:
# the scheduler runs it again (a bounded number of times) once Orthanc-RT is running again.
TRANSIENT_FAILURE = "failed: outage"
# Starts of one job (RQ's retries included) after which an outage no longer runs it again: a job whose worker
# dies every time (out of memory) must stop somewhere. RQ retries 3 times per enqueue, so this is two rounds.
MAX_ATTEMPTS_AFTER_OUTAGES = 8
# The stages the workers give a failed job so that why it failed can be counted without reading its message
# (`failure_class`): its inputs (DICOM or a plan request), the dose engine, or the time limit. What the job was
# doing when it failed stays in its history and its message.
INPUT_FAILURE = "failed: input"
ENGINE_FAILURE = "failed: engine"
TIMEOUT_FAILURE = "failed: timeout"
# The stage of a job whose input never arrived (Scheduler.expire_waiting).
WAITED_FOR_INPUT = "waiting for input"
ACTIVE_STATES = (QUEUED, WAITING, RUNNING)
# Why a job ended without a result, as /rt/metrics counts it: a small fixed set, whatever the messages say.
FAILURE_CLASSES = ("outage", "input", "engine", "timeout", "cancelled", "other")


def job_id(kind: str, *inputs: str, params: dict[str, Any] | None = None) -> str:
    """Deterministic id: same inputs (DICOM UIDs) and parameters, same job."""
    canonical = json.dumps({"kind": kind, "inputs": list(inputs), "params": params or {}}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"


def actor_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class JobQuery:
    state: str | None = None
    kind: str | None = None
    study: str | None = None  # StudyInstanceUID or Orthanc study id
    limit: int = 50
    offset: int = 0


class JobStore:
    """All reads and writes of job rows go through here."""

    def __init__(self, database_url: str):
        self.url = database_url

    # -- creation ---------------------------------------------------------
    def create(self, job: Job, *, actor: str = "") -> tuple[Job, bool]:
        """Insert `job` unless a row with its id exists; returns (row, created)."""
        try:
            with session_scope(self.url) as s:
                job.events.append(JobEvent(state=job.state, stage=job.stage, message="requested", actor=actor))
                s.add(job)
                s.flush()  # a duplicate id fails here, before anything is audited
                audit.record(s, actor, audit.JOB_REQUESTED, job.id, None,
                             {"state": job.state, "kind": job.kind, "source": job.source, "params": job.params,
                              "inputs": job.inputs})
            return job, True
        except IntegrityError:
            existing = self.get(job.id)
            if existing is None:  # deleted between the two statements: rare, let the caller retry
                raise
            return existing, False

    # -- reads ------------------------------------------------------------
    def get(self, job_id_: str, *, with_events: bool = False) -> Job | None:
        with session_scope(self.url) as s:
            job = s.get(Job, job_id_)
            if job is not None and with_events:
                _ = list(job.events)
            return job

    def list(self, query: JobQuery) -> tuple[list[Job], int]:
        stmt = select(Job)
        if query.state:
            stmt = stmt.where(Job.state == query.state)
        if query.kind:
            stmt = stmt.where(Job.kind == query.kind)
        if query.study:
            stmt = stmt.where((Job.study_instance_uid == query.study) | (Job.orthanc_study_id == query.study))
        with read_scope(self.url) as s:
            return paged(s, stmt, (Job.created_at.desc(), Job.id.desc()), query.limit, query.offset)

    def ids_in_states(self, states: Sequence[str], *, kind: str | None = None) -> list[str]:
        stmt = select(Job.id).where(Job.state.in_(states))
        if kind:
            stmt = stmt.where(Job.kind == kind)
        with session_scope(self.url) as s:
            return list(s.scalars(stmt.order_by(Job.created_at)))

    def not_enqueued(self) -> list[str]:
        """Queued jobs whose trigger is recorded but never reached Redis."""
        with session_scope(self.url) as s:
            stmt = select(Job.id).where(Job.state == QUEUED, Job.enqueued_at.is_(None)).order_by(Job.created_at)
            return list(s.scalars(stmt))

    def queued_enqueued_before(self, cutoff: datetime) -> list[str]:
        """Queued jobs pushed to Redis before `cutoff` (candidates for a Redis that lost them)."""
        with session_scope(self.url) as s:
            stmt = select(Job.id, Job.enqueued_at).where(Job.state == QUEUED, Job.enqueued_at.is_not(None))
            return [i for i, at in s.execute(stmt) if aware(at) < cutoff]

    def running_updated_before(self, cutoff: datetime) -> list[str]:
        """Running jobs whose row has not changed since `cutoff` (candidates for a job no worker runs any more)."""
        with session_scope(self.url) as s:
            stmt = select(Job.id, Job.updated_at).where(Job.state == RUNNING)
            return [i for i, at in s.execute(stmt) if aware(at) < cutoff]

    def counts_by_state(self) -> dict[str, int]:
        with session_scope(self.url) as s:
            return {state: n for state, n in s.execute(select(Job.state, func.count()).group_by(Job.state))}

    # -- reads for /rt/metrics (orthanc_rt.ops.metrics): aggregates, never patient data ---------------
    def counts_by_kind_and_state(self) -> dict[tuple[str, str], int]:
        with read_scope(self.url) as s:
            rows = s.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
            return {(kind, state): n for kind, state, n in rows}

    def failure_counts(self) -> dict[tuple[str, str], int]:
        """(kind, failure_class) -> jobs failed or cancelled; grouped in the database by what the class reads
        (the start of the message is all `failure_class` looks at)."""
        head = func.substr(Job.message, 1, 40)
        stmt = (select(Job.kind, Job.state, Job.stage, head, func.count())
                .where(Job.state.in_([FAILED, CANCELLED])).group_by(Job.kind, Job.state, Job.stage, head))
        counts: dict[tuple[str, str], int] = {}
        with read_scope(self.url) as s:
            for kind, state, stage, message, n in s.execute(stmt):
                key = (kind, failure_class(state, stage, message or ""))
                counts[key] = counts.get(key, 0) + n
        return counts

    def recent_runs(self, kind: str, limit: int) -> list[tuple[dict[str, Any], float]]:
        """(params, seconds run) of the `limit` jobs of `kind` that succeeded last."""
        stmt = (select(Job.params, Job.started_at, Job.finished_at)
                .where(Job.kind == kind, Job.state == SUCCEEDED, Job.started_at.is_not(None),
                       Job.finished_at.is_not(None))
                .order_by(Job.finished_at.desc()).limit(limit))
        with read_scope(self.url) as s:
            return [(params or {}, max(0.0, (aware(end) - aware(start)).total_seconds()))
                    for params, start, end in s.execute(stmt)]

    def oldest_queued(self) -> dict[str, datetime]:
        """Kind -> when its longest-waiting queued job (last) entered the queue (its newest `queued` event: a
        retried job waits again from its retry, not from its creation)."""
        entered = (select(JobEvent.job_id, func.max(JobEvent.at).label("at"))
                   .where(JobEvent.state == QUEUED).group_by(JobEvent.job_id).subquery())
        stmt = (select(Job.kind, func.min(func.coalesce(entered.c.at, Job.created_at)))
                .join(entered, entered.c.job_id == Job.id, isouter=True)
                .where(Job.state == QUEUED).group_by(Job.kind))
        with read_scope(self.url) as s:
            return {kind: aware(at) for kind, at in s.execute(stmt) if at is not None}

    # -- state changes ----------------------------------------------------
    def transition(
        self,
        job_id_: str,
        state: str,
        *,
        from_states: Iterable[str] | None = None,
        stage: str | None = None,
        message: str | None = None,
        actor: str = "",
        **fields: Any,
    ) -> bool:
        """Move a job to `state` if it is in one of `from_states`; True if it moved."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        values: dict[str, Any] = {"state": state, "updated_at": utcnow(), **fields}
        if stage is not None:
            values["stage"] = stage
        if message is not None:
            values["message"] = message
        if state in FINAL_STATES:
            values.setdefault("finished_at", utcnow())
            values.setdefault("eta_seconds", None)
        stmt = update(Job).where(Job.id == job_id_)
        if from_states is not None:
            stmt = stmt.where(Job.state.in_(list(from_states)))
        with session_scope(self.url) as s:
            before = _locked_state(s, job_id_)
            moved = s.execute(stmt.values(**values)).rowcount == 1
            if moved:
                kind, started = s.execute(select(Job.kind, Job.started_at).where(Job.id == job_id_)).one()
                durations.stage_ended(s, job_id_, kind, values["updated_at"])
                if state in FINAL_STATES:
                    durations.job_ended(s, kind, state, started, values["finished_at"])
                s.add(JobEvent(job_id=job_id_, at=values["updated_at"], state=state, stage=stage or "",
                               message=message or "", actor=actor))
                after: dict[str, Any] = {"state": state, "message": message or ""}
                if fields.get("outputs"):
                    after["outputs"] = fields["outputs"]
                audit.record(s, actor, audit.JOB_PREFIX + state, job_id_, {"state": before}, after)
            return moved

    def start(self, job_id_: str, *, actor: str) -> bool:
        """A worker takes the job (from queued; also from running when a dead worker's job is retried)."""
        now = utcnow()
        with session_scope(self.url) as s:
            before = _locked_state(s, job_id_)
            stmt = (
                update(Job)
                .where(Job.id == job_id_, Job.state.in_([QUEUED, RUNNING]))
                .values(state=RUNNING, started_at=now, updated_at=now, attempts=Job.attempts + 1,
                        stage="starting", progress=0.0, message="")
            )
            moved = s.execute(stmt).rowcount == 1
            if moved:
                attempt, kind = s.execute(select(Job.attempts, Job.kind).where(Job.id == job_id_)).one()
                durations.stage_ended(s, job_id_, kind, now)  # a dead worker's stage, when retried from running
                s.add(JobEvent(job_id=job_id_, at=now, state=RUNNING, stage="starting",
                               message=f"attempt {attempt}", actor=actor))
                audit.record(s, actor, audit.JOB_PREFIX + "started", job_id_, {"state": before},
                             {"state": RUNNING, "attempt": attempt})
            return moved

    def progress(self, job_id_: str, *, stage: str, fraction: float, eta_seconds: float | None) -> None:
        """A running job's progress. Entering a new stage (the text before a ':', which may add a detail such as
        a part count) is also an event of its history, and ends the stage before it (`durations`)."""
        now = utcnow()
        with session_scope(self.url) as s:
            row = s.execute(select(Job.stage, Job.kind).where(Job.id == job_id_, Job.state == RUNNING)).first()
            if row is None:
                return
            current, kind = row
            s.execute(
                update(Job)
                .where(Job.id == job_id_, Job.state == RUNNING)
                .values(stage=stage, progress=max(0.0, min(1.0, fraction)), eta_seconds=eta_seconds,
                        updated_at=now)
            )
            if stage_name(stage) != stage_name(current):
                durations.stage_ended(s, job_id_, kind, now)
                s.add(JobEvent(job_id=job_id_, at=now, state=RUNNING, stage=stage_name(stage)[:64],
                               actor=actor_name()))

    def mark_enqueued(self, job_id_: str) -> bool:
        """Claim the right to push the job to Redis (exactly one caller wins)."""
        with session_scope(self.url) as s:
            stmt = update(Job).where(Job.id == job_id_, Job.enqueued_at.is_(None), Job.state == QUEUED)
            return s.execute(stmt.values(enqueued_at=utcnow())).rowcount == 1

    def unmark_enqueued(self, job_id_: str) -> None:
        with session_scope(self.url) as s:
            s.execute(update(Job).where(Job.id == job_id_).values(enqueued_at=None))

    def requeue_waiting(self, *, orthanc_study_id: str | None = None, job_ids: Sequence[str] = (),
                        kind: str | None = None) -> list[str]:
        """Waiting jobs (of a study, of a kind) go back to queued (not yet enqueued); returns their ids."""
        with session_scope(self.url) as s:
            stmt = select(Job.id).where(Job.state == WAITING)
            if kind is not None:
                stmt = stmt.where(Job.kind == kind)
            if orthanc_study_id is not None:
                stmt = stmt.where(Job.orthanc_study_id == orthanc_study_id)
            if job_ids:
                stmt = stmt.where(Job.id.in_(list(job_ids)))
            ids = list(s.scalars(stmt))
        return [i for i in ids if self.transition(i, QUEUED, from_states=[WAITING], stage="input arrived",
                                                  message="an input series became complete", enqueued_at=None,
                                                  actor="scheduler")]

    def failed_by_outages(self, max_attempts: int) -> list[str]:
        """Jobs failed by an outage (stage TRANSIENT_FAILURE) that started fewer than `max_attempts` times."""
        with read_scope(self.url) as s:
            return list(s.scalars(select(Job.id).where(Job.state == FAILED, Job.stage == TRANSIENT_FAILURE,
                                                       Job.attempts < max_attempts).order_by(Job.created_at)))

    def ids_of_study(self, study_instance_uid: str, kinds: Sequence[str]) -> list[str]:
        """Ids of the jobs of `kinds` that ran on a study (by StudyInstanceUID)."""
        with read_scope(self.url) as s:
            return list(s.scalars(select(Job.id).where(Job.study_instance_uid == study_instance_uid,
                                                       Job.kind.in_(list(kinds)))))

    def expired_waiting(self, now: datetime | None = None) -> list[str]:
        now = now or utcnow()
        with session_scope(self.url) as s:
            rows = s.execute(select(Job.id, Job.wait_deadline).where(Job.state == WAITING)).all()
        return [i for i, deadline in rows if deadline is not None and aware(deadline) <= now]


def _locked_state(s: Any, job_id_: str) -> str | None:
    """The job's state, row-locked on PostgreSQL so the audited "before" is the one we change."""
    return s.scalar(select(Job.state).where(Job.id == job_id_).with_for_update())


def failure_class(state: str, stage: str, message: str) -> str | None:
    """Why a job ended without a result, one of FAILURE_CLASSES; None for a job that has not (yet) failed.

    The stage markers the workers write decide; the messages are read only for jobs failed before those
    markers existed (the time limit's and a given-up wait's messages have always begun the same way).
    """
    if state == CANCELLED:
        return "cancelled"
    if state != FAILED:
        return None
    message = message or ""
    if stage == TRANSIENT_FAILURE:
        return "outage"
    if stage == TIMEOUT_FAILURE or message.startswith("time limit of"):
        return "timeout"
    if stage == ENGINE_FAILURE:
        return "engine"
    if stage in (INPUT_FAILURE, WAITED_FOR_INPUT) or message.startswith("gave up waiting for input"):
        return "input"
    return "other"


def to_dict(job: Job, *, events: bool = False) -> dict[str, Any]:
    """The public JSON form of a job (REST answers, CLI output)."""
    out: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "stage": job.stage,
        "progress": round(job.progress or 0.0, 4),
        "eta_seconds": None if job.eta_seconds is None else round(job.eta_seconds, 1),
        "message": job.message,
        "source": job.source,
        "requested_by": job.requested_by,
        "study_instance_uid": job.study_instance_uid,
        "orthanc_study_id": job.orthanc_study_id,
        "params": job.params,
        "inputs": job.inputs,
        "outputs": job.outputs,
        "attempts": job.attempts,
    }
    for name in ("created_at", "updated_at", "enqueued_at", "started_at", "finished_at", "wait_deadline"):
        value = getattr(job, name)
        out[name] = aware(value).isoformat() if value else None
    if events:
        out["events"] = [
            {"at": aware(e.at).isoformat(), "state": e.state, "stage": e.stage, "message": e.message,
             "actor": e.actor}
            for e in job.events
        ]
    return out


def deadline_after(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
