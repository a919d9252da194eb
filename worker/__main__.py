"""`python -m worker`: an RQ worker for Orthanc-RT's queues.

It runs with RQ's scheduler (retries with back-off need it), removes
job folders left behind by a worker that was killed, and waits out Redis,
database and Orthanc outages instead of exiting (`worker.resilient`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import shutil
from pathlib import Path

from redis import Redis
from rq import Queue

from orthanc_rt.scheduling import kinds
from orthanc_rt.scheduling.queue import QUEUE_NAMES, RUN_PART, redis_for
from orthanc_rt.settings import Settings
from worker.resilient import ResilientWorker, once_redis_answers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", nargs="+", choices=list(QUEUE_NAMES), default=list(QUEUE_NAMES),
                        help="kinds of work to take (default: all)")
    parser.add_argument("--name", help="worker name shown in /rt/health")
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    args = parser.parse_args(argv)

    _configure_logging()
    settings = Settings.from_env()
    _remove_stale_job_folders(Path(settings.work_dir))
    redis = redis_for(settings.redis_url)
    once_redis_answers(redis, lambda: _drop_stranded_parts(redis))  # a worker started before Redis waits
    _preload()
    # In QUEUE_NAMES' order (its priority), whatever order --queues gave; several kinds share a queue
    # (analysis, sr): listen to each queue once.
    queues = list(dict.fromkeys(QUEUE_NAMES[k] for k in QUEUE_NAMES if k in args.queues))
    # A killed worker's job is found by RQ's registry cleanup once its heartbeat (interval + 60 s)
    # has lapsed; the cleanup runs every `maintenance` seconds in some worker and hands the job to
    # tasks.on_failure (AbandonedJobError) and to RQ's Retry. docs/reliability-security.md gives the timing.
    worker = once_redis_answers(redis, lambda: ResilientWorker(  # Worker() already names its Redis connection
        queues, connection=redis, name=args.name, job_monitoring_interval=settings.worker_heartbeat_seconds,
        maintenance_interval=settings.worker_maintenance_seconds, worker_ttl=settings.worker_maintenance_seconds + 15,
        published=settings.for_workers()))
    worker.work(with_scheduler=True, burst=args.burst)


def _configure_logging() -> None:
    """Our own INFO lines (job stages, fan-out summaries); OpenTPS' only from WARNING up.

    At INFO OpenTPS logs whole weight vectors and every MCsquare input file, which buries what an operator
    needs. Importing OpenTPS replaces the root logger's handlers (opentps.core's dictConfig) but leaves the
    level of the "opentps" logger, set here, alone.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("opentps").setLevel(logging.WARNING)


def _preload() -> None:
    """Import the job modules the registry marks (OpenTPS with them) and read the beam model once, here: RQ
    forks a work-horse per job, and every fork inherits them instead of spending about a second loading them
    again."""
    for module in kinds.preload_modules():
        importlib.import_module(module)
    from worker.engines import proton_dose as dose_engine

    dose_engine.default_beam_model()


def _drop_stranded_parts(redis: Redis) -> list[str]:
    """Remove beamlet parts queued under a function path other than today's (returns their ids).

    Such parts were queued by a plan job of an earlier version (0.1 queued them as
    `worker.beamlet_fanout.run_part`): RQ could not import that path and would fail them after their retries.
    They are not work to save: their plan job died with the workers stopped for the upgrade, and its retry fans
    out again under RUN_PART with a new fan-out id, so nobody waits for them.
    """
    queue = Queue(kinds.BEAMLETS_QUEUE, connection=redis)
    stranded = [job for job in queue.get_jobs() if job.func_name != RUN_PART]
    for job in stranded:
        job.delete()
    if stranded:
        logging.getLogger("orthanc_rt.worker").warning(
            "dropped %d beamlet parts queued by an earlier version (%s)", len(stranded),
            ", ".join(sorted({job.func_name for job in stranded})))
    return [job.id for job in stranded]


def _remove_stale_job_folders(work_dir: Path) -> None:
    """Folders of jobs whose worker died; a running job owns its folder only while it runs."""
    if not work_dir.is_dir():
        return
    for child in work_dir.iterdir():
        lock = child / "owner.pid"
        try:
            pid = int(lock.read_text())
            Path(f"/proc/{pid}").stat()
            continue  # still owned by a live process
        except (OSError, ValueError):
            shutil.rmtree(child, ignore_errors=True)


if __name__ == "__main__":
    main()
