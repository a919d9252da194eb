"""A real Orthanc-RT stack for integration tests: Orthanc with the plugin and DICOMweb,
a real RQ worker, real Redis and PostgreSQL (SQLite when no server is reachable).

Started once per session on free ports in a temporary folder, with a short
StableAge and few Monte Carlo primaries so the suite stays fast.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterator

import pytest
import requests

from orthanc_rt import stack
from orthanc_rt.orthanc_api import orthanc_session
from orthanc_rt.stack import StackConfig
from tests.conftest import REDIS_TEST_URL, _postgres_database, free_port

STACK_REDIS_URL = os.environ.get("ORTHANC_RT_TEST_STACK_REDIS", "redis://127.0.0.1:6379/14")
TEST_PRIMARIES = 20_000
# One automatic planning rule, on an ROI name only tests/integration/test_planning.py uses.
AUTO_PLAN_ROI = "AUTOPLAN_PTV"
AUTO_PLANNING = {"Enabled": True,
                 "Protocols": {"test-1beam": {"prescription_gy": 2.0, "beam_count": 1, "beamlet_primaries": 500,
                                              "final_primaries": 100_000}},
                 "Rules": [{"Name": "autoplan-test", "TargetPattern": "AUTOPLAN_.*", "Workflow": "proton-impt",
                            "Protocol": "test-1beam"}]}


@pytest.fixture(scope="session")
def stack_database() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture(scope="session")
def rt_stack(tmp_path_factory, stack_database) -> Iterator[StackConfig]:
    from redis import Redis

    assert STACK_REDIS_URL != REDIS_TEST_URL
    cfg = StackConfig(
        data_dir=tmp_path_factory.mktemp("stack"),
        http_port=free_port(),
        dicom_port=free_port(),
        redis_url=STACK_REDIS_URL,
        database_url=stack_database,
        stable_age_s=2,
        workers=1,
        auto_dose={"Primaries": TEST_PRIMARIES, "WaitForCtSeconds": 600},
        orthanc_overrides={"OrthancRT": {"AutoPlanning": AUTO_PLANNING}},
        viewer_port=free_port(),
    )
    stack.ensure_redis(cfg)
    Redis.from_url(cfg.redis_url).flushdb()
    try:
        stack.start(cfg)
        yield cfg
    finally:
        stack.stop(cfg)
        Redis.from_url(cfg.redis_url).flushdb()


# The production configuration's users in tests: {name: (password, role)}; "nobody" has no role.
AUTH_USERS = {"ada": ("ada-pw-1", "admin"), "phil": ("phil-pw-2", "physicist"),
              "dora": ("dora-pw-3", "dosimetrist"), "vic": ("vic-pw-4", "viewer"), "nobody": ("nobody-pw-5", "")}
WORKER_USER = ("rt-worker", "worker-secret-6f1c")


@pytest.fixture(scope="session")
def auth_stack(tmp_path_factory) -> Iterator[StackConfig]:
    """orthanc_config/production.json with authentication on: own Redis (private port) and database."""
    for database_url in _postgres_database():
        cfg = StackConfig(
            data_dir=tmp_path_factory.mktemp("auth-stack"),
            http_port=free_port(),
            dicom_port=free_port(),
            redis_url=f"redis://127.0.0.1:{free_port()}/0",  # ensure_redis starts a private one; stop() ends it
            database_url=database_url,
            stable_age_s=2,
            workers=1,
            auto_dose={"Primaries": TEST_PRIMARIES, "WaitForCtSeconds": 600},
            template=stack.PROJECT_DIR / "orthanc_config" / "production.json",
            users=AUTH_USERS,
            worker_username=WORKER_USER[0],
            worker_password=WORKER_USER[1],
            client_auth=("ada", AUTH_USERS["ada"][0]),
            viewer_port=free_port(),  # the OHIF viewer must not open a way around the login
        )
        try:
            stack.start(cfg)
            yield cfg
        finally:
            stack.stop(cfg)


FAULT_JOB_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory) -> Iterator[StackConfig]:
    """A stack the fault tests may break: two workers (one MCsquare thread each), own Redis on a
    private port, own database, short heartbeats and a 60 s job time limit."""
    for database_url in _postgres_database():
        cfg = StackConfig(
            data_dir=tmp_path_factory.mktemp("fault-stack"),
            http_port=free_port(),
            dicom_port=free_port(),
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            database_url=database_url,
            stable_age_s=2,
            workers=2,
            mcsquare_threads=1,
            auto_dose={"Primaries": TEST_PRIMARIES, "WaitForCtSeconds": 600},
            orthanc_overrides={"OrthancRT": {"DoseJobTimeoutSeconds": FAULT_JOB_TIMEOUT_S}},
            worker_settings={"ORTHANC_RT_WORKER_HEARTBEAT_SECONDS": "5",
                             "ORTHANC_RT_WORKER_MAINTENANCE_SECONDS": "10"},
        )
        try:
            stack.start(cfg)
            yield cfg
        finally:
            stack.stop(cfg)


def as_user(cfg: StackConfig, user: str | None) -> "Client":
    auth = None if user is None else (user, AUTH_USERS[user][0])
    return Client(cfg.orthanc_url, auth=auth)


@pytest.fixture
def orthanc(rt_stack) -> "Client":
    return Client(rt_stack.orthanc_url)


class Client:
    """requests against the stack's Orthanc, with the waits the tests need."""

    def __init__(self, base: str, auth: tuple[str, str] | None = None):
        self.base = base
        self.http = orthanc_session(auth)  # resends requests whose connection Orthanc dropped unanswered

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.base + path, timeout=60, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.http.put(self.base + path, timeout=30, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.http.delete(self.base + path, timeout=30, **kw)

    def jobs(self, **filters: Any) -> list[dict[str, Any]]:
        r = self.get("/rt/jobs", params={"limit": 500, **filters})
        r.raise_for_status()
        return r.json()["items"]

    def wait_job(self, predicate, *, timeout_s: float = 300, **filters: Any) -> dict[str, Any]:
        """Poll /rt/jobs until a job matching `predicate` exists; returns it."""
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.jobs(**filters)
            for job in seen:
                if predicate(job):
                    return job
            time.sleep(0.5)
        raise AssertionError(f"no job matched within {timeout_s} s; jobs seen: {seen}")

    def wait_final(self, job_id: str, *, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.get(f"/rt/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not final after {timeout_s} s: {job}")

    def study_instances(self, study_uid: str, modality: str) -> list[str]:
        found = self.post("/tools/find", json={"Level": "Instance", "Query": {
            "StudyInstanceUID": study_uid, "Modality": modality}}).json()
        return found
