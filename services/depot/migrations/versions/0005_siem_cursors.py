"""SIEM export: per customer, the last log sequence exported to the SIEM

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 16:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('siem_cursors',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer', name=op.f('pk_siem_cursors'))
    )


def downgrade() -> None:
    op.drop_table('siem_cursors')
