"""Benchmark: the cost of one /rt/metrics scrape as the database grows (orthanc_rt.ops.metrics).

A scratch PostgreSQL database (from tests/support/services.postgres_database, dropped afterwards) is filled with
finished dose jobs, each with the history a real one leaves (queued, starting, fetching inputs, Monte Carlo,
storing, done) and the duration totals those histories give (orthanc_rt.records.durations.rebuild, what the
migration computes too). At each size the collector is scraped three times; the best time is printed, and the ratio of
the largest size to the smallest (1.0 would mean a scrape costs the same however many jobs there are; with the
history scan the totals replaced, a scrape took 72 ms at 1,000 jobs and 5,139 ms at 100,000 here, a ratio of 71;
with them 17 ms and 84 ms, 4.8: what still grows is counting the jobs by kind and state).

    .venv/bin/python -m bench.metrics_scrape [--jobs 100000]
"""
from __future__ import annotations

import argparse
import time
from datetime import timedelta

from prometheus_client import generate_latest
from sqlalchemy import create_engine

from orthanc_rt.ops.metrics import registry_for
from orthanc_rt.records import db, durations, jobs
from orthanc_rt.records.checks import CheckStore
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job, JobEvent, utcnow
from tests.support.services import postgres_database

HISTORY = ((jobs.QUEUED, "queued"), (jobs.RUNNING, "starting"), (jobs.RUNNING, "fetching inputs"),
           (jobs.RUNNING, "Monte Carlo"), (jobs.RUNNING, "storing"), (jobs.SUCCEEDED, "done"))


def _fill(url: str, start: int, stop: int) -> None:
    now = utcnow()
    rows, events = [], []
    for i in range(start, stop):
        t0 = now - timedelta(seconds=10 * i)
        rows.append(dict(id=f"bench-{i}", kind="dose", state=jobs.SUCCEEDED, stage="done", created_at=t0,
                         updated_at=t0, started_at=t0, finished_at=t0 + timedelta(seconds=50), attempts=1,
                         message="", params={}, inputs={}, outputs={}))
        events += [dict(job_id=f"bench-{i}", at=t0 + timedelta(seconds=10 * k), state=state, stage=stage,
                        message="", actor="bench") for k, (state, stage) in enumerate(HISTORY)]
    with create_engine(db.normalize_url(url)).begin() as connection:
        connection.execute(Job.__table__.insert(), rows)
        connection.execute(JobEvent.__table__.insert(), events)
        durations.rebuild(connection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    sizes = sorted({1_000, 10_000, args.jobs})
    timings = {}
    for url in postgres_database():
        db.upgrade(url)
        registry = registry_for(JobStore(url), CheckStore(url), None)
        made = 0
        for size in sizes:
            _fill(url, made, size)
            made = size
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                generate_latest(registry)
                best = min(best, time.perf_counter() - started)
            timings[size] = best
            print(f"  {size:>7,} jobs ({len(HISTORY) * size:>9,} events): scrape {1000 * best:7.1f} ms", flush=True)
    print(f"  ratio {sizes[-1]:,} jobs / {sizes[0]:,} jobs = {timings[sizes[-1]] / timings[sizes[0]]:.2f} "
          f"(the history scan: 71)")


if __name__ == "__main__":
    main()
