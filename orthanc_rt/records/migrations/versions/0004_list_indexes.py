"""indexes for the sorted, paged lists of /rt/jobs and /rt/measurements

Without them every page (and every deep offset) sorted the whole table:
bench/rest_latency.py measured 30-40 ms of PostgreSQL time for an offset page
of 10 000 jobs. Lists break ties on the id in the sort's direction, so an
ascending (column, id) index serves both directions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:30:00
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_created_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_state_kind_created', ['state', 'kind', 'created_at', 'id'], unique=False)
    with op.batch_alter_table('measurements', schema=None) as batch_op:
        batch_op.create_index('ix_measurements_created_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_measurements_metric_value_id', ['metric', 'value', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('measurements', schema=None) as batch_op:
        batch_op.drop_index('ix_measurements_metric_value_id')
        batch_op.drop_index('ix_measurements_created_id')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_state_kind_created')
        batch_op.drop_index('ix_jobs_created_id')
