"""closing warning: whether a window's WINDOW_CLOSING event (its end is near) was written

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 17:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connection_windows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closing_warned', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('connection_windows', schema=None) as batch_op:
        batch_op.drop_column('closing_warned')
