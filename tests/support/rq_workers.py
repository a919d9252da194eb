"""Real RQ worker processes (`python -m worker`, as the launcher starts them) for fan-out tests and bench/."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from redis import Redis
from rq import Worker

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig


@contextmanager
def rq_workers(redis_url: str, count: int, data_dir: Path, *, threads: int = 1,
               env: dict[str, str] | None = None, timeout_s: float = 90.0) -> Iterator[StackConfig]:
    """`count` workers on every queue, each letting MCsquare use `threads` threads; stopped afterwards."""
    # This checkout's code, whatever the caller's PYTHONPATH (the workers run in `data_dir`).
    python_path = os.pathsep.join(filter(None, [str(stack.PROJECT_DIR), os.environ.get("PYTHONPATH", "")]))
    cfg = StackConfig(data_dir=Path(data_dir), redis_url=redis_url, mcsquare_threads=threads,
                      worker_settings={"PYTHONPATH": python_path, **(env or {})})
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    redis = Redis.from_url(redis_url)
    try:
        for index in range(1, count + 1):
            stack.start_worker(cfg, index)
        deadline = time.monotonic() + timeout_s
        names = [f"worker-{index}" for index in range(1, count + 1)]
        while len(Worker.all(connection=redis)) < count:
            if time.monotonic() > deadline or not all(stack.is_running(cfg, name) for name in names):
                raise RuntimeError(f"{count} workers did not register within {timeout_s:.0f} s; see {cfg.log_dir}")
            time.sleep(0.2)
        yield cfg
    finally:
        stack.stop(cfg)
