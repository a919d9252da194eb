"""Test services: free ports, throw-away PostgreSQL databases, the Redis databases tests use."""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from orthanc_rt.records import db

PG_ADMIN_URL = os.environ.get("ORTHANC_RT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


REDIS_TEST_URL = os.environ.get("ORTHANC_RT_TEST_REDIS", "redis://127.0.0.1:6379/13")


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"orthanc_rt_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("ORTHANC_RT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        yield url
    finally:
        db.engine_for.cache_clear()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
