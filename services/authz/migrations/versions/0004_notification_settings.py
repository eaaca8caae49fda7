"""notification settings: the kinds of event mail a principal has muted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 00:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('principals') as batch:
        batch.add_column(sa.Column('muted_notifications', sa.String(length=200), nullable=False,
                                   server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('principals') as batch:
        batch.drop_column('muted_notifications')
