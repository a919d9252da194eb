"""How long jobs ran and how long their stages took, kept as running totals per histogram bucket.

A job's run lasts from its last start to its end (a final state); a stage from the event that entered it (a
running event of the job's history) to the job's next event, whatever that is: the next stage, the end, a retry.
`JobStore` adds each duration in the transaction that records the event ending it (`stage_ended`, `job_ended`),
so /rt/metrics reads a few rows per scrape (`histograms`) instead of every job's history: with 100,000 jobs a
whole scrape took 5.1 s on PostgreSQL here when it scanned the histories, 84 ms with the totals (most of it now
counting jobs by state; bench/metrics_scrape.py). Every ending counts, so a job failed by an outage and run
again counts twice, as Prometheus histograms (counters) expect. `rebuild` recomputes the totals from the
histories; the migration that made the table (0008) fills it the same way from its own frozen copy of these
rules, so that changing them later cannot change what an old migration writes.
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from orthanc_rt.records.db import aware, read_scope
from orthanc_rt.records.tables import DurationTotal, Job, JobEvent

# Upper bounds (s) of the histogram buckets, from a quick analysis to a clinical-size plan.
BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0)
JOB, STAGE = "job", "stage"


@dataclass(frozen=True)
class Histogram:
    cumulative: list[int]  # durations <= each of BUCKETS_S, then all of them (+Inf)
    seconds: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


def stage_name(stage: str) -> str:
    """A stage without its detail ("computing beamlets: part 3/8" -> "computing beamlets")."""
    return stage.split(":", 1)[0].strip()


def stage_ended(session: Session, job_id: str, kind: str, at: datetime) -> None:
    """The job's next event happens at `at`: the stage its last event entered, if any, ends there."""
    from orthanc_rt.records.jobs import RUNNING  # jobs imports this module

    last = session.execute(select(JobEvent.state, JobEvent.stage, JobEvent.at).where(JobEvent.job_id == job_id)
                           .order_by(JobEvent.id.desc()).limit(1)).first()
    if last is not None and last.state == RUNNING:
        _add(session, STAGE, kind, stage_name(last.stage), (aware(at) - aware(last.at)).total_seconds())


def job_ended(session: Session, kind: str, state: str, started_at: datetime | None, finished_at: datetime) -> None:
    """A job that started ended in final `state`."""
    if started_at is not None:
        _add(session, JOB, kind, state, (aware(finished_at) - aware(started_at)).total_seconds())


def histograms(url: str, family: str) -> dict[tuple[str, str], Histogram]:
    """(kind, label) -> the histogram of `family` (JOB: label the final state; STAGE: the stage's name)."""
    rows: dict[tuple[str, str], list[Any]] = {}
    with read_scope(url) as s:
        for kind, label, bucket, count, seconds in s.execute(
                select(DurationTotal.kind, DurationTotal.label, DurationTotal.bucket, DurationTotal.count,
                       DurationTotal.seconds).where(DurationTotal.family == family)):
            counts, total = rows.setdefault((kind, label), [[0] * (len(BUCKETS_S) + 1), 0.0])
            counts[min(bucket, len(BUCKETS_S))] += count
            rows[(kind, label)][1] = total + seconds
    return {key: Histogram(list(itertools.accumulate(counts)), total) for key, (counts, total) in sorted(rows.items())}


def rebuild(connection: Connection | Session) -> None:
    """Recompute every total from the jobs' rows and histories (a full scan: for repairs and benchmarks)."""
    from orthanc_rt.records.jobs import FINAL_STATES, RUNNING  # jobs imports this module

    connection.execute(delete(DurationTotal))
    totals: dict[tuple[str, str, str, int], list[float]] = {}

    def count(family: str, kind: str, label: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        entry = totals.setdefault((family, kind, label, _bucket(seconds)), [0, 0.0])
        entry[0] += 1
        entry[1] += seconds

    for kind, state, started, finished in connection.execute(
            select(Job.kind, Job.state, Job.started_at, Job.finished_at)
            .where(Job.state.in_(FINAL_STATES), Job.started_at.is_not(None), Job.finished_at.is_not(None))):
        count(JOB, kind, state, (aware(finished) - aware(started)).total_seconds())
    previous = None
    for job_id, kind, state, stage, at in connection.execute(
            select(JobEvent.job_id, Job.kind, JobEvent.state, JobEvent.stage, JobEvent.at)
            .join(Job, Job.id == JobEvent.job_id).order_by(JobEvent.job_id, JobEvent.id)):
        if previous is not None and previous[0] == job_id and previous[2] == RUNNING:
            count(STAGE, kind, stage_name(previous[3]), (aware(at) - aware(previous[4])).total_seconds())
        previous = (job_id, kind, state, stage, at)
    if totals:
        connection.execute(DurationTotal.__table__.insert(), [
            {"family": family, "kind": kind, "label": label[:64], "bucket": bucket, "count": n, "seconds": seconds}
            for (family, kind, label, bucket), (n, seconds) in totals.items()])


def _bucket(seconds: float) -> int:
    """The index in BUCKETS_S of the first bound >= `seconds` (Prometheus buckets are `le`), len for +Inf."""
    return bisect.bisect_left(BUCKETS_S, seconds)


def _add(session: Session, family: str, kind: str, label: str, seconds: float) -> None:
    """One duration added to its bucket's row, made if missing, atomically (concurrent workers add to it)."""
    seconds = max(0.0, seconds)
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    table = DurationTotal.__table__
    stmt = insert(table).values(family=family, kind=kind, label=label[:64],
                                bucket=_bucket(seconds), count=1, seconds=seconds)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["family", "kind", "label", "bucket"],
        set_={"count": table.c.count + 1, "seconds": table.c.seconds + seconds}))
