"""GET /rt/metrics on the production stack (authentication on): after a dose that succeeds and one that fails on
its input, a viewer's scrape parses with prometheus_client's own parser and matches the jobs table; a user
without a role is refused (OrthancRT.Metrics.RequireRole defaults to true)."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from orthanc_rt.records import db
from tests.support import cases as util
from tests.support.senders import rest_upload
from tests.support.stack import AUTH_USERS, as_user, succeeded_dose_job

pytestmark = pytest.mark.integration


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _table(url: str) -> dict[str, dict]:
    """What the jobs table says, in plain SQL (not through the code under test)."""
    with db.engine_for(url).connect() as conn:
        states = {(k, s): n for k, s, n in conn.execute(sa.text(
            "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state"))}
        runs = {(k, s): n for k, s, n in conn.execute(sa.text(
            "SELECT kind, state, count(*) FROM jobs WHERE started_at IS NOT NULL AND finished_at IS NOT NULL "
            "AND state IN ('succeeded', 'failed', 'cancelled') GROUP BY kind, state"))}
        inputs = conn.execute(sa.text(
            "SELECT count(*) FROM jobs WHERE kind = 'dose' AND state = 'failed' AND stage = 'failed: input'")).scalar()
    return {"states": states, "runs": runs, "dose_input_failures": inputs}


def _scrape_matching_the_table(cfg, user: str) -> tuple[dict, dict]:
    """A scrape taken while the table stood still (other tests' jobs on this shared stack may still move)."""
    viewer = as_user(cfg, user)
    for _ in range(60):
        before = _table(cfg.database_url)
        r = viewer.get("/rt/metrics")
        after = _table(cfg.database_url)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        if before == after:
            return _samples(r.text), before
        time.sleep(1)
    raise AssertionError("the jobs table kept changing for a minute")


def test_metrics_match_the_jobs_table_after_a_known_sequence(auth_stack):
    ok = succeeded_dose_job(auth_stack, "metrics-ok", "vic")
    bad = util.small_phantom_case("metrics-bad-input")
    rest_upload(auth_stack.orthanc_url, [*bad.ct, bad.rtstruct, util.plan_without_ct_references(bad)],
                auth=("dora", AUTH_USERS["dora"][0]))
    failed = as_user(auth_stack, "vic").wait_job(lambda j: j["state"] in ("succeeded", "failed"), kind="dose",
                                                 study=bad.study.study_instance_uid, timeout_s=120)
    assert failed["state"] == "failed" and failed["stage"] == "failed: input", failed

    samples, table = _scrape_matching_the_table(auth_stack, "vic")

    jobs = {(dict(labels)["kind"], dict(labels)["state"]): value for (name, labels), value in samples.items()
            if name == "orthanc_rt_jobs"}
    assert {key: n for key, n in jobs.items() if n} == table["states"]
    assert jobs[("dose", "succeeded")] >= 1 and jobs[("dose", "failed")] >= 1
    for (kind, state), n in table["runs"].items():
        assert samples[("orthanc_rt_job_duration_seconds_count", frozenset({"kind": kind, "state": state}.items()))] \
            == n, (kind, state)
    assert samples[("orthanc_rt_failed_jobs", frozenset({"kind": "dose", "reason": "input"}.items()))] \
        == table["dose_input_failures"] >= 1

    assert samples[("orthanc_rt_up", frozenset({"service": "redis"}.items()))] == 1
    assert samples[("orthanc_rt_workers", frozenset())] == 1  # the stack's one worker
    ages = [v for (name, _), v in samples.items() if name == "orthanc_rt_worker_heartbeat_age_seconds"]
    assert len(ages) == 1 and 0 <= ages[0] < 600
    queues = {dict(labels)["queue"] for (name, labels), _ in samples.items() if name == "orthanc_rt_queue_length"}
    assert queues == {"orthanc-rt-analysis", "orthanc-rt-beamlets", "orthanc-rt-scenarios",
                      "orthanc-rt-dose", "orthanc-rt-plan"}
    # Primaries per second over the succeeded dose jobs: at least ours ran (20,000 primaries in some seconds).
    assert samples[("orthanc_rt_monte_carlo_primaries_per_second", frozenset({"kind": "dose"}.items()))] > 0

    text = as_user(auth_stack, "vic").get("/rt/metrics").text
    assert ok["study_instance_uid"] not in text and bad.study.study_instance_uid not in text and "dora" not in text


def test_a_user_without_a_role_is_refused_by_default(auth_stack):
    r = as_user(auth_stack, "nobody").get("/rt/metrics")
    assert r.status_code == 403 and "no Orthanc-RT role" in r.json()["error"]
    assert as_user(auth_stack, None).get("/rt/metrics").status_code == 401
