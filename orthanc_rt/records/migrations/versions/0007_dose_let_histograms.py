"""dose-LET volume histograms

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 20:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dose_let_histograms',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('dose_sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('let_sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('structure_set_sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('roi_number', sa.Integer(), nullable=True),
    sa.Column('roi_name', sa.String(length=64), nullable=False),
    sa.Column('voxels', sa.Integer(), nullable=False),
    sa.Column('threshold_gy', sa.Float(), nullable=False),
    sa.Column('histogram', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dose_let_histograms', schema=None) as batch_op:
        for column in ('job_id', 'study_instance_uid', 'dose_sop_instance_uid'):
            batch_op.create_index(batch_op.f(f'ix_dose_let_histograms_{column}'), [column], unique=False)


def downgrade() -> None:
    op.drop_table('dose_let_histograms')
