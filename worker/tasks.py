"""Every function RQ calls lives here. RQ stores each one's path (orthanc_rt.scheduling.queue's RUN_JOB,
ON_FAILURE, RUN_PART, RUN_SCENARIO) with the job, so these names and this module's path must not change.

`run_job` runs a database job by its kind's runner (orthanc_rt.scheduling.kinds); `run_part` one part of a plan's
beamlet fan-out (worker.engines.beamlet_fanout); `on_failure` records what RQ's failures mean for the job.
The work itself is imported only when it runs: a runner may import OpenTPS, which only its kind needs (the
worker preloads the heavy ones before it forks).
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.scheduling import kinds
from orthanc_rt.settings import Settings

if TYPE_CHECKING:
    from orthanc_rt.dicom.models import IonPlan

log = logging.getLogger("orthanc_rt.worker")


def run_job(job_id: str) -> dict[str, Any]:
    """The RQ job of a database job: its row holds everything else."""
    settings = Settings.from_env()
    store = JobStore(settings.database_url)
    job = store.get(job_id)
    if job is None:
        return {"skipped": f"no job {job_id} in the database"}
    kind = kinds.BY_NAME.get(job.kind)
    if kind is None:
        store.transition(job_id, jobs.FAILED, from_states=jobs.ACTIVE_STATES,
                         message=f"no worker function for job kind {job.kind!r}", actor=jobs.actor_name())
        return {"failed": f"unknown kind {job.kind}"}
    return importlib.import_module(kind.runner).run(job_id, settings, store)


def run_part(fanout_id: str, index: int, part: IonPlan) -> dict[str, Any]:
    """The RQ job of one beamlet part, enqueued by a plan job's fan-out; any worker may take it."""
    from worker.engines import beamlet_fanout

    return beamlet_fanout.compute_part(fanout_id, index, part)


def run_scenario(fanout_id: str, index: int, payload: tuple) -> dict[str, Any]:
    """The RQ job of one error scenario of a robustness evaluation (worker.engines.scenario_fanout)."""
    from worker.engines import scenario_fanout

    return scenario_fanout.compute_scenario(fanout_id, index, payload)


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
        # An outage outlasting RQ's retries (Orthanc restarted for maintenance, the database down) or workers that
        # keep dying: the inputs are fine, so the plugin runs the job again when it is back (Scheduler).
        stage = jobs.TRANSIENT_FAILURE if _worth_retrying(exc_type) else jobs.TIMEOUT_FAILURE
        store.transition(job_id, jobs.FAILED, from_states=jobs.ACTIVE_STATES, stage=stage, message=reason,
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
