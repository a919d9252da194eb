"""checks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checks',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('orthanc_study_id', sa.String(length=64), nullable=False),
    sa.Column('plan_sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('reference_sop_instance_uids', sa.JSON(), nullable=False),
    sa.Column('evaluated_sop_instance_uids', sa.JSON(), nullable=False),
    sa.Column('criteria', sa.String(length=64), nullable=False),
    sa.Column('pass_rate_percent', sa.Float(), nullable=True),
    sa.Column('verdict', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('results', sa.JSON(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('report_orthanc_id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('checks', schema=None) as batch_op:
        for column in ('study_instance_uid', 'orthanc_study_id', 'plan_sop_instance_uid', 'verdict', 'created_at'):
            batch_op.create_index(batch_op.f(f'ix_checks_{column}'), [column], unique=False)


def downgrade() -> None:
    op.drop_table('checks')
