"""Faults made boring: a worker SIGKILLed mid Monte Carlo, a stuck MCsquare, Orthanc-RT started on an
Orthanc that already holds plans, Redis down when a plan arrives. One stack (fault_stack) that these
tests break and repair, in this order."""
from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.ops import stack
from orthanc_rt.records.jobs import JobStore
from tests.support import cases as util
from tests.support.senders import rest_upload
from tests.support.stack import FAULT_JOB_TIMEOUT_S, Client, mcsquare_running, wait_for_orthanc

pytestmark = pytest.mark.integration


@pytest.fixture
def client(fault_stack) -> Client:
    return Client(fault_stack.orthanc_url)


def _case_with_auto_dose(client: Client, name: str):
    case = util.small_phantom_case(name)
    ids = rest_upload(client.base, [*case.ct, case.rtstruct, case.plan])
    auto = client.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=case.study.study_instance_uid,
                           kind="dose")
    assert auto["state"] == "succeeded", auto["message"]
    return case, ids[-1]


def _wait_monte_carlo(client: Client, job_id: str, data_dir) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/rt/jobs/{job_id}").json()
        if job["stage"].startswith("Monte Carlo") and mcsquare_running(data_dir):
            return job
        time.sleep(0.3)
    pytest.fail(f"MCsquare never started for {job_id}")


def _doses_of(client: Client, job_id: str) -> list[str]:
    sop_uid = derive_uid("orthanc-rt", job_id, "rtdose")
    return client.post("/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}}).json()


def test_worker_killed_mid_monte_carlo_is_taken_up_again(client, fault_stack):
    case, plan_id = _case_with_auto_dose(client, "sigkill")
    job_id = client.post(f"/rt/instances/{plan_id}/dose", json={"primaries": 600_000}).json()["job"]["id"]
    _wait_monte_carlo(client, job_id, fault_stack.data_dir)
    horse = int(job_id and client.get(f"/rt/jobs/{job_id}").json()["events"][-1]["actor"].rsplit(":", 1)[1])
    worker = int(open(f"/proc/{horse}/stat").read().rsplit(") ", 1)[1].split()[1])  # the horse's parent
    names = [n for n in ("worker-1", "worker-2") if stack.read_pid(fault_stack, n) == worker]
    assert names, "the job does not run in one of this stack's workers"
    os.killpg(horse, signal.SIGKILL)  # the work horse and its MCsquare (RQ gives the horse its own group)
    os.kill(worker, signal.SIGKILL)
    time.sleep(1)
    assert not mcsquare_running(fault_stack.data_dir)

    done = client.wait_final(job_id, timeout_s=360)
    assert done["state"] == "succeeded", done["message"]
    assert done["attempts"] >= 2
    messages = [e["message"] for e in done["events"]]
    assert any("worker running the job died" in m and "retrying" in m for m in messages), messages
    assert len(_doses_of(client, job_id)) == 1
    assert len(client.study_instances(case.study.study_instance_uid, "RTDOSE")) == 2  # auto + this one
    stack.start_worker(fault_stack, int(names[0].split("-")[1]))  # repair for the next tests


def test_stuck_mcsquare_is_killed_at_the_time_limit(client, fault_stack):
    _, plan_id = _case_with_auto_dose(client, "stuck")
    for primaries in (500_000_000, 499_999_999):
        job_id = client.post(f"/rt/instances/{plan_id}/dose", json={"primaries": primaries}).json()["job"]["id"]
        _wait_monte_carlo(client, job_id, fault_stack.data_dir)
        done = client.wait_final(job_id, timeout_s=FAULT_JOB_TIMEOUT_S + 120)
        # MCsquare itself once crashed (SIGSEGV) a second into such a run (CI, 2026-11-23; not reproduced
        # alone): the job then fails readably, as it should, but that is not what this test is about.
        if "killed by SIGSEGV" not in done["message"]:
            break
    assert done["state"] == "failed"
    assert f"time limit of {FAULT_JOB_TIMEOUT_S} s exceeded" in done["message"]
    assert done["attempts"] == 1  # a time-out is not retried
    deadline = time.monotonic() + 20
    while mcsquare_running(fault_stack.data_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not mcsquare_running(fault_stack.data_dir)
    assert _doses_of(client, job_id) == []


def test_plans_stored_while_orthanc_rt_was_off_are_reconciled_once(client, fault_stack):
    case = util.small_phantom_case("downtime")
    stack.stop_service(fault_stack, "orthanc")
    without_plugin = dataclasses.replace(fault_stack, orthanc_overrides={
        **fault_stack.orthanc_overrides, "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]})
    stack.start_orthanc(without_plugin)
    wait_for_orthanc(client, without_plugin)
    rest_upload(client.base, [*case.ct, case.rtstruct, case.plan])
    stack.stop_service(fault_stack, "orthanc")
    stack.start_orthanc(fault_stack)  # with the plugin again: the start-up reconcile finds the plan
    stack.wait_for_health(fault_stack)
    job = client.wait_job(lambda j: True, study=case.study.study_instance_uid, kind="dose", timeout_s=60)
    assert job["source"] == "reconcile"
    again = client.post("/rt/reconcile").json()
    assert again["queued"] == [] and again["already_had_job"] >= 1
    done = client.wait_final(job["id"])
    assert done["state"] == "succeeded", done["message"]
    assert len(client.jobs(study=case.study.study_instance_uid, kind="dose")) == 1
    assert client.get("/rt/audit", params={"action": "reconcile.run"}).json()["total"] >= 1


def test_orthanc_restarted_during_a_job_is_retried_with_back_off(client, fault_stack):
    store = JobStore(fault_stack.db_url)
    case, plan_id = _case_with_auto_dose(client, "orthanc-restart")
    # Long enough (10-20 s) that Orthanc is surely down before the Monte Carlo ends.
    job_id = client.post(f"/rt/instances/{plan_id}/dose", json={"primaries": 1_000_000}).json()["job"]["id"]
    _wait_monte_carlo(client, job_id, fault_stack.data_dir)
    stack.stop_service(fault_stack, "orthanc")
    try:  # the worker finishes the Monte Carlo, cannot store, and schedules a retry
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            events = store.get(job_id, with_events=True).events
            if any("Orthanc" in e.message and "retrying" in e.message for e in events):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no retry recorded: {[e.message for e in events]}")
    finally:
        stack.start_orthanc(fault_stack)
    stack.wait_for_health(fault_stack)
    done = client.wait_final(job_id, timeout_s=300)
    assert done["state"] == "succeeded", done["message"]
    assert done["attempts"] >= 2
    assert len(_doses_of(client, job_id)) == 1
    assert len(client.study_instances(case.study.study_instance_uid, "RTDOSE")) == 2


def test_database_unreachable_during_a_job_is_retried_with_back_off(client, fault_stack):
    """Only this test's worker reaches the database through a proxy the test cuts for 20 s."""
    from urllib.parse import urlparse

    from tests.support.tcp_proxy import CuttableProxy

    url = urlparse(fault_stack.db_url)
    proxy = CuttableProxy(url.hostname, url.port or 5432)
    proxied_url = fault_stack.db_url.replace(url.netloc, f"{url.username}@127.0.0.1:{proxy.port}")
    for name in ("worker-1", "worker-2"):
        stack.stop_service(fault_stack, name)
    through_proxy = dataclasses.replace(fault_stack, worker_settings={
        **fault_stack.worker_settings, "ORTHANC_RT_DATABASE_URL": proxied_url})
    stack.start_worker(through_proxy, 3)
    try:
        case, plan_id = _case_with_auto_dose(client, "db-down")
        job_id = client.post(f"/rt/instances/{plan_id}/dose", json={"primaries": 300_000}).json()["job"]["id"]
        _wait_monte_carlo(client, job_id, fault_stack.data_dir)
        proxy.cut()
        time.sleep(20)
        proxy.restore()
        done = client.wait_final(job_id, timeout_s=300)
        assert done["state"] == "succeeded", done["message"]
        assert done["attempts"] >= 2
        assert len(_doses_of(client, job_id)) == 1
        assert len(client.study_instances(case.study.study_instance_uid, "RTDOSE")) == 2
        assert len(client.jobs(study=case.study.study_instance_uid, kind="dose")) == 2
    finally:
        stack.stop_service(fault_stack, "worker-3")
        for index in (1, 2):
            stack.start_worker(fault_stack, index)
        proxy.close()


def test_redis_down_when_a_plan_arrives_loses_nothing(client, fault_stack):
    store = JobStore(fault_stack.db_url)
    case = util.small_phantom_case("redis-down")
    rest_upload(client.base, [*case.ct, case.rtstruct])
    time.sleep(fault_stack.stable_age_s + 1)
    stack.stop_service(fault_stack, "redis")
    try:
        rest_upload(client.base, [case.plan])
        # Recorded, not lost (enqueued_at is set only while a push is being tried).
        job = client.wait_job(lambda j: j["state"] == "queued" and j["enqueued_at"] is None,
                              study=case.study.study_instance_uid, kind="dose", timeout_s=60)
        assert client.get("/rt/health").json()["status"] == "degraded"
    finally:
        stack.ensure_redis(fault_stack)  # an empty Redis, as after a crash
    done = client.wait_final(job["id"], timeout_s=300)
    assert done["state"] == "succeeded", done["message"]
    assert len(_doses_of(client, job["id"])) == 1
    assert store.get(job["id"]).enqueued_at is not None
