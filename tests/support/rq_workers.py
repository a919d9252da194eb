"""Real RQ worker processes (`python -m worker`, as the launcher starts them) for fan-out tests and bench/."""
from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterator
from unittest import mock

from redis import Redis
from rq import Worker

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from tests.support import beamlet_faults


@contextmanager
def rq_workers(redis_url: str, count: int, data_dir: Path, *, threads: int = 1, fail_part: int | None = None,
               timeout_s: float = 90.0, settings: dict[str, str] | None = None) -> Iterator[StackConfig]:
    """`count` workers on every queue, each letting MCsquare use `threads` threads; stopped afterwards.

    With `fail_part`, the first attempt of that beamlet part (1-based) raises in whichever worker takes it
    (tests.support.beamlet_faults). `settings`: more ORTHANC_RT_* variables for the workers."""
    # The launcher's worker environment runs this checkout's code (stack.worker_env).
    cfg = StackConfig(data_dir=Path(data_dir), redis_url=redis_url, mcsquare_threads=threads,
                      worker_settings=dict(settings or {}))
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    redis = Redis.from_url(redis_url)
    try:
        with _faulty_entry_point(fail_part) if fail_part is not None else nullcontext():
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


def _faulty_entry_point(fail_part: int) -> ContextManager[Any]:
    """The launcher's worker command with `-m worker` replaced by the fault-injecting entry point.

    Patched rather than spawned here so the workers keep the launcher's pid files, logs and sessions, which
    `stack.stop` and `stack.is_running` rely on."""
    launcher_command = stack.worker_command

    def command(cfg: StackConfig, name: str) -> tuple[list[str], dict[str, str]]:
        cmd, env = launcher_command(cfg, name)
        at = cmd.index("worker")  # python -m worker --name NAME
        return [*cmd[:at], beamlet_faults.MODULE, "--fail-part", str(fail_part), *cmd[at + 1:]], env

    return mock.patch.object(stack, "worker_command", command)


def pause(seconds: float) -> str:
    """An RQ job that only takes time: it keeps a real worker busy while a test breaks Redis."""
    time.sleep(seconds)
    return "paused"
