"""An RQ worker that outlives Redis, PostgreSQL and Orthanc outages.

RQ's own loop retries only one call (waiting for the next job) on a lost Redis connection. Any other Redis
call that fails (a heartbeat while a job runs, the suspension check, registry maintenance) and any database
error in the maintenance (RQ runs `tasks.on_failure` for abandoned jobs in the worker itself) ends
`Worker.work`: the process exits and every job stays queued until someone restarts it. A restarted Redis
without persistence also forgets the worker's registration, so `/rt/health` counts no workers although one
listens.

`ResilientWorker` keeps the process: while a job runs it keeps waiting for the work-horse when a heartbeat
cannot be sent; when the loop ends on an outage it waits for Redis with back-off and listens again; after
Redis came back empty it registers again. Faults other than outages still end the worker (a bug should not
spin in a loop). With every registration it publishes the settings it runs with, which `/rt/health` shows.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker
from rq.worker import StopRequested

from orthanc_rt.scheduling.queue import WORKER_SETTINGS_FIELD
from worker.jobs.frame import TRANSIENT

log = logging.getLogger("orthanc_rt.worker")

# Faults of a service, not of the worker: wait them out. RedisTimeoutError: a Redis that hangs (RQ quits on it).
OUTAGES = (RedisConnectionError, RedisTimeoutError, *TRANSIENT)
FIRST_WAIT_S = 1.0
MAX_WAIT_S = 30.0
T = TypeVar("T")


def backoff_delays(first_s: float = FIRST_WAIT_S, max_s: float = MAX_WAIT_S) -> Iterator[float]:
    """1, 2, 4, ... seconds, then `max_s` for ever."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, max_s)


def wait_for_redis(redis: Redis, *, stopped: Callable[[], bool] = lambda: False,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """Ping until Redis answers, with back-off; False when `stopped()` turned true meanwhile."""
    for attempt, delay in enumerate(backoff_delays()):
        if stopped():
            return False
        try:
            redis.ping()
            if attempt:
                log.warning("Redis answers again after %d attempts", attempt + 1)
            return True
        except RedisError as exc:
            if attempt == 0 or delay == MAX_WAIT_S:
                log.warning("Redis unreachable (%s: %s); trying again in %.0f s", type(exc).__name__, exc, delay)
            sleep(delay)
    return False  # pragma: no cover  (backoff_delays never ends)


def once_redis_answers(redis: Redis, call: Callable[[], T]) -> T:
    """`call()` once Redis answers, and again after waiting while it fails on a lost connection (start-up:
    RQ's Worker() already talks to Redis)."""
    while True:
        wait_for_redis(redis)
        try:
            return call()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("Redis went away again (%s); waiting for it", type(exc).__name__)
            time.sleep(FIRST_WAIT_S)


class ResilientWorker(Worker):
    """`rq.Worker` that waits out outages instead of exiting (module docstring).

    `published`: the settings shown for this worker in /rt/health (`Settings.for_workers`)."""

    _outage: BaseException | None = None

    def __init__(self, *args: Any, published: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.published = published or {}

    def register_birth(self) -> None:
        super().register_birth()
        if self.published:
            self.connection.hset(self.key, WORKER_SETTINGS_FIELD, json.dumps(self.published))

    def work(self, burst: bool = False, **options: Any) -> bool:  # type: ignore[override]
        worked = False
        delays = backoff_delays()
        while True:
            self._outage = None
            started = time.monotonic()
            try:
                worked = super().work(burst=burst, **options) or worked
            except OUTAGES as exc:  # registering at the start failed
                self._outage = exc
            except StopRequested:
                return worked
            if self._outage is None or self._stop_requested or burst:
                return worked
            if time.monotonic() - started > 2 * MAX_WAIT_S:  # a new outage, not the same one going on
                delays = backoff_delays()
            delay = next(delays)
            log.warning("worker %s: %s: %s; listening again in %.0f s (after Redis answers)", self.name,
                        type(self._outage).__name__, self._outage, delay)
            try:
                time.sleep(delay)
                if not wait_for_redis(self.connection, stopped=lambda: self._stop_requested):
                    return worked
                self._forget_registration()
            except StopRequested:  # SIGTERM while waiting (RQ's handler raises it when idle)
                return worked

    # RQ calls these from its loop; an outage noted here makes `work` wait and start again instead of exiting.
    def check_for_suspension(self, burst: bool) -> None:
        with self._noting_outages():
            super().check_for_suspension(burst)

    def run_maintenance_tasks(self) -> None:
        with self._noting_outages():
            super().run_maintenance_tasks()

    def dequeue_job_and_maintain_ttl(self, *args: Any, **kwargs: Any) -> Any:
        with self._noting_outages():
            result = super().dequeue_job_and_maintain_ttl(*args, **kwargs)
        self._outage = None  # RQ waited out the lost connections it met in there (its maintenance's too)
        return result

    def execute_job(self, *args: Any, **kwargs: Any) -> None:
        with self._noting_outages():
            super().execute_job(*args, **kwargs)

    # While a work-horse runs, the worker only keeps Redis informed: a failed update must not abandon the job.
    def maintain_heartbeats(self, job: Any) -> None:
        try:
            super().maintain_heartbeats(job)
        except RedisError as exc:
            log.warning("worker %s: heartbeat of job %s not sent (%s); the job goes on", self.name, job.id,
                        type(exc).__name__)

    def set_current_job_working_time(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().set_current_job_working_time(*args, **kwargs)
        except RedisError:
            pass  # shown in RQ's statistics only

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # queued in the caller's pipeline, which raises
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
            self._register_again_if_forgotten()
        except RedisError as exc:
            log.debug("worker %s: heartbeat not sent (%s)", self.name, type(exc).__name__)

    def teardown(self) -> None:
        """RQ's teardown stops at its first failed Redis call: then stop listening without Redis."""
        try:
            super().teardown()
        except OUTAGES as exc:
            self._outage = self._outage or exc
            if getattr(self, "pubsub_thread", None):
                self.pubsub_thread.stop()
                self.pubsub_thread.join(timeout=1)
                self.pubsub_thread = None

    @contextmanager
    def _noting_outages(self) -> Iterator[None]:
        try:
            yield
        except OUTAGES as exc:
            self._outage = exc
            raise

    def _register_again_if_forgotten(self) -> None:
        """A Redis restarted without its data has forgotten this worker: register it again."""
        if self.is_horse or self.connection.hexists(self.key, "birth"):
            return
        self.connection.delete(self.key)  # the heartbeat just made a key holding only last_heartbeat
        self.register_birth()
        self.set_state(self.get_state())
        log.warning("worker %s: registered again (Redis had forgotten it)", self.name)

    def _forget_registration(self) -> None:
        """Before starting again: a registration left by the interrupted loop would refuse the new one."""
        try:
            self.register_death()
        except RedisError:
            pass  # `work` registers again or fails again, and waits again
