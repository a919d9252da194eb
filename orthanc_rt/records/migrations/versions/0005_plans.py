"""plans

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('plans',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('workflow', sa.String(length=32), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('orthanc_study_id', sa.String(length=64), nullable=False),
    sa.Column('ct_series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('structure_set_sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('target_roi', sa.String(length=64), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('plans', schema=None) as batch_op:
        for column in ('job_id', 'workflow', 'study_instance_uid', 'orthanc_study_id',
                       'structure_set_sop_instance_uid', 'created_at'):
            batch_op.create_index(batch_op.f(f'ix_plans_{column}'), [column], unique=False)


def downgrade() -> None:
    op.drop_table('plans')
