"""login lock: consecutive failed logins and the end of a lock, per principal

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('principals') as batch:
        batch.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('principals') as batch:
        batch.drop_column('locked_until')
        batch.drop_column('failed_logins')
