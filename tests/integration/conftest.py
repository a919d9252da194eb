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
from orthanc_rt.stack import StackConfig
from tests.conftest import REDIS_TEST_URL, _postgres_database, free_port

STACK_REDIS_URL = os.environ.get("ORTHANC_RT_TEST_STACK_REDIS", "redis://127.0.0.1:6379/14")
TEST_PRIMARIES = 20_000


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


@pytest.fixture
def orthanc(rt_stack) -> "Client":
    return Client(rt_stack.orthanc_url)


class Client:
    """requests against the stack's Orthanc, with the waits the tests need."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()

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
