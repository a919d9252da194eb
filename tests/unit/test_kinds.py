"""The job-kind registry: what derives from it is what the kinds were before it, and run_job dispatches by it."""
from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import types

from rq import Queue
from rq.job import Job as RqJob

from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job
from orthanc_rt.scheduling import kinds
from orthanc_rt.scheduling.queue import ON_FAILURE, QUEUE_NAMES, RETRY_INTERVALS_S, RUN_JOB, Dispatcher
from orthanc_rt.settings import Settings
from worker import tasks


def test_kinds_and_queues_in_their_order():
    assert kinds.NAMES == ("dose", "analysis", "sr", "plan", "check", "robustness")  # as the REST API lists them
    # Workers take from the queues in this order: quick work, then beamlet parts of a plan under way, then new work.
    assert list(QUEUE_NAMES.items()) == [
        ("analysis", "orthanc-rt-analysis"), ("sr", "orthanc-rt-analysis"), ("check", "orthanc-rt-analysis"),
        ("beamlets", "orthanc-rt-beamlets"), ("scenarios", "orthanc-rt-scenarios"),
        ("dose", "orthanc-rt-dose"), ("robustness", "orthanc-rt-dose"), ("plan", "orthanc-rt-plan")]


def test_time_limits_are_fixed_or_settings():
    assert Dispatcher("redis://127.0.0.1:1/0", job_timeout_s=60).timeouts == {
        "dose": 60, "analysis": 900, "sr": 300, "plan": 6 * 3600, "check": 1800, "robustness": 6 * 3600}
    assert Dispatcher("redis://127.0.0.1:1/0", job_timeout_s=60, plan_timeout_s=7).timeouts["plan"] == 7
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert all(kind.time_limit in fields for kind in kinds.KINDS if isinstance(kind.time_limit, str))


def test_every_runner_runs_jobs_and_the_preloaded_modules_import():
    for kind in kinds.KINDS:
        assert callable(importlib.import_module(kind.runner).run), kind
    assert kinds.preload_modules() == ["worker.jobs.dose", "worker.jobs.analysis", "worker.engines.beamlet_fanout",
                                       "worker.engines.scenario_fanout"]
    for module in kinds.preload_modules():
        importlib.import_module(module)


def test_a_queue_without_a_priority_fails_the_import(monkeypatch):
    monkeypatch.setattr(kinds, "KINDS", (*kinds.KINDS, kinds.JobKind("new", "orthanc-rt-new", "x", 60)))
    try:
        kinds._check()
    except ValueError as exc:
        assert "orthanc-rt-new" in str(exc)
    else:
        raise AssertionError("a queue outside QUEUE_PRIORITY was accepted")


def test_each_kind_is_enqueued_as_before(redis_url):
    dispatcher = Dispatcher(redis_url, job_timeout_s=60, plan_timeout_s=120)
    for kind, queue, timeout in [("dose", "orthanc-rt-dose", 60), ("analysis", "orthanc-rt-analysis", 900),
                                 ("sr", "orthanc-rt-analysis", 300), ("plan", "orthanc-rt-plan", 120)]:
        dispatcher.enqueue(f"{kind}-1", kind)
        rq_job = RqJob.fetch(f"{kind}-1", connection=dispatcher.redis)
        assert (rq_job.origin, rq_job.timeout, rq_job.func_name) == (queue, timeout, RUN_JOB)
        assert rq_job.args == (f"{kind}-1",)
        assert rq_job.retries_left == len(RETRY_INTERVALS_S) and rq_job.retry_intervals == RETRY_INTERVALS_S
        assert rq_job._failure_callback_name == ON_FAILURE
        assert f"{kind}-1" in Queue(queue, connection=dispatcher.redis).job_ids


def test_run_job_runs_the_kinds_runner(database_url, monkeypatch):
    monkeypatch.setenv("ORTHANC_RT_DATABASE_URL", database_url)
    ran = []
    runner = types.ModuleType("fake_runner")
    runner.run = lambda job_id, settings, store: ran.append((job_id, settings.database_url, store.url)) or {"ok": 1}
    monkeypatch.setitem(sys.modules, "fake_runner", runner)
    monkeypatch.setitem(kinds.BY_NAME, "dose", dataclasses.replace(kinds.BY_NAME["dose"], runner="fake_runner"))
    JobStore(database_url).create(Job(id="dose-x", kind="dose", state=jobs.QUEUED, stage="", params={}, inputs={},
                                      outputs={}))
    assert tasks.run_job("dose-x") == {"ok": 1}
    assert ran == [("dose-x", database_url, database_url)]


def test_a_kind_without_a_runner_fails_readably(database_url, monkeypatch):
    monkeypatch.setenv("ORTHANC_RT_DATABASE_URL", database_url)
    store = JobStore(database_url)
    store.create(Job(id="odd-x", kind="odd", state=jobs.QUEUED, stage="", params={}, inputs={}, outputs={}))
    assert tasks.run_job("odd-x") == {"failed": "unknown kind odd"}
    job = store.get("odd-x")
    assert job.state == jobs.FAILED and job.message == "no worker function for job kind 'odd'"


def test_worker_logs_keep_ours_and_quiet_opentps():
    """In a fresh process, as in a worker: OpenTPS' import reconfigures logging after ours."""
    script = ("from worker.__main__ import _configure_logging; _configure_logging(); import logging, opentps.core; "
              "theirs = logging.getLogger('opentps.core.processing.planOptimization.planOptimization'); "
              "theirs.info('THEIR-INFO'); theirs.warning('THEIR-WARNING'); "
              "logging.getLogger('orthanc_rt.worker').info('OUR-INFO')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPLBACKEND": "Agg"}, check=True)
    logged = out.stdout + out.stderr
    assert "THEIR-WARNING" in logged and "OUR-INFO" in logged and "THEIR-INFO" not in logged, logged


def test_kinds_route_shows_the_limits_jobs_are_enqueued_with_and_queue_lengths(tmp_path, redis_url):
    from orthanc_rt.records import db
    from orthanc_rt.records.tables import utcnow
    from plugin.rest import Request
    from tests.support.routes import make_router

    url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
    db.upgrade(url)
    dispatcher = Dispatcher(redis_url, job_timeout_s=1234, plan_timeout_s=4321)
    store = JobStore(url)
    store.create(Job(id="dose-waiting", kind="dose", state=jobs.QUEUED, source="api", inputs={}, params={},
                     study_instance_uid="1.2", created_at=utcnow(), updated_at=utcnow()), actor="test")
    dispatcher.enqueue("dose-waiting", "dose")
    body = make_router(None, Settings(database_url=url), store, dispatcher).handle(Request("GET", "/rt/kinds")).body
    by_name = {k["name"]: k for k in body["kinds"]}
    assert list(by_name) == list(kinds.NAMES)
    assert (by_name["dose"]["time_limit_s"], by_name["dose"]["time_limit_setting"]) == (
        1234, "dose_job_timeout_seconds")
    assert (by_name["plan"]["time_limit_s"], by_name["analysis"]["time_limit_s"]) == (4321, 900)
    assert by_name["analysis"]["time_limit_setting"] is None and by_name["analysis"]["preloaded_by_workers"]
    assert [q["name"] for q in body["queues"]] == list(kinds.QUEUE_PRIORITY)
    waiting = {q["name"]: q["waiting"] for q in body["queues"]}
    assert waiting == {kinds.ANALYSIS_QUEUE: 0, kinds.BEAMLETS_QUEUE: 0, kinds.SCENARIOS_QUEUE: 0,
                       kinds.DOSE_QUEUE: 1, kinds.PLAN_QUEUE: 0}
    assert {q["name"]: q["serves"] for q in body["queues"]}[kinds.ANALYSIS_QUEUE] == ["analysis", "sr", "check"]
