"""The frame every job kind runs in: start, compute, record the outcome.

Input problems (and the kind's own final errors) fail the job with a
readable reason; an input that has not arrived puts it back to waiting; a
job cancelled meanwhile ends quietly; transient faults (Orthanc, database)
are raised so RQ retries with back-off; anything else is a bug and fails the
job readably, without a retry.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from rq.timeouts import JobTimeoutException
from sqlalchemy.exc import OperationalError

from orthanc_rt.errors import DicomInputError, DoseEngineError, InputNotReady, OrthancUnavailable, PhotonEngineError
from orthanc_rt.pacs.client import HttpOrthanc, OrthancApi
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job
from orthanc_rt.settings import Settings

log = logging.getLogger("orthanc_rt.worker")
TRANSIENT = (OrthancUnavailable, OperationalError)

Compute = Callable[[Job, OrthancApi, Settings, JobStore], dict[str, Any]]


class Cancelled(Exception):
    """The job was cancelled while it ran: nothing more is recorded."""


def run(job_id: str, settings: Settings, store: JobStore, compute: Compute, *,
        final_errors: Sequence[type[BaseException]] = (), cleanup: Callable[[], None] | None = None
        ) -> dict[str, Any]:
    actor = jobs.actor_name()
    if not store.start(job_id, actor=actor):
        job = store.get(job_id)
        return {"skipped": f"job is {job.state if job else 'gone'}"}
    job = store.get(job_id)
    api = HttpOrthanc(settings.orthanc_url, settings.orthanc_username, settings.orthanc_password)
    try:
        outputs = compute(job, api, settings, store)
    except InputNotReady as exc:
        store.transition(job_id, jobs.WAITING, from_states=[jobs.RUNNING], stage="waiting for input",
                         message=str(exc), actor=actor)
        return {"waiting": str(exc)}
    except (DicomInputError, *final_errors) as exc:
        # The stage says whose fault it was (the engine's or the inputs'), for /rt/metrics' failure classes.
        stage = jobs.ENGINE_FAILURE if isinstance(exc, (DoseEngineError, PhotonEngineError)) else jobs.INPUT_FAILURE
        store.transition(job_id, jobs.FAILED, from_states=[jobs.RUNNING], stage=stage, message=str(exc),
                         actor=actor)
        return {"failed": str(exc)}
    except Cancelled:
        return {"cancelled": True}
    except TRANSIENT:
        raise  # RQ retries with back-off; tasks.on_failure records it
    except JobTimeoutException:
        raise  # the time limit: tasks.on_failure fails the job with that reason, without retrying
    except Exception as exc:  # a bug: fail readably, do not retry (a dose takes minutes)
        log.exception("%s job %s failed", job.kind, job_id)
        store.transition(job_id, jobs.FAILED, from_states=[jobs.RUNNING],
                         message=f"internal error: {type(exc).__name__}: {exc}", actor=actor)
        return {"failed": f"internal error: {exc}"}
    finally:
        if cleanup is not None:
            cleanup()
    # A result to look at twice (a dose job's beam outside the CT) says so in the job's message.
    store.transition(job_id, jobs.SUCCEEDED, from_states=[jobs.RUNNING], stage="done",
                     message="; ".join(outputs.get("warnings") or ()), actor=actor, progress=1.0, outputs=outputs)
    return outputs
