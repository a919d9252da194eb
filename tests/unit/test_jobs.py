"""Job records and the Redis hand-off, against real SQLite/PostgreSQL and a real Redis."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from rq import Queue
from rq.job import Job as RqJob
from rq.job import JobStatus

from orthanc_rt.pacs.resources import InstanceRef
from orthanc_rt.records import durations, jobs
from orthanc_rt.records.db import session_scope
from orthanc_rt.records.jobs import MAX_ATTEMPTS_AFTER_OUTAGES, JobQuery, JobStore
from orthanc_rt.records.tables import utcnow
from orthanc_rt.scheduling.params import CheckParams, DoseParams
from orthanc_rt.scheduling.queue import QUEUE_NAMES, Dispatcher, redis_for
from orthanc_rt.scheduling.scheduler import Scheduler
from tests.support.records import jobs_row

PLAN = InstanceRef(orthanc_id="p-1", sop_instance_uid="1.2.3.4", sop_class_uid="1.2.840.10008.5.1.4.1.1.481.8",
               series_instance_uid="1.2.3", study_instance_uid="1.2", orthanc_study_id="s-1")
PARAMS = DoseParams(primaries=10_000, scoring_spacing_mm=None, wait_for_ct_seconds=60)


def test_job_id_depends_on_inputs_and_parameters_only():
    a = jobs.job_id("dose", "1.2.3", params={"primaries": 1})
    assert a == jobs.job_id("dose", "1.2.3", params={"primaries": 1})
    assert a != jobs.job_id("dose", "1.2.3", params={"primaries": 2})
    assert a != jobs.job_id("dose", "1.2.4", params={"primaries": 1})
    assert a.startswith("dose-") and len(a) <= 64


def test_same_plan_twice_gives_one_job_and_one_enqueue(database_url, redis_url):
    scheduler = Scheduler(JobStore(database_url), Dispatcher(redis_url, job_timeout_s=60))
    first, created1 = scheduler.request_dose(PLAN, PARAMS, source="auto")
    second, created2 = scheduler.request_dose(PLAN, PARAMS, source="api")
    assert (created1, created2) == (True, False)
    assert first.id == second.id
    assert Queue(QUEUE_NAMES["dose"], connection=redis_for(redis_url)).job_ids == [first.id]


def test_concurrent_requests_create_one_row(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: scheduler.request_dose(PLAN, PARAMS, source="auto"), range(16)))
    assert sum(created for _, created in results) == 1
    rows, total = store.list(JobQuery())
    assert total == 1
    assert len(Queue(QUEUE_NAMES["dose"], connection=redis_for(redis_url))) == 1


def test_trigger_survives_redis_outage(database_url, redis_url):
    store = JobStore(database_url)
    down = Scheduler(store, Dispatcher("redis://127.0.0.1:1/0", job_timeout_s=60))
    job, created = down.request_dose(PLAN, PARAMS, source="auto")
    assert created and store.not_enqueued() == [job.id]
    up = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    assert up.flush_pending() == 1
    assert store.not_enqueued() == []
    assert up.flush_pending() == 0  # once only
    assert Queue(QUEUE_NAMES["dose"], connection=redis_for(redis_url)).job_ids == [job.id]


def test_job_lost_by_an_emptied_redis_is_pushed_again(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    job, _ = scheduler.request_dose(PLAN, PARAMS, source="auto")
    assert scheduler.repush_lost(grace_s=0) == []  # Redis has it
    redis_for(redis_url).flushdb()  # Redis restarted without persistence
    assert scheduler.repush_lost(grace_s=3600) == []  # too recent to judge
    assert scheduler.repush_lost(grace_s=0) == [job.id]
    assert Queue(QUEUE_NAMES["dose"], connection=redis_for(redis_url)).job_ids == [job.id]
    assert scheduler.repush_lost(grace_s=0) == []


def test_a_running_job_rq_no_longer_runs_is_queued_again_a_bounded_number_of_times(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    job, _ = scheduler.request_dose(PLAN, PARAMS, source="auto")
    assert store.start(job.id, actor="worker-a")
    RqJob.fetch(job.id, connection=redis_for(redis_url)).set_status(JobStatus.STARTED)
    assert scheduler.repush_lost(grace_s=0) == []  # a worker runs it
    redis_for(redis_url).flushdb()  # Redis restarted empty under the running job
    assert scheduler.repush_lost(grace_s=3600) == []  # its row changed too recently to judge
    assert scheduler.repush_lost(grace_s=0) == [job.id]
    again = store.get(job.id, with_events=True)
    assert again.state == jobs.QUEUED and "no worker runs it any more" in again.events[-1].message
    assert Queue(QUEUE_NAMES["dose"], connection=redis_for(redis_url)).job_ids == [job.id]
    for _ in range(MAX_ATTEMPTS_AFTER_OUTAGES - 2):  # lost by its worker at every start (starts 2 to 7)
        assert store.start(job.id, actor="worker-a")
        redis_for(redis_url).flushdb()
        assert scheduler.repush_lost(grace_s=0) == [job.id]
    assert store.start(job.id, actor="worker-a") and store.get(job.id).attempts == MAX_ATTEMPTS_AFTER_OUTAGES
    redis_for(redis_url).flushdb()
    assert scheduler.repush_lost(grace_s=0) == []
    failed = store.get(job.id)
    assert failed.state == jobs.FAILED and f"in {MAX_ATTEMPTS_AFTER_OUTAGES} starts" in failed.message
    assert scheduler.rerun_after_outages() == []  # it stays failed: asking again runs it


def test_cancelled_job_cannot_be_started_or_finished(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    job, _ = scheduler.request_dose(PLAN, PARAMS, source="api")
    result = scheduler.cancel(job.id, actor="tester")
    assert result["cancelled"] is True
    assert len(Queue(QUEUE_NAMES["dose"], connection=redis_for(redis_url))) == 0
    assert not store.start(job.id, actor="w")
    assert not store.transition(job.id, jobs.SUCCEEDED, from_states=[jobs.RUNNING])
    assert store.get(job.id).state == jobs.CANCELLED
    assert scheduler.cancel(job.id, actor="tester")["cancelled"] is False


def test_history_records_every_change(database_url):
    store = JobStore(database_url)
    job, _ = store.create(jobs_row("dose-history"), actor="plugin")
    assert store.start(job.id, actor="worker-a")
    assert store.transition(job.id, jobs.QUEUED, from_states=[jobs.RUNNING], message="retry", actor="worker-a")
    assert store.start(job.id, actor="worker-b")
    assert store.transition(job.id, jobs.SUCCEEDED, from_states=[jobs.RUNNING], actor="worker-b")
    full = jobs.to_dict(store.get(job.id, with_events=True), events=True)
    assert [e["state"] for e in full["events"]] == ["queued", "running", "queued", "running", "succeeded"]
    assert full["attempts"] == 2
    assert full["finished_at"] is not None


def test_entering_a_stage_is_history_its_details_are_not(database_url):
    store = JobStore(database_url)
    job, _ = store.create(jobs_row("dose-stages"), actor="plugin")
    assert store.start(job.id, actor="worker-a")
    for stage, fraction in (("Monte Carlo", 0.1), ("Monte Carlo: 40 %", 0.4), ("Monte Carlo: 80 %", 0.8),
                            ("storing", 0.96)):
        store.progress(job.id, stage=stage, fraction=fraction, eta_seconds=None)
    assert store.transition(job.id, jobs.SUCCEEDED, from_states=[jobs.RUNNING], stage="done", actor="worker-a")
    store.progress(job.id, stage="late", fraction=1.0, eta_seconds=None)  # after its end: neither row nor history
    events = jobs.to_dict(store.get(job.id, with_events=True), events=True)["events"]
    assert [(e["state"], e["stage"]) for e in events] == [
        ("queued", "queued"), ("running", "starting"), ("running", "Monte Carlo"), ("running", "storing"),
        ("succeeded", "done")]
    stages = durations.histograms(database_url, durations.STAGE)
    assert sorted(stage for _, stage in stages) == ["Monte Carlo", "starting", "storing"]
    assert all(histogram.count == 1 for histogram in stages.values())
    assert store.get(job.id).stage == "done"


def test_duration_totals_added_as_jobs_run_equal_those_rebuilt_from_their_histories(database_url):
    store = JobStore(database_url)
    for n, outcome in enumerate((jobs.SUCCEEDED, jobs.FAILED, jobs.SUCCEEDED)):
        job, _ = store.create(jobs_row(f"dose-totals-{n}"), actor="plugin")
        assert store.start(job.id, actor="worker-a")
        store.progress(job.id, stage="Monte Carlo: 10 %", fraction=0.1, eta_seconds=None)
        if n == 1:  # a dead worker's job, taken again from running: its stage ends with the retry
            assert store.start(job.id, actor="worker-b")
            store.progress(job.id, stage="Monte Carlo", fraction=0.1, eta_seconds=None)
        assert store.transition(job.id, outcome, from_states=[jobs.RUNNING], stage="done", actor="worker-a")
    live = {family: durations.histograms(database_url, family) for family in (durations.JOB, durations.STAGE)}
    with session_scope(database_url) as s:
        durations.rebuild(s)
    rebuilt = {family: durations.histograms(database_url, family) for family in (durations.JOB, durations.STAGE)}
    assert live[durations.JOB].keys() == rebuilt[durations.JOB].keys() == {("dose", jobs.SUCCEEDED),
                                                                           ("dose", jobs.FAILED)}
    assert live[durations.STAGE][("dose", "Monte Carlo")].count == 4 and live[durations.STAGE][
        ("dose", "starting")].count == 4
    for family in live:
        for key, histogram in live[family].items():
            assert histogram.cumulative == rebuilt[family][key].cumulative, key
            assert histogram.seconds == pytest.approx(rebuilt[family][key].seconds, abs=1e-3), key


def test_waiting_jobs_resume_per_study_and_expire(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    job, _ = scheduler.request_dose(PLAN, PARAMS, source="auto")
    assert store.start(job.id, actor="w")
    assert store.transition(job.id, jobs.WAITING, from_states=[jobs.RUNNING], message="waiting for CT")
    assert scheduler.resume_waiting("another-study") == []
    assert scheduler.resume_waiting(PLAN.orthanc_study_id) == [job.id]
    assert store.get(job.id).state == jobs.QUEUED
    assert store.start(job.id, actor="w")
    assert store.transition(job.id, jobs.WAITING, from_states=[jobs.RUNNING], message="waiting for CT",
                            wait_deadline=utcnow() - timedelta(seconds=1))
    assert scheduler.expire_waiting() == [job.id]
    failed = store.get(job.id)
    assert failed.state == jobs.FAILED and "waiting for CT" in failed.message


def test_list_filters_and_pages(database_url):
    store = JobStore(database_url)
    for i in range(5):
        row = jobs_row(f"dose-{i}", study="1.2.9" if i % 2 else "1.2.8")
        store.create(row)
    rows, total = store.list(JobQuery(study="1.2.9"))
    assert total == 2 and {r.id for r in rows} == {"dose-1", "dose-3"}
    page, total = store.list(JobQuery(limit=2, offset=4))
    assert total == 5 and len(page) == 1


@pytest.fixture(autouse=True)
def _fresh_redis_clients():
    redis_for.cache_clear()
    yield


def test_jobs_failed_by_an_outage_run_again_a_bounded_number_of_times(database_url, redis_url):
    """An Orthanc restart longer than RQ's retries failed every dose in flight; once the plugin runs again
    (its maintenance thread calls this), they run again; a job that keeps failing stops after the bound."""
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    job, _ = scheduler.request_dose(PLAN, PARAMS, source="auto")
    other, _ = scheduler.request_dose(PLAN, DoseParams(200_000, None, 60), source="auto")
    for jid, stage in ((job.id, jobs.TRANSIENT_FAILURE), (other.id, "Monte Carlo")):
        assert store.start(jid, actor="w1")
        store.transition(jid, jobs.FAILED, from_states=[jobs.RUNNING], stage=stage, message="OrthancUnavailable",
                         actor="w1")
    assert scheduler.rerun_after_outages(max_attempts=2) == [job.id]  # the other failed for its inputs
    again = store.get(job.id)
    assert again.state == jobs.QUEUED and "after an outage" in again.message
    assert job.id in Queue(QUEUE_NAMES["dose"], connection=redis_for(redis_url)).job_ids
    assert store.start(job.id, actor="w1")  # attempt 2 fails the same way: the bound is reached
    store.transition(job.id, jobs.FAILED, from_states=[jobs.RUNNING], stage=jobs.TRANSIENT_FAILURE, actor="w1")
    assert scheduler.rerun_after_outages(max_attempts=2) == []
    assert store.get(job.id).state == jobs.FAILED


def test_asking_again_runs_a_failed_or_cancelled_job_again(database_url, redis_url):
    """Identity must not make a failure permanent: the same request (a person, or the same route) runs it again;
    an automatic trigger seeing the same plan again does not (it did not ask)."""
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    job, _ = scheduler.request_dose(PLAN, PARAMS, source="auto")
    assert store.start(job.id, actor="w1")
    store.transition(job.id, jobs.FAILED, from_states=[jobs.RUNNING], message="MCsquare crashed", actor="w1")
    same, created = scheduler.request_dose(PLAN, PARAMS, source="auto")
    assert not created and same.state == jobs.FAILED
    again, created = scheduler.request_dose(PLAN, PARAMS, source="api", requested_by="phil", rerun_failed=True)
    assert not created and again.id == job.id and again.state == jobs.QUEUED and "asked again" in again.message
    scheduler.cancel(job.id, actor="phil")
    assert scheduler.request_dose(PLAN, PARAMS, source="api", rerun_failed=True)[0].state == jobs.QUEUED


def test_a_failed_check_asked_again_waits_for_its_recompute_again(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    check, _ = scheduler.request_check(PLAN, CheckParams(), PARAMS, source="auto")
    assert check.state == jobs.WAITING
    store.transition(check.id, jobs.FAILED, from_states=[jobs.WAITING], message="gave up waiting", actor="unit")
    again, created = scheduler.request_check(PLAN, CheckParams(), PARAMS, source="api", rerun_failed=True)
    assert not created and again.id == check.id and again.state == jobs.WAITING
    assert again.inputs["recompute_job"] in again.message and again.wait_deadline is not None


def test_a_waiting_check_runs_once_its_recompute_has_finished_whatever_woke_it_before(database_url, redis_url):
    store = JobStore(database_url)
    scheduler = Scheduler(store, Dispatcher(redis_url, job_timeout_s=60))
    check, _ = scheduler.request_check(PLAN, CheckParams(), PARAMS, source="auto")
    recompute = check.inputs["recompute_job"]
    assert scheduler.resume_checks_of_finished_recomputes() == []  # still running: the check keeps waiting
    assert store.start(recompute, actor="w1")
    store.transition(recompute, jobs.SUCCEEDED, from_states=[jobs.RUNNING], actor="w1")
    assert scheduler.resume_checks_of_finished_recomputes() == [check.id]
    assert store.get(check.id).state == jobs.QUEUED
    assert check.id in Queue(QUEUE_NAMES["check"], connection=redis_for(redis_url)).job_ids
