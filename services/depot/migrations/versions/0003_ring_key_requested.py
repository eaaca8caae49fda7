"""ring key requested: whether a ring key was added by a rotation someone asked for (RotateKey, the first start)
or by the depot because the key before it reached its usage limit; re-wrapping moves entries only off the keys
older than the newest requested one, so it finishes however low the limit is

Every ring key stored so far counts as requested (re-wrapping then moves every entry onto the active key, as
it did before).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ring_keys') as batch:
        batch.add_column(sa.Column('requested', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('ring_keys') as batch:
        batch.drop_column('requested')
