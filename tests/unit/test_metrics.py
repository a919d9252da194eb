"""/rt/metrics' collector (orthanc_rt/ops/metrics.py) against a real database (SQLite and PostgreSQL) and a real
Redis, read back with prometheus_client's own parser; the failure classes; the route's configurable role."""
from __future__ import annotations

import base64
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.utils import utcformat
from rq.worker import Worker

from orthanc_rt.ops import metrics
from orthanc_rt.records import durations, jobs
from orthanc_rt.records.checks import CheckStore
from orthanc_rt.records.db import session_scope
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Check, Job, JobEvent, utcnow
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.settings import Settings
from plugin.rest import Request
from plugin.roles import Access
from tests.support.routes import make_router

REPO = Path(__file__).resolve().parents[2]
NOW = utcnow().replace(microsecond=0)
PATIENT = "DOE^JANE"
STUDY_UID = "1.2.826.0.1.3680043.8.498.4242"


def _at(seconds_ago: float):
    return NOW - timedelta(seconds=seconds_ago)


def _job(job_id: str, kind: str, state: str, *, stage: str = "", message: str = "", run_s: float | None = None,
         primaries: int | None = None, created_ago: float = 3600) -> Job:
    started = _at(created_ago - 1) if run_s is not None else None
    return Job(id=job_id, kind=kind, state=state, stage=stage, message=message, requested_by=PATIENT,
               study_instance_uid=STUDY_UID, orthanc_study_id="os-1",
               params={"primaries": primaries} if primaries else {}, created_at=_at(created_ago),
               started_at=started, finished_at=started + timedelta(seconds=run_s) if started else None)


def _known_jobs() -> list[Job]:
    """A known set of jobs (what each one must count as is asserted below)."""
    return [
        _job("d-ok-1", "dose", jobs.SUCCEEDED, run_s=10, primaries=1_000_000),
        _job("d-ok-2", "dose", jobs.SUCCEEDED, run_s=30, primaries=2_000_000),
        _job("d-input", "dose", jobs.FAILED, stage=jobs.INPUT_FAILURE, message="RTPLAN: no spots", run_s=2),
        _job("d-outage", "dose", jobs.FAILED, stage=jobs.TRANSIENT_FAILURE, message="Orthanc unreachable", run_s=100),
        # Failed by the time limit before the stage markers existed: its message says so.
        _job("d-timeout", "dose", jobs.FAILED, stage="Monte Carlo",
             message="time limit of 60 s exceeded; MCsquare was stopped", run_s=60),
        _job("d-bug", "dose", jobs.FAILED, stage="Monte Carlo", message="internal error: KeyError: 'x'", run_s=5),
        _job("a-gave-up", "analysis", jobs.FAILED, stage=jobs.WAITED_FOR_INPUT,
             message="gave up waiting for input: the CT"),
        _job("a-cancelled", "analysis", jobs.CANCELLED, stage="cancelled", message=f"cancelled by {PATIENT}"),
        _job("p-engine", "plan", jobs.FAILED, stage=jobs.ENGINE_FAILURE, message="MCsquare exited with 1", run_s=7200),
        _job("d-queued-retried", "dose", jobs.QUEUED, created_ago=5000),
        _job("a-queued", "analysis", jobs.QUEUED, created_ago=50),
        _job("d-running", "dose", jobs.RUNNING, run_s=None),
        _job("p-waiting", "plan", jobs.WAITING),
    ]


# When the queued jobs (last) entered the queue: the retried one 300 s ago, though created 5000 s ago.
QUEUED_EVENTS = {"d-queued-retried": [5000, 4000, 300], "a-queued": [50]}


# Stage histories (age in s, state, stage): d-ok-1 started, ran Monte Carlo for 7 s and stored for 1 s; d-running
# is still in Monte Carlo (not counted until it leaves it); the retried job's stages count once per run.
STAGE_EVENTS = {
    "d-ok-1": [(3600, jobs.QUEUED, ""), (3599, jobs.RUNNING, "starting"), (3597, jobs.RUNNING, "Monte Carlo"),
               (3590, jobs.RUNNING, "storing"), (3589, jobs.SUCCEEDED, "done")],
    "d-running": [(100, jobs.RUNNING, "starting"), (95, jobs.RUNNING, "Monte Carlo")],
    "p-engine": [(9000, jobs.RUNNING, "starting"), (8999, jobs.RUNNING, "computing beamlets"),
                 (8000, jobs.FAILED, jobs.TRANSIENT_FAILURE), (7300, jobs.RUNNING, "starting"),
                 (7299, jobs.RUNNING, "computing beamlets"), (7000, jobs.RUNNING, "optimizing"),
                 (100, jobs.FAILED, jobs.ENGINE_FAILURE)],
}


@pytest.fixture
def filled(database_url):
    with session_scope(database_url) as s:
        for job in _known_jobs():
            s.add(job)
        s.flush()  # the events refer to the jobs
        for job_id, ages in QUEUED_EVENTS.items():
            for age in ages:
                s.add(JobEvent(job_id=job_id, at=_at(age), state=jobs.QUEUED, actor="unit"))
        s.add(JobEvent(job_id="d-queued-retried", at=_at(3000), state=jobs.RUNNING, actor="unit"))
        for job_id, stages in STAGE_EVENTS.items():
            for age, state, stage in stages:
                s.add(JobEvent(job_id=job_id, at=_at(age), state=state, stage=stage, actor="unit"))
        for n, verdict in enumerate(("pass", "pass", "warn")):
            s.add(Check(id=f"check-{n}", mode="recompute", verdict=verdict, study_instance_uid=STUDY_UID))
        s.flush()
        # The duration totals as the migration fills them from these histories (test_jobs: the live path agrees).
        durations.rebuild(s)
    return database_url


@pytest.fixture
def dispatcher(redis_url):
    """Real RQ queues and one real worker registration in the test Redis (ORTHANC_RT_TEST_REDIS)."""
    dispatcher = Dispatcher(redis_url, job_timeout_s=60)
    for job_id, kind in (("d-1", "dose"), ("d-2", "dose"), ("a-1", "analysis")):
        dispatcher.enqueue(job_id, kind)
    worker = Worker([Queue("orthanc-rt-dose", connection=dispatcher.redis)], connection=dispatcher.redis,
                    name="host-a:4242")
    worker.register_birth()
    dispatcher.redis.hset(worker.key, "last_heartbeat", utcformat(NOW - timedelta(seconds=42)))
    return dispatcher


def _samples(registry) -> dict[tuple[str, frozenset], float]:
    text = metrics.scrape(registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _get(samples, name: str, **labels: str) -> float:
    return samples[("orthanc_rt_" + name, frozenset(labels.items()))]


def _registry(database_url, dispatcher):
    return metrics.registry_for(JobStore(database_url), CheckStore(database_url), dispatcher, now=lambda: NOW)


def test_numbers_match_the_known_records(filled, dispatcher):
    s = _samples(_registry(filled, dispatcher))
    assert _get(s, "up", service="database") == 1 and _get(s, "up", service="redis") == 1

    assert _get(s, "jobs", kind="dose", state="succeeded") == 2
    assert _get(s, "jobs", kind="dose", state="failed") == 4
    assert _get(s, "jobs", kind="dose", state="queued") == 1
    assert _get(s, "jobs", kind="dose", state="running") == 1
    assert _get(s, "jobs", kind="analysis", state="cancelled") == 1
    assert _get(s, "jobs", kind="plan", state="waiting-for-input") == 1
    assert _get(s, "jobs", kind="sr", state="queued") == 0  # every kind and state exists, zeros included
    assert sum(v for (name, _), v in s.items() if name == "orthanc_rt_jobs") == len(_known_jobs())

    expected_failures = {("dose", "input"): 1, ("dose", "outage"): 1, ("dose", "timeout"): 1, ("dose", "other"): 1,
                         ("analysis", "input"): 1, ("analysis", "cancelled"): 1, ("plan", "engine"): 1}
    for (name, labels), value in s.items():
        if name == "orthanc_rt_failed_jobs":
            labels = dict(labels)
            assert value == expected_failures.get((labels["kind"], labels["reason"]), 0), labels

    # Run times of finished jobs that started: dose succeeded 10 s and 30 s.
    assert _get(s, "job_duration_seconds_count", kind="dose", state="succeeded") == 2
    assert _get(s, "job_duration_seconds_sum", kind="dose", state="succeeded") == 40
    assert _get(s, "job_duration_seconds_bucket", kind="dose", state="succeeded", le="5.0") == 0
    assert _get(s, "job_duration_seconds_bucket", kind="dose", state="succeeded", le="15.0") == 1
    assert _get(s, "job_duration_seconds_bucket", kind="dose", state="succeeded", le="30.0") == 2
    assert _get(s, "job_duration_seconds_bucket", kind="dose", state="succeeded", le="+Inf") == 2
    assert _get(s, "job_duration_seconds_count", kind="dose", state="failed") == 4
    assert _get(s, "job_duration_seconds_sum", kind="dose", state="failed") == 2 + 100 + 60 + 5
    assert _get(s, "job_duration_seconds_bucket", kind="plan", state="failed", le="3600.0") == 0
    assert _get(s, "job_duration_seconds_bucket", kind="plan", state="failed", le="7200.0") == 1
    assert _get(s, "job_duration_seconds_count", kind="analysis", state="cancelled") == 0  # never started

    # Stage times from the jobs' histories: each stage ran to the next event of its job.
    assert _get(s, "stage_duration_seconds_count", kind="dose", stage="starting") == 2
    assert _get(s, "stage_duration_seconds_sum", kind="dose", stage="starting") == 2 + 5
    assert _get(s, "stage_duration_seconds_count", kind="dose", stage="Monte Carlo") == 1  # d-running's goes on
    assert _get(s, "stage_duration_seconds_sum", kind="dose", stage="Monte Carlo") == 7
    assert _get(s, "stage_duration_seconds_sum", kind="dose", stage="storing") == 1
    assert _get(s, "stage_duration_seconds_count", kind="plan", stage="computing beamlets") == 2
    assert _get(s, "stage_duration_seconds_sum", kind="plan", stage="computing beamlets") == 999 + 299
    assert _get(s, "stage_duration_seconds_bucket", kind="plan", stage="optimizing", le="3600.0") == 0
    assert _get(s, "stage_duration_seconds_bucket", kind="plan", stage="optimizing", le="7200.0") == 1
    assert not [labels for name, labels in s if name.startswith("orthanc_rt_stage_duration")
                and dict(labels).get("stage") in ("", "done", jobs.TRANSIENT_FAILURE)]

    assert _get(s, "monte_carlo_primaries_per_second", kind="dose") == pytest.approx(3_000_000 / 40)

    assert _get(s, "oldest_queued_job_age_seconds", kind="dose") == 300  # since its retry, not its creation
    assert _get(s, "oldest_queued_job_age_seconds", kind="analysis") == 50
    assert _get(s, "oldest_queued_job_age_seconds", kind="plan") == 0

    assert _get(s, "checks", verdict="pass") == 2 and _get(s, "checks", verdict="warn") == 1
    assert _get(s, "checks", verdict="fail") == 0

    assert _get(s, "queue_length", queue="orthanc-rt-dose") == 2
    assert _get(s, "queue_length", queue="orthanc-rt-analysis") == 1
    assert _get(s, "queue_length", queue="orthanc-rt-plan") == 0
    assert _get(s, "queue_length", queue="orthanc-rt-beamlets") == 0
    assert _get(s, "workers") == 1
    assert _get(s, "worker_heartbeat_age_seconds", worker="host-a:4242") == pytest.approx(42, abs=0.01)


def test_no_patient_study_or_user_in_the_output(filled, dispatcher):
    text = metrics.scrape(_registry(filled, dispatcher)).decode()
    assert PATIENT not in text and STUDY_UID not in text and "os-1" not in text and "d-ok-1" not in text


def test_redis_down_still_gives_the_database_numbers(filled):
    dead = Dispatcher("redis://127.0.0.1:1/0", job_timeout_s=60)
    s = _samples(_registry(filled, dead))
    assert _get(s, "up", service="redis") == 0 and _get(s, "up", service="database") == 1
    assert _get(s, "jobs", kind="dose", state="succeeded") == 2
    assert not any(name == "orthanc_rt_workers" for name, _ in s)


def test_an_empty_installation_has_every_series_at_zero(database_url, redis_url):
    s = _samples(_registry(database_url, Dispatcher(redis_url, job_timeout_s=60)))
    assert _get(s, "jobs", kind="dose", state="failed") == 0
    assert _get(s, "failed_jobs", kind="dose", reason="outage") == 0
    assert _get(s, "workers") == 0
    assert not any(name == "orthanc_rt_monte_carlo_primaries_per_second" for name, _ in s)  # no rate made up


@pytest.mark.parametrize("state, stage, message, expected", [
    (jobs.CANCELLED, "cancelled", "cancelled by ada", "cancelled"),
    (jobs.FAILED, jobs.TRANSIENT_FAILURE, "OrthancUnavailable: refused", "outage"),
    (jobs.FAILED, jobs.INPUT_FAILURE, "RTPLAN (300A,00B0): no beams", "input"),
    (jobs.FAILED, jobs.WAITED_FOR_INPUT, "gave up waiting for input: the CT", "input"),
    (jobs.FAILED, "Monte Carlo", "gave up waiting for input: the CT", "input"),
    (jobs.FAILED, jobs.ENGINE_FAILURE, "MCsquare wrote no dose", "engine"),
    (jobs.FAILED, jobs.TIMEOUT_FAILURE, "time limit of 60 s exceeded; MCsquare was stopped", "timeout"),
    (jobs.FAILED, "Monte Carlo", "time limit of 60 s exceeded; MCsquare was stopped", "timeout"),
    (jobs.FAILED, "Monte Carlo", "internal error: KeyError: 'x'", "other"),
    (jobs.FAILED, "queued", "no worker function for job kind 'x'", "other"),
    (jobs.FAILED, "", "", "other"),
    (jobs.SUCCEEDED, "done", "", None),
    (jobs.QUEUED, jobs.TRANSIENT_FAILURE, "", None),
])
def test_failure_class(state, stage, message, expected):
    assert jobs.failure_class(state, stage, message) == expected
    assert expected is None or expected in jobs.FAILURE_CLASSES


USERS = {"vic": "viewer"}


def _auth(user: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()}


@pytest.mark.parametrize("require_role, stranger_status", [(True, 403), (False, 200)])
def test_the_route_needs_a_role_only_when_configured(filled, redis_url, require_role, stranger_status):
    settings = Settings(database_url=filled, metrics_require_role=require_role)
    api = make_router(None, settings, JobStore(filled), Dispatcher(redis_url, job_timeout_s=60),
                      Access(USERS, orthanc_authentication=True))
    assert api.handle(Request("GET", "/rt/metrics")).status == 401
    assert api.handle(Request("GET", "/rt/metrics", headers=_auth("scraper"))).status == stranger_status
    answer = api.handle(Request("GET", "/rt/metrics", headers=_auth("vic")))
    assert answer.status == 200 and answer.content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name for f in text_string_to_metric_families(answer.encoded().decode())}
    assert {"orthanc_rt_jobs", "orthanc_rt_job_duration_seconds", "orthanc_rt_workers"} <= families


def test_the_setting_is_read_from_the_orthanc_configuration():
    assert Settings.from_orthanc_config({}).metrics_require_role is True
    section = {"OrthancRT": {"Metrics": {"RequireRole": False}}}
    assert Settings.from_orthanc_config(section).metrics_require_role is False


def _yaml_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", markdown, re.S | re.M)


def test_the_shipped_alert_rules_parse_match_the_docs_and_name_real_metrics(database_url, redis_url):
    shipped = yaml.safe_load((REPO / "packaging" / "prometheus" / "alerts.yml").read_text())
    blocks = [yaml.safe_load(block) for block in _yaml_blocks((REPO / "docs" / "production.md").read_text())]
    assert shipped in blocks  # the page shows the file as shipped
    rules = shipped["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == ["OrthancRtNoWorker", "OrthancRtQueueStuck", "OrthancRtFailuresRising"]
    assert all({"alert", "expr", "for", "labels", "annotations"} <= set(r) for r in rules)
    assert 'reason!="cancelled"' in rules[2]["expr"]
    emitted = {name for name, _ in _samples(_registry(database_url, Dispatcher(redis_url, job_timeout_s=60)))}
    emitted |= {"orthanc_rt_monte_carlo_primaries_per_second"}  # emitted once a dose job succeeded
    for rule in rules:
        named = set(re.findall(r"\borthanc_rt_\w+", rule["expr"]))
        assert named and named <= emitted, (rule["alert"], named - emitted)
    scrape = next(block for block in blocks if "scrape_configs" in block)["scrape_configs"][0]
    assert scrape["metrics_path"] == "/rt/metrics" and "basic_auth" in scrape
