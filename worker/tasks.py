"""The functions RQ runs. Each takes a job id; the job's row holds everything else."""
from __future__ import annotations

import logging
from typing import Any

from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.settings import Settings

log = logging.getLogger("orthanc_rt.worker")


def run_job(job_id: str) -> dict[str, Any]:
    settings = Settings.from_env()
    store = JobStore(settings.database_url)
    job = store.get(job_id)
    if job is None:
        return {"skipped": f"no job {job_id} in the database"}
    if job.kind == "dose":
        from worker.jobs import (
            dose as dose_job,  # imports OpenTPS: only where it is needed
        )

        return dose_job.run(job_id, settings, store)
    if job.kind == "analysis":
        from worker.jobs import analysis as analysis_job

        return analysis_job.run(job_id, settings, store)
    if job.kind == "plan":
        from worker.jobs import plan as plan_job

        return plan_job.run(job_id, settings, store)
    if job.kind == "sr":
        from worker.jobs import sr as sr_job

        return sr_job.run(job_id, settings, store)
    store.transition(job_id, jobs.FAILED, from_states=jobs.ACTIVE_STATES,
                     message=f"no worker function for job kind {job.kind!r}", actor=jobs.actor_name())
    return {"failed": f"unknown kind {job.kind}"}


def on_failure(rq_job: Any, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ calls this when run_job raised (transient faults, time limit, killed worker)."""
    job_id = rq_job.args[0] if rq_job.args else rq_job.id
    store = JobStore(Settings.from_env().database_url)
    if not _worth_retrying(exc_type):
        # RQ decides on its Retry after this callback, from this very object: a job that ran out of
        # time would only run out of time again (3 more times the limit of CPU).
        rq_job.retries_left = 0
    retrying = bool(rq_job.retries_left)
    reason = _reason(exc_type, exc_value, rq_job)
    if retrying:
        store.transition(job_id, jobs.QUEUED, from_states=[jobs.RUNNING, jobs.QUEUED], stage="retry scheduled",
                         message=f"{reason}; retrying ({rq_job.retries_left} attempts left)",
                         actor=jobs.actor_name())
    else:
        store.transition(job_id, jobs.FAILED, from_states=jobs.ACTIVE_STATES, message=reason,
                         actor=jobs.actor_name())


def _worth_retrying(exc_type: type) -> bool:
    """Transient faults (Orthanc or the database unreachable) and a killed worker; not the time limit."""
    from rq.timeouts import JobTimeoutException

    return not issubclass(exc_type, JobTimeoutException)


def _reason(exc_type: type, exc_value: BaseException, rq_job: Any) -> str:
    from rq.exceptions import AbandonedJobError
    from rq.timeouts import JobTimeoutException

    if issubclass(exc_type, JobTimeoutException):
        return f"time limit of {rq_job.timeout} s exceeded; MCsquare was stopped"
    if issubclass(exc_type, AbandonedJobError):
        return "the worker running the job died (killed or lost) before it finished"
    return f"{exc_type.__name__}: {exc_value}"
