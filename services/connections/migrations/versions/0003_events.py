"""events: each customer's feed of windows, incidents and relay sessions (the outbox), its head, and how far
the SIEM export got

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 16:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('system', sa.String(length=120), nullable=False),
    sa.Column('resource', sa.String(length=300), nullable=False),
    sa.Column('incident', sa.String(length=300), nullable=False),
    sa.Column('scope_incident', sa.String(length=300), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('customer', 'position', name=op.f('pk_events'))
    )
    op.create_table('event_heads',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('last_position', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer', name=op.f('pk_event_heads'))
    )
    op.create_table('siem_cursors',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer', name=op.f('pk_siem_cursors'))
    )


def downgrade() -> None:
    op.drop_table('siem_cursors')
    op.drop_table('event_heads')
    op.drop_table('events')
