"""The Redis side of jobs: RQ queues, enqueueing, cancelling, queue statistics.

One queue per kind of work, so a long Monte Carlo never waits behind, or
blocks, quick work. Jobs are enqueued by function path so the plugin never
imports the worker's OpenTPS code.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RqJob
from rq.job import JobStatus
from rq.worker import Worker

from orthanc_rt.scheduling import kinds

# Kind (and sub-job) name -> RQ queue, in the order workers take from them (kinds.QUEUE_PRIORITY says why).
QUEUE_NAMES = kinds.queue_names()
# The functions RQ calls (all in worker.tasks), by path: RQ stores the string with every job, so a job queued
# before an upgrade runs after it only if its path still resolves. Never rename RUN_JOB and ON_FAILURE: database
# jobs wait in the queues across upgrades. Beamlet parts live only as long as the plan job that queued them, so
# workers drop, at start-up, parts queued under any other path (worker.__main__, docs/production.md).
RUN_JOB = "worker.tasks.run_job"
ON_FAILURE = "worker.tasks.on_failure"
RUN_PART = "worker.tasks.run_part"
RUN_SCENARIO = "worker.tasks.run_scenario"  # a robustness evaluation's scenario (worker.engines.scenario_fanout)
# The field of an RQ worker's Redis hash where an Orthanc-RT worker publishes the settings it runs with
# (`Settings.for_workers`); it lives and dies with the worker's registration.
WORKER_SETTINGS_FIELD = "orthanc_rt_settings"
# Back-off for transient faults (Orthanc or the database briefly unreachable).
RETRY_INTERVALS_S = [10, 30, 90]


@lru_cache(maxsize=4)
def redis_for(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)


class Dispatcher:
    """Pushes job ids to RQ; every call may raise redis.RedisError when Redis is down."""

    def __init__(self, redis_url: str, *, job_timeout_s: int, plan_timeout_s: int = 6 * 3600):
        """`job_timeout_s` and `plan_timeout_s`: the settings that give the dose and plan time limits."""
        self.redis = redis_for(redis_url)
        self.timeouts = kinds.time_limits({"dose_job_timeout_seconds": job_timeout_s,
                                           "plan_job_timeout_seconds": plan_timeout_s})

    def queue(self, kind: str) -> Queue:
        return Queue(QUEUE_NAMES[kind], connection=self.redis)

    def enqueue(self, job_id: str, kind: str) -> None:
        # An RQ job of the same id left by an earlier attempt is replaced.
        self.queue(kind).enqueue(
            RUN_JOB,
            job_id,
            job_id=job_id,
            job_timeout=self.timeouts[kind],
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=len(RETRY_INTERVALS_S), interval=RETRY_INTERVALS_S),
            on_failure=Callback(ON_FAILURE),
            description=f"Orthanc-RT {kind} job {job_id}",
        )

    def knows(self, job_id: str) -> bool:
        """Whether Redis holds the RQ job (queued, scheduled for retry, running or finished)."""
        return RqJob.exists(job_id, connection=self.redis)

    def runs(self, job_id: str) -> bool:
        """Whether RQ still has the job to run or running: queued, scheduled for a retry, deferred, started."""
        try:
            rq_job = RqJob.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return False
        return rq_job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED,
                                                    JobStatus.STARTED)

    def cancel(self, job_id: str) -> str:
        """Stop the RQ job: dequeue it, or kill the work-horse running it (and so MCsquare)."""
        try:
            rq_job = RqJob.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return "not in redis"
        status = rq_job.get_status(refresh=True)
        if status == JobStatus.STARTED:
            try:
                send_stop_job_command(self.redis, job_id)
            except InvalidJobOperation:
                pass
            return "stop sent to worker"
        try:
            rq_job.cancel()
        except InvalidJobOperation:
            pass
        return f"removed from queue ({status})"

    def stats(self) -> dict[str, Any]:
        workers = Worker.all(connection=self.redis)
        return {
            "queues": {kind: len(Queue(name, connection=self.redis)) for kind, name in QUEUE_NAMES.items()},
            "workers": [
                {"name": w.name, "state": w.get_state(), "queues": w.queue_names(),
                 "current_job": w.get_current_job_id(), "settings": self._worker_settings(w),
                 # RQ refreshes it at least every worker_ttl (420 s) when idle, every job-monitoring
                 # interval while a job runs; /rt/metrics shows its age.
                 "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None}
                for w in workers
            ],
            "redis_version": self.redis.info("server").get("redis_version"),
        }

    def queue_lengths(self) -> dict[str, int]:
        """RQ queue name -> jobs waiting in it, in the order workers take from the queues."""
        return {name: len(Queue(name, connection=self.redis)) for name in kinds.QUEUE_PRIORITY}

    def _worker_settings(self, worker: Worker) -> dict[str, Any] | None:
        """What the worker published of its settings; None for a worker that publishes nothing (plain `rq`)."""
        raw = self.redis.hget(worker.key, WORKER_SETTINGS_FIELD)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None
