"""tasks.on_failure: what RQ's failures become in the job record, and which are retried."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from orthanc_rt.errors import OrthancUnavailable
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job
from worker import tasks


@pytest.fixture
def running(database_url, monkeypatch):
    monkeypatch.setenv("ORTHANC_RT_DATABASE_URL", database_url)
    store = JobStore(database_url)
    store.create(Job(id="dose-x", kind="dose", state=jobs.QUEUED, stage="", params={}, inputs={}, outputs={}))
    store.start("dose-x", actor="w1")
    return store


def _fail(exc: BaseException, retries_left: int, timeout: int = 60) -> SimpleNamespace:
    rq_job = SimpleNamespace(args=["dose-x"], id="dose-x", retries_left=retries_left, timeout=timeout)
    tasks.on_failure(rq_job, None, type(exc), exc, None)
    return rq_job


def test_a_killed_worker_is_retried_and_says_so(running):
    rq_job = _fail(AbandonedJobError(), retries_left=3)
    assert rq_job.retries_left == 3
    job = running.get("dose-x", with_events=True)
    assert job.state == jobs.QUEUED and "worker running the job died" in job.message and "retrying" in job.message


def test_a_transient_fault_is_retried(running):
    _fail(OrthancUnavailable("Orthanc at http://x is unreachable"), retries_left=1)
    assert running.get("dose-x").state == jobs.QUEUED


def test_the_time_limit_fails_the_job_without_retry(running):
    rq_job = _fail(JobTimeoutException("too long"), retries_left=3, timeout=45)
    assert rq_job.retries_left == 0  # RQ reads this after the callback
    job = running.get("dose-x")
    assert job.state == jobs.FAILED and job.message == "time limit of 45 s exceeded; MCsquare was stopped"


def test_retries_exhausted_fail_with_the_reason_marked_as_an_outage(running):
    _fail(OrthancUnavailable("Orthanc at http://x is unreachable"), retries_left=0)
    job = running.get("dose-x")
    assert job.state == jobs.FAILED and "unreachable" in job.message and job.stage == jobs.TRANSIENT_FAILURE


def test_the_time_limit_is_no_outage(running):
    _fail(JobTimeoutException("too long"), retries_left=3)
    assert running.get("dose-x").stage != jobs.TRANSIENT_FAILURE
