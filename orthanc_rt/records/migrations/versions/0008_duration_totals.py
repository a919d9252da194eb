"""running totals of job and stage durations (the /rt/metrics histograms), filled from the jobs' histories

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 00:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('duration_totals',
    sa.Column('family', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('family', 'kind', 'label', 'bucket')
    )
    # The histograms go on from what the jobs' histories already hold (they were computed from them until now).
    from orthanc_rt.records import durations

    durations.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table('duration_totals')
