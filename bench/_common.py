"""Helpers shared by the benchmarks: temporary stacks on free ports, timing, printing."""
from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import requests

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from tests.support.services import free_port

BENCH_REDIS_URL = "redis://127.0.0.1:6379/11"


def config(name: str, **kw) -> StackConfig:
    return StackConfig(data_dir=Path(tempfile.mkdtemp(prefix=f"orthanc-rt-bench-{name}-")), http_port=free_port(),
                       dicom_port=free_port(), redis_url=BENCH_REDIS_URL, **kw)


@contextmanager
def running(cfg: StackConfig, *, plugin: bool = True, worker: bool = True) -> Iterator[StackConfig]:
    """A stack (or a plain Orthanc without our plugin) that is stopped afterwards."""
    try:
        if plugin:
            stack.ensure_redis(cfg)
            stack.start_orthanc(cfg)
            if worker:
                stack.start_worker(cfg)
            stack.wait_for_health(cfg, need_workers=worker)
        else:
            cfg.orthanc_overrides = {"Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
                                     "PythonScript": None}
            stack.start_orthanc(cfg)
            _wait_for_orthanc(cfg)
        yield cfg
    finally:
        stack.stop(cfg)


def _wait_for_orthanc(cfg: StackConfig, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{cfg.orthanc_url}/system", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"plain Orthanc did not start; see {cfg.log_dir}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"
