"""A real worker (`python -m worker`) through a Redis restart, idle or busy with a job: it keeps running,
registers again and takes the next job. The test starts its own redis-server on a free port (never the
machine's Redis) and stops it for 20 s, as an operator restarting Redis would."""
from __future__ import annotations

import time

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.job import Job as RqJob
from rq.job import JobStatus

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from orthanc_rt.records import db
from orthanc_rt.scheduling.queue import QUEUE_NAMES, Dispatcher
from tests.support.rq_workers import pause, rq_workers
from tests.support.services import free_port

pytestmark = pytest.mark.integration

OUTAGE_S = 20
# The fault stack's short intervals: the worker's heartbeat and maintenance then fall inside the outage.
SHORT_INTERVALS = {"ORTHANC_RT_WORKER_HEARTBEAT_SECONDS": "5", "ORTHANC_RT_WORKER_MAINTENANCE_SECONDS": "10"}


def _watch(cfg: StackConfig, name: str, seconds: float) -> None:
    """Fail as soon as the worker process is gone during the next `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert stack.is_running(cfg, name), _log_tail(cfg, name)
        time.sleep(0.5)


def _log_tail(cfg: StackConfig, name: str) -> str:
    log = cfg.log_dir / f"{name}.log"
    return f"{name} exited; last lines of its log:\n" + (log.read_text(errors="replace")[-3000:]
                                                          if log.exists() else "")


def _wait_registered(redis: Redis, cfg: StackConfig, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert stack.is_running(cfg, "worker-1"), _log_tail(cfg, "worker-1")
        try:
            if Worker.all(connection=redis):
                return
        except Exception:  # Redis still starting
            pass
        time.sleep(0.5)
    pytest.fail(f"the worker did not register again within {timeout_s:.0f} s:\n{_log_tail(cfg, 'worker-1')}")


def _wait_status(rq_job: RqJob, cfg: StackConfig, status: JobStatus, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while rq_job.get_status(refresh=True) != status and time.monotonic() < deadline:
        assert stack.is_running(cfg, "worker-1"), _log_tail(cfg, "worker-1")
        time.sleep(0.3)
    assert rq_job.get_status(refresh=True) == status, _log_tail(cfg, "worker-1")


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_worker_survives_a_redis_restart_and_runs_the_next_job(tmp_path, busy):
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    own = StackConfig(data_dir=tmp_path, redis_url=redis_url)
    assert stack.ensure_redis(own) == "started"  # a private redis-server, pid file in tmp_path/run
    db.upgrade(own.db_url)
    redis = Redis.from_url(redis_url, socket_connect_timeout=2)
    with rq_workers(redis_url, 1, tmp_path, settings=SHORT_INTERVALS) as cfg:
        if busy:  # a job that outlasts the outage: the worker watches its work-horse meanwhile
            running = Queue(QUEUE_NAMES["dose"], connection=redis).enqueue(
                f"{pause.__module__}.pause", OUTAGE_S + 10, job_timeout=300)
            _wait_status(running, cfg, JobStatus.STARTED, timeout_s=30)
        assert stack.stop_service(cfg, "redis")
        _watch(cfg, "worker-1", OUTAGE_S)
        assert stack.ensure_redis(cfg) == "started"  # empty, as after a restart without persistence
        _wait_registered(redis, cfg, timeout_s=90)  # /rt/health counts registered workers
        # ... and shows what each one runs with (rq_workers' one MCsquare thread, not the default 0).
        [shown] = Dispatcher(redis_url, job_timeout_s=60).stats()["workers"]
        assert shown["settings"]["mcsquare_threads"] == 1, shown

        job_id = "dose-after-the-restart"  # not in the database: run_job says so and finishes
        Dispatcher(redis_url, job_timeout_s=60).enqueue(job_id, "dose")
        rq_job = RqJob.fetch(job_id, connection=redis)
        _wait_status(rq_job, cfg, JobStatus.FINISHED, timeout_s=90)
        assert rq_job.return_value() == {"skipped": f"no job {job_id} in the database"}
        _watch(cfg, "worker-1", 2)


def test_a_worker_started_before_redis_waits_for_it(tmp_path):
    """RQ's Worker() already talks to Redis: a worker (re)started while Redis is down, as after a reboot or in
    the middle of a Redis restart, must wait rather than exit."""
    cfg = StackConfig(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    db.upgrade(cfg.db_url)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        stack.start_worker(cfg, 1)
        _watch(cfg, "worker-1", OUTAGE_S)  # start-up (OpenTPS' import included) and then waiting
        assert stack.ensure_redis(cfg) == "started"
        redis = Redis.from_url(cfg.redis_url, socket_connect_timeout=2)
        _wait_registered(redis, cfg, timeout_s=90)
        Dispatcher(cfg.redis_url, job_timeout_s=60).enqueue("dose-after-the-start", "dose")
        _wait_status(RqJob.fetch("dose-after-the-start", connection=redis), cfg, JobStatus.FINISHED, timeout_s=90)
    finally:
        stack.stop(cfg)
