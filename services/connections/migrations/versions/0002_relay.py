"""relay: connector keys, relay replicas, connector attachments and sessions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 17:43:21.029316
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connector_attachments',
    sa.Column('window_id', sa.String(length=32), nullable=False),
    sa.Column('relay_id', sa.String(length=32), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('attach_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('window_id', 'relay_id', name=op.f('pk_connector_attachments'))
    )
    op.create_table('relay_sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('system_number', sa.String(length=18), nullable=False),
    sa.Column('window_id', sa.String(length=32), nullable=False),
    sa.Column('type_code', sa.String(length=40), nullable=False),
    sa.Column('principal', sa.String(length=80), nullable=False),
    sa.Column('principal_kind', sa.String(length=32), nullable=False),
    sa.Column('incident', sa.String(length=128), nullable=False),
    sa.Column('target', sa.String(length=300), nullable=False),
    sa.Column('relay_id', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('start_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('bytes_to_target', sa.BigInteger(), nullable=False),
    sa.Column('bytes_from_target', sa.BigInteger(), nullable=False),
    sa.Column('end_reason', sa.String(length=32), nullable=False),
    sa.Column('refusal_reason', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('terminated_by', sa.String(length=80), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relay_sessions'))
    )
    with op.batch_alter_table('relay_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_relay_sessions_live', ['state', 'relay_id'], unique=False)
        batch_op.create_index('ix_relay_sessions_system', ['customer', 'system_number', 'start_time'], unique=False)

    op.create_table('relays',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=255), nullable=False),
    sa.Column('start_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relays'))
    )
    with op.batch_alter_table('relays', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_relays_seen_time'), ['seen_time'], unique=False)

    op.create_table('connector_keys',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('window_id', sa.String(length=32), nullable=False),
    sa.Column('issue_time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['window_id'], ['connection_windows.id'], name=op.f('fk_connector_keys_window_id_connection_windows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_connector_keys'))
    )
    with op.batch_alter_table('connector_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connector_keys_window_id'), ['window_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('connector_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connector_keys_window_id'))

    op.drop_table('connector_keys')
    with op.batch_alter_table('relays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_relays_seen_time'))

    op.drop_table('relays')
    with op.batch_alter_table('relay_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_relay_sessions_system')
        batch_op.drop_index('ix_relay_sessions_live')

    op.drop_table('relay_sessions')
    op.drop_table('connector_attachments')
