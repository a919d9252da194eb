"""Orthanc's own index (and files) in PostgreSQL through Debian's orthanc-postgresql, as docker-compose runs it:
one database holds Orthanc's tables next to Orthanc-RT's, and two Orthanc instances with the plugin share it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import requests

from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from tests.support.cases import small_phantom_case
from tests.support.services import free_port, postgres_database


def _config(data_dir: Path, database_url: str, redis_url: str) -> StackConfig:
    return StackConfig(data_dir=data_dir, http_port=free_port(), dicom_port=free_port(), redis_url=redis_url,
                       database_url=database_url, orthanc_index_url=database_url, orthanc_storage="postgresql",
                       stable_age_s=2, workers=0)


@pytest.fixture(scope="module")
def two_orthancs(tmp_path_factory) -> Iterator[tuple[StackConfig, StackConfig, str]]:
    """Two Orthanc-RT instances (own folders and ports) on one PostgreSQL database and one private Redis."""
    for database_url in postgres_database():
        redis_url = f"redis://127.0.0.1:{free_port()}/0"  # ensure_redis starts a private one; stop() ends it
        first = _config(tmp_path_factory.mktemp("orthanc-a"), database_url, redis_url)
        second = _config(tmp_path_factory.mktemp("orthanc-b"), database_url, redis_url)
        try:
            stack.ensure_redis(first)
            for cfg in (first, second):  # one after the other: each runs Orthanc-RT's migrations at start-up
                stack.start_orthanc(cfg)
                stack.wait_for_health(cfg, need_workers=False)
            yield first, second, database_url
        finally:
            stack.stop(second)
            stack.stop(first)


def test_index_and_files_live_in_postgresql_and_are_shared(two_orthancs):
    first, second, database_url = two_orthancs
    ct = small_phantom_case("orthanc-index").ct
    stored = [requests.post(f"{first.orthanc_url}/instances", data=to_bytes(ds), timeout=30) for ds in ct]
    assert all(r.status_code == 200 for r in stored), [r.text for r in stored if r.status_code != 200][:1]
    ids = {r.json()["ID"] for r in stored}

    with psycopg.connect(database_url) as conn:
        tables = {name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        # Orthanc's tables next to Orthanc-RT's, in the one database.
        assert {"resources", "maindicomtags", "attachedfiles", "jobs", "measurements"} <= tables
        instances = {public for (public,) in conn.execute("SELECT publicid FROM resources WHERE resourcetype = 3")}
        assert instances == ids
        # The DICOM files themselves are large objects of the storage plugin, not files in a data folder.
        (stored_files,) = conn.execute("SELECT count(*) FROM storagearea").fetchone()
        assert stored_files >= len(ct)
    assert not [p for p in (first.data_dir / "orthanc-storage").rglob("*") if p.is_file()]  # no SQLite, no files

    for cfg in (first, second):
        system = requests.get(f"{cfg.orthanc_url}/system", timeout=10).json()
        assert "libOrthancPostgreSQLIndex.so" in system["DatabaseBackendPlugin"]
        assert "postgresql-index" in requests.get(f"{cfg.orthanc_url}/plugins", timeout=10).json()
    # The second instance never received anything, yet lists and serves what the first one stored.
    assert set(requests.get(f"{second.orthanc_url}/instances", timeout=10).json()) == ids
    one = stored[0].json()["ID"]
    served = requests.get(f"{second.orthanc_url}/instances/{one}/file", timeout=30)
    assert served.status_code == 200 and served.content == to_bytes(ct[0])
    # And both Orthanc-RT plugins answer from the same records.
    health = [requests.get(f"{cfg.orthanc_url}/rt/health", timeout=10).json() for cfg in (first, second)]
    assert all(h["checks"]["database"]["ok"] for h in health)

