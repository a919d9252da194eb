"""Every service comes back by itself: the launcher's supervisor restarts a killed worker, Orthanc, Redis and the
viewer, and removes what a killed worker leaves behind (its RQ scheduler); `stop` finds those leftovers too.

A stack of its own (own Redis on a private port, SQLite), every process killed with SIGKILL as the kernel's
out-of-memory killer or an operator's `kill -9` would.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from redis import Redis

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from orthanc_rt.ops.viewer import ohif_dist
from tests.support.services import free_port

pytestmark = pytest.mark.integration


def _until(what, timeout_s: float = 90.0, step_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"not within {timeout_s} s: {what.__doc__ or what}")


def _health(cfg: StackConfig) -> dict:
    try:
        return requests.get(f"{cfg.orthanc_url}/rt/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return {}


@pytest.fixture
def supervised(tmp_path):
    if not (ohif_dist() / "index.html").is_file():
        pytest.fail("the OHIF viewer is missing: run ./orthanc-rt install --dev")
    cfg = StackConfig(data_dir=tmp_path / "stack", http_port=free_port(), dicom_port=free_port(),
                      redis_url=f"redis://127.0.0.1:{free_port()}/0", stable_age_s=2, workers=1,
                      viewer_port=free_port())
    stopping = threading.Event()
    try:
        stack.start(cfg)
        supervisor = threading.Thread(target=stack.supervise, args=(cfg,),
                                      kwargs={"period_s": 1.0, "stop_when": stopping}, daemon=True)
        supervisor.start()
        yield cfg
    finally:
        stopping.set()
        stack.stop(cfg)


def test_killed_services_come_back_and_leave_nothing_behind(supervised):
    cfg = supervised
    worker = stack.read_pid(cfg, "worker-1")
    scheduler = _until(lambda: stack.left_behind(cfg, "worker-1"), 60)  # RQ's scheduler, a child of the worker
    os.kill(worker, signal.SIGKILL)

    def replaced() -> bool:
        """a new worker-1, registered with RQ, and the old one's scheduler gone"""
        pid = stack.read_pid(cfg, "worker-1")
        return pid not in (None, worker) and stack.is_running(cfg, "worker-1") \
            and not any(stack.process_alive(p) for p in scheduler) \
            and _health(cfg).get("checks", {}).get("workers", {}).get("count", 0) >= 1
    _until(replaced)

    orthanc = stack.read_pid(cfg, "orthanc")
    os.kill(orthanc, signal.SIGKILL)
    _until(lambda: stack.read_pid(cfg, "orthanc") != orthanc and _health(cfg).get("status") == "ok")

    redis = stack.read_pid(cfg, "redis")
    os.kill(redis, signal.SIGKILL)

    def redis_back() -> bool:
        """Redis answers again"""
        try:
            return bool(Redis.from_url(cfg.redis_url, socket_connect_timeout=1).ping())
        except Exception:
            return False
    _until(redis_back)
    assert stack.read_pid(cfg, "redis") != redis
    record = _until(lambda: stack.supervisor_record(cfg).get("redis"))  # what `./orthanc-rt status` shows
    assert stack.supervisor_record(cfg)["worker-1"]["restarts"] == 1 and record["restarts"] == 1

    viewer = stack.read_pid(cfg, "viewer")
    assert _viewer_answers(cfg)
    os.kill(viewer, signal.SIGKILL)

    def viewer_back() -> bool:
        """a new viewer serves OHIF again"""
        return stack.read_pid(cfg, "viewer") not in (None, viewer) and _viewer_answers(cfg)
    _until(viewer_back)
    assert _until(lambda: stack.supervisor_record(cfg).get("viewer"))["restarts"] == 1


def _viewer_answers(cfg: StackConfig) -> bool:
    try:
        page = requests.get(f"http://127.0.0.1:{cfg.viewer_port}/", timeout=5)
        return page.status_code == 200 and "<html" in page.text.lower()
    except requests.RequestException:
        return False


def test_stop_removes_what_a_killed_worker_left(tmp_path):
    cfg = StackConfig(data_dir=tmp_path / "stack", http_port=free_port(), dicom_port=free_port(),
                      redis_url=f"redis://127.0.0.1:{free_port()}/0", stable_age_s=2, workers=1)
    try:
        stack.start(cfg)
        orphans = _until(lambda: stack.left_behind(cfg, "worker-1"), 60)
        os.kill(stack.read_pid(cfg, "worker-1"), signal.SIGKILL)
        time.sleep(1)
        assert all(stack.process_alive(p) for p in orphans)  # the kernel re-parents them: nothing else removes them
    finally:
        stopped = stack.stop(cfg)
    assert "worker-1" in stopped and not any(stack.process_alive(p) for p in orphans)
    assert all(stack.left_behind(cfg, name) == [] for name in ("orthanc", "worker-1", "redis"))
