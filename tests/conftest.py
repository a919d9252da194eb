"""Shared fixtures: databases (SQLite file and PostgreSQL), Redis, a running Orthanc-RT stack.

PostgreSQL tests use ORTHANC_RT_TEST_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/postgres) to create a throw-away
database; without a server they are skipped, unless
ORTHANC_RT_REQUIRE_POSTGRES=1 (CI sets it) turns that into a failure.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from orthanc_rt.records import db
from tests.support.services import REDIS_TEST_URL, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty, migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
        db.upgrade(url)
        yield url
    else:
        for url in postgres_database():
            db.upgrade(url)
            yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_TEST_URL}: {exc}")
    yield REDIS_TEST_URL
    client.flushdb()
