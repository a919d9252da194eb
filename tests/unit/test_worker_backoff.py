"""The worker's waits for Redis: 1, 2, 4 ... 30 s, and a stop request ends the wait (the outage itself is tested
with a real worker and redis-server in tests/integration/test_worker_outage.py)."""
from __future__ import annotations

from itertools import islice

from redis import Redis

from tests.support.services import free_port
from worker.resilient import MAX_WAIT_S, backoff_delays, wait_for_redis


def test_delays_double_up_to_the_most():
    assert list(islice(backoff_delays(), 8)) == [1, 2, 4, 8, 16, MAX_WAIT_S, MAX_WAIT_S, MAX_WAIT_S]


def test_waiting_for_an_absent_redis_backs_off_until_stopped():
    slept: list[float] = []
    nobody = Redis(port=free_port(), socket_connect_timeout=0.5)  # a free port: connection refused
    assert wait_for_redis(nobody, stopped=lambda: len(slept) >= 4, sleep=slept.append) is False
    assert slept == [1, 2, 4, 8]
