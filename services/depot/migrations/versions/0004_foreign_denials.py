"""foreign denials: per customer and caller outside it, the hour of refused reveals that are logged one by one
(up to RS_DEPOT_FOREIGN_DENIALS_PER_HOUR) and how many more were only counted, until the count is logged

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('foreign_denials',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('logged', sa.Integer(), nullable=False),
    sa.Column('counted', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer', 'actor', name=op.f('pk_foreign_denials'))
    )
    with op.batch_alter_table('foreign_denials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_foreign_denials_window_start'), ['window_start'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('foreign_denials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_foreign_denials_window_start'))
    op.drop_table('foreign_denials')
