"""A real Orthanc-RT stack for integration tests: Orthanc with the plugin and DICOMweb,
a real RQ worker, real Redis and PostgreSQL (skipped without a server, failed when CI requires one).

Started once per session on free ports in a temporary folder, with a short
StableAge and few Monte Carlo primaries so the suite stays fast.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from orthanc_rt.ops.viewer import ohif_dist
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.services import REDIS_TEST_URL, free_port, postgres_database
from tests.support.stack import (
    AUTH_USERS,
    AUTO_PLANNING,
    DOSE_CHECK,
    FAULT_JOB_TIMEOUT_S,
    ROBUSTNESS,
    STACK_REDIS_URL,
    TEST_PRIMARIES,
    WORKER_USER,
    Client,
    dicom_modalities,
)


@pytest.fixture(scope="session")
def stack_database() -> Iterator[str]:
    yield from postgres_database()


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
        orthanc_overrides={"OrthancRT": {"AutoPlanning": AUTO_PLANNING, "DoseCheck": DOSE_CHECK,
                                         "Robustness": ROBUSTNESS}},
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




@pytest.fixture(scope="session")
def auth_stack(tmp_path_factory) -> Iterator[StackConfig]:
    """orthanc_config/production.json with authentication on: own Redis (private port) and database."""
    for database_url in postgres_database():
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
            orthanc_overrides={"DicomModalities": dicom_modalities(free_port())},
        )
        try:
            stack.start(cfg)
            yield cfg
        finally:
            stack.stop(cfg)




@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory) -> Iterator[StackConfig]:
    """A stack the fault tests may break: two workers (one MCsquare thread each), own Redis on a
    private port, own database, short heartbeats and a 60 s job time limit."""
    for database_url in postgres_database():
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




@pytest.fixture
def orthanc(rt_stack) -> "Client":
    return Client(rt_stack.orthanc_url)




@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or not (ohif_dist() / "index.html").is_file():
        pytest.fail("Chromium or the OHIF viewer is missing: run ./orthanc-rt install --dev")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()
