"""Faults injected into beamlet parts through `worker.engines.beamlet_fanout.part_hook`.

In the test process (a plan job's parent side), a test sets the hook with
monkeypatch. Worker processes get it from this module run as their entry
point, `python -m tests.support.beamlet_faults --fail-part K [worker
options]`, which sets the hook and then runs `python -m worker`'s main: RQ's
work-horses are forks of the worker, so every part they run sees it
(tests.support.rq_workers starts workers this way when asked to).
"""
from __future__ import annotations

import argparse
from typing import Callable

MODULE = "tests.support.beamlet_faults"


def fail_first_attempt(part_number: int) -> Callable[[int, int], None]:
    """A part hook: the first attempt of part `part_number` (1-based) raises, wherever it runs."""

    def hook(index: int, attempt: int) -> None:
        if index + 1 == part_number and attempt == 1:
            raise RuntimeError(f"fault injected into the first attempt of part {part_number}")

    return hook


def _main() -> None:
    from worker import __main__ as worker_main
    from worker.engines import beamlet_fanout

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", add_help=False)
    parser.add_argument("--fail-part", type=int, required=True)
    args, worker_args = parser.parse_known_args()
    beamlet_fanout.part_hook = fail_first_attempt(args.fail_part)
    worker_main.main(worker_args)


if __name__ == "__main__":
    _main()
