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


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary folder, a free port), which the test may
    stop and start as an operator restarts one: the machine's shared server is never touched.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user."""

    def __init__(self) -> None:
        import glob
        import shutil
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            pytest.fail("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are missing: the PostgreSQL "
                        "restart test needs them (Debian package postgresql)")
        self.bin = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="orthanc-rt-pg-"))
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run([str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-U", "postgres", "--auth=trust",
                   "--no-sync", "-E", "UTF8"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-l", str(self.folder / "server.log"),
                   "-w", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                   "start"])

    def stop(self) -> None:
        """What `systemctl stop postgresql` does: fast shutdown, every connection closed."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop"])

    def crash(self) -> None:
        """SIGKILL the server and every process of it at once, as the out-of-memory killer of its postmaster and
        systemd's clean-up of the service would; `start` then recovers from the crash."""
        import signal

        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(p) == postmaster]
        for pid in [postmaster, *children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        import shutil

        if (self.folder / "data" / "postmaster.pid").exists():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, cmd: list[str]) -> None:
        import subprocess

        subprocess.run(self._as + cmd, check=True, capture_output=True, timeout=120)


def _parent_of(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None
