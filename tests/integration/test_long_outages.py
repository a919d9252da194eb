"""Outages of the services Orthanc-RT depends on, with a PostgreSQL server of the test's own.

An operator's bad night: Orthanc, Redis and PostgreSQL each down for ten minutes while doses are computed
and queued, nobody touching Orthanc-RT. Every job ends succeeded, once, and a plan stored while the queue and
the database were down still gets its dose.

The outages overlap, staggered by STAGGER_S, so that each service is down for OUTAGE_S while the others are
down or up: Orthanc goes first (a running Monte Carlo finishes and cannot store), Redis next (the workers lose
their queue; it comes back empty, as after a crash), PostgreSQL last (a real server of the test's own, stopped
and started as `systemctl` would). Orthanc comes back first, while Redis and PostgreSQL are still down.
ORTHANC_RT_TEST_OUTAGE_S shortens the outage for a quick local run (CI runs the full ten minutes).
"""
from __future__ import annotations

import os
import time

import psycopg
import pytest

from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from tests.support import cases
from tests.support.senders import rest_upload
from tests.support.services import PrivatePostgres, free_port
from tests.support.stack import TEST_PRIMARIES, Client, mcsquare_running, wait_for_orthanc

OUTAGE_S = float(os.environ.get("ORTHANC_RT_TEST_OUTAGE_S", 600))
STAGGER_S = 30.0
RECOVERY_S = 900.0  # every job final within this after the last service is back

pytestmark = pytest.mark.integration


@pytest.fixture
def outage_stack(tmp_path):
    postgres = PrivatePostgres()
    try:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE orthanc_rt")
        cfg = StackConfig(
            data_dir=tmp_path / "stack", http_port=free_port(), dicom_port=free_port(),
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            database_url=postgres.url.rsplit("/", 1)[0] + "/orthanc_rt",
            stable_age_s=2, workers=2, mcsquare_threads=1,
            auto_dose={"Primaries": TEST_PRIMARIES, "WaitForCtSeconds": 3600},
            worker_settings={"ORTHANC_RT_WORKER_HEARTBEAT_SECONDS": "5",
                             "ORTHANC_RT_WORKER_MAINTENANCE_SECONDS": "10"})
        try:
            stack.start(cfg)
            yield cfg, postgres
        finally:
            stack.stop(cfg)
    finally:
        postgres.close()


def _doses_made_by(client: Client, job_id: str) -> list[str]:
    uid = derive_uid("orthanc-rt", job_id, "rtdose")
    return client.post("/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": uid}}).json()


def _until(moment: float, cfg: StackConfig, workers: list[str]) -> None:
    """Wait until time.monotonic() reaches `moment`, failing at once if a worker exits meanwhile."""
    while time.monotonic() < moment:
        for name in workers:
            assert stack.is_running(cfg, name), f"{name} exited during the outage: see {cfg.log_dir / name}.log"
        time.sleep(min(2.0, max(0.0, moment - time.monotonic())))


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE_S + 2 * STAGGER_S + 1500)
def test_ten_minute_outages_of_orthanc_redis_and_postgresql_lose_no_job(outage_stack):
    cfg, postgres = outage_stack
    client = Client(cfg.orthanc_url)
    workers = [f"worker-{i}" for i in range(1, cfg.workers + 1)]
    case = cases.small_phantom_case("long-outage")
    plan_id = rest_upload(client.base, [*case.ct, case.rtstruct, case.plan])[-1]
    auto = client.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=case.study.study_instance_uid,
                           kind="dose")
    assert auto["state"] == "succeeded", auto["message"]
    # One Monte Carlo running when Orthanc goes, one beside it on the second worker, one queued behind them.
    requested = [client.post(f"/rt/instances/{plan_id}/dose", json={"primaries": primaries}).json()["job"]["id"]
                 for primaries in (1_500_000, 1_000_000, 300_000)]
    deadline = time.monotonic() + 120
    while not mcsquare_running(cfg.data_dir):
        assert time.monotonic() < deadline, "no Monte Carlo started"
        time.sleep(0.3)
    later = cases.small_phantom_case("stored-while-queue-and-database-are-down")

    start = time.monotonic()
    stack.stop_service(cfg, "orthanc")
    _until(start + STAGGER_S, cfg, workers)
    stack.stop_service(cfg, "redis")
    _until(start + 2 * STAGGER_S, cfg, workers)
    postgres.stop()
    _until(start + OUTAGE_S, cfg, workers)
    stack.start_orthanc(cfg)  # the queue and the database are still down: the plugin must start anyway
    wait_for_orthanc(client, cfg, 120)
    health = client.get("/rt/health")
    assert health.status_code == 503 and health.json()["checks"]["database"]["ok"] is False, health.text
    # A TPS export arrives now: its trigger can reach neither the queue nor the database.
    rest_upload(client.base, [*later.ct, later.rtstruct, later.plan])
    _until(start + OUTAGE_S + STAGGER_S, cfg, workers)
    stack.ensure_redis(cfg)  # empty, as after a crash
    _until(start + OUTAGE_S + 2 * STAGGER_S, cfg, workers)
    postgres.start()
    stack.wait_for_health(cfg, timeout_s=300)

    deadline = time.monotonic() + RECOVERY_S
    for job_id in [auto["id"], *requested]:
        done = client.wait_final(job_id, timeout_s=max(1.0, deadline - time.monotonic()))
        assert done["state"] == "succeeded", f"{job_id}: {done['state']}: {done['message']}"
        assert len(_doses_made_by(client, job_id)) == 1, f"{job_id} stored {len(_doses_made_by(client, job_id))}"
    assert len(client.jobs(study=case.study.study_instance_uid, kind="dose")) == 4
    assert len(client.study_instances(case.study.study_instance_uid, "RTDOSE")) == 4
    arrived = client.wait_job(lambda j: j["state"] in ("succeeded", "failed"),
                              study=later.study.study_instance_uid, kind="dose",
                              timeout_s=max(1.0, deadline - time.monotonic()))
    assert arrived["state"] == "succeeded", arrived["message"]
    assert len(client.jobs(study=later.study.study_instance_uid, kind="dose")) == 1
    for name in workers:
        assert stack.is_running(cfg, name)
    assert client.get("/rt/audit/verify").json()["ok"] is True


def test_a_postgresql_crash_during_a_job_loses_nothing(outage_stack):
    """The database server killed with SIGKILL (all its processes) during a Monte Carlo and while a plan
    arrives, restarted 20 s later with crash recovery, as systemd would."""
    cfg, postgres = outage_stack
    client = Client(cfg.orthanc_url)
    case = cases.small_phantom_case("postgres-crash")
    plan_id = rest_upload(client.base, [*case.ct, case.rtstruct, case.plan])[-1]
    client.wait_job(lambda j: j["state"] == "succeeded", study=case.study.study_instance_uid, kind="dose")
    job_id = client.post(f"/rt/instances/{plan_id}/dose", json={"primaries": 1_500_000}).json()["job"]["id"]
    deadline = time.monotonic() + 120
    while not mcsquare_running(cfg.data_dir):
        assert time.monotonic() < deadline, "no Monte Carlo started"
        time.sleep(0.3)
    postgres.crash()
    later = cases.small_phantom_case("stored-during-the-database-crash")
    rest_upload(client.base, [*later.ct, later.rtstruct, later.plan])
    time.sleep(20)
    postgres.start()
    stack.wait_for_health(cfg, timeout_s=120)
    done = client.wait_final(job_id, timeout_s=600)
    assert done["state"] == "succeeded", done["message"]
    assert len(_doses_made_by(client, job_id)) == 1
    arrived = client.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=later.study.study_instance_uid,
                              kind="dose", timeout_s=600)
    assert arrived["state"] == "succeeded", arrived["message"]
    assert all(stack.is_running(cfg, f"worker-{i}") for i in range(1, cfg.workers + 1))
    assert client.get("/rt/audit/verify").json()["ok"] is True
