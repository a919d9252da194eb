"""The frame every job kind runs in: start, compute, record the outcome.

Input problems (and the kind's own final errors) fail the job with a
readable reason; an input that has not arrived puts it back to waiting; a
job cancelled meanwhile ends quietly; transient faults (Orthanc, database)
are raised so RQ retries with back-off; anything else is a bug and fails the
job readably, without a retry.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Sequence

from rq.timeouts import JobTimeoutException
from sqlalchemy.exc import OperationalError

from orthanc_rt.errors import DicomInputError, DoseEngineError, InputNotReady, OrthancUnavailable, PhotonEngineError
from orthanc_rt.pacs.client import HttpOrthanc, OrthancApi
from orthanc_rt.pacs.resources import find_instance
from orthanc_rt.records import audit, jobs
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


def store_result(api: OrthancApi, store: JobStore, job_id: str, sop_instance_uid: str, data: bytes, what: str) -> str:
    """Store one result of a job in Orthanc, replacing the one an earlier run of the job stored (its SOP
    Instance UID is derived from the job), and audit it; its Orthanc id."""
    previous = find_instance(api, sop_instance_uid)
    if previous is not None:
        api.delete(f"/instances/{previous}")
    orthanc_id = json.loads(api.post_bytes("/instances", data, "application/dicom"))["ID"]
    audit.record(store.url, jobs.actor_name(), audit.RESULT_STORED, job_id,
                 {"replaced_orthanc_id": previous} if previous else None,
                 {f"{what}_orthanc_id": orthanc_id, "sop_instance_uid": sop_instance_uid})
    return orthanc_id
