"""running totals of job and stage durations (the /rt/metrics histograms), filled from the jobs' histories

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 00:00:00
"""
import bisect
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# Frozen as of 0008: copies of orthanc_rt.records.durations/jobs, so that later changes to them cannot change
# what this migration writes (the tables below are likewise only the columns it reads, as they were then).
BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0)
JOB, STAGE = "job", "stage"
RUNNING = "running"
FINAL_STATES = ("succeeded", "failed", "cancelled")

jobs = sa.table('jobs',
                sa.column('id', sa.String), sa.column('kind', sa.String), sa.column('state', sa.String),
                sa.column('started_at', sa.DateTime(timezone=True)),
                sa.column('finished_at', sa.DateTime(timezone=True)))
job_events = sa.table('job_events',
                      sa.column('id', sa.Integer), sa.column('job_id', sa.String), sa.column('state', sa.String),
                      sa.column('stage', sa.String), sa.column('at', sa.DateTime(timezone=True)))


def upgrade() -> None:
    duration_totals = op.create_table('duration_totals',
    sa.Column('family', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('family', 'kind', 'label', 'bucket')
    )
    # The histograms go on from what the jobs' histories already hold (they were computed from them until now).
    rows = _totals(op.get_bind())
    if rows:
        op.bulk_insert(duration_totals, rows)


def downgrade() -> None:
    op.drop_table('duration_totals')


def _totals(connection: sa.Connection) -> list[dict]:
    """The rows of duration_totals the histories give (what durations.rebuild computed as of 0008)."""
    totals: dict[tuple[str, str, str, int], list[float]] = {}

    def count(family: str, kind: str, label: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        entry = totals.setdefault((family, kind, label[:64], bisect.bisect_left(BUCKETS_S, seconds)), [0, 0.0])
        entry[0] += 1
        entry[1] += seconds

    for kind, state, started, finished in connection.execute(
            sa.select(jobs.c.kind, jobs.c.state, jobs.c.started_at, jobs.c.finished_at)
            .where(jobs.c.state.in_(FINAL_STATES), jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None))):
        count(JOB, kind, state, (_aware(finished) - _aware(started)).total_seconds())
    previous = None
    for job_id, kind, state, stage, at in connection.execute(
            sa.select(job_events.c.job_id, jobs.c.kind, job_events.c.state, job_events.c.stage, job_events.c.at)
            .join(jobs, jobs.c.id == job_events.c.job_id).order_by(job_events.c.job_id, job_events.c.id)):
        if previous is not None and previous[0] == job_id and previous[1] == RUNNING:
            # durations.stage_name as of 0008: the text before a ':' ("computing beamlets: part 3/8").
            name = previous[2].split(":", 1)[0].strip()
            count(STAGE, kind, name, (_aware(at) - _aware(previous[3])).total_seconds())
        previous = (job_id, state, stage, at)
    return [{"family": family, "kind": kind, "label": label, "bucket": bucket, "count": n, "seconds": seconds}
            for (family, kind, label, bucket), (n, seconds) in totals.items()]


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
