"""initial depot schema: entries, key ring, restricted views, known systems, the hash-chained log (append-only:
the database itself refuses to change or delete a log event)

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 00:34:23.219405
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('known_systems',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('system_number', sa.String(length=18), nullable=False),
    sa.Column('installation', sa.String(length=10), nullable=False),
    sa.Column('confirm_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer', 'system_number', name=op.f('pk_known_systems'))
    )
    op.create_table('log_events',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('system', sa.String(length=120), nullable=False),
    sa.Column('logon_data', sa.String(length=200), nullable=False),
    sa.Column('incident', sa.String(length=300), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('previous_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_log_events')),
    sa.UniqueConstraint('customer', 'sequence', name='uq_log_events_sequence')
    )
    with op.batch_alter_table('log_events', schema=None) as batch_op:
        batch_op.create_index('ix_log_events_entry', ['customer', 'logon_data', 'sequence'], unique=False)
        batch_op.create_index('ix_log_events_system', ['customer', 'system', 'sequence'], unique=False)

    op.create_table('log_heads',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('last_sequence', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('customer', name=op.f('pk_log_heads'))
    )
    op.create_table('logon_data',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.String(length=64), nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('system_number', sa.String(length=18), nullable=False),
    sa.Column('installation', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('connection_type', sa.String(length=60), nullable=False),
    sa.Column('user_name', sa.String(length=128), nullable=False),
    sa.Column('client', sa.String(length=3), nullable=False),
    sa.Column('server', sa.String(length=255), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('connection', sa.String(length=300), nullable=False),
    sa.Column('restricted_incident', sa.String(length=300), nullable=False),
    sa.Column('expire_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('creator', sa.String(length=80), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updater', sa.String(length=80), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('wrapped_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('secret_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('expiry_logged', sa.Boolean(), nullable=False),
    sa.Column('unreadable', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_logon_data')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_logon_data_entry_id'))
    )
    with op.batch_alter_table('logon_data', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_logon_data_expire_time'), ['expire_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_logon_data_key_version'), ['key_version'], unique=False)
        batch_op.create_index('ix_logon_data_system', ['customer', 'system_number', 'pk'], unique=False)

    op.create_table('restricted_views',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('system_number', sa.String(length=18), nullable=False),
    sa.Column('incident', sa.String(length=300), nullable=False),
    sa.Column('updater', sa.String(length=80), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_restricted_views')),
    sa.UniqueConstraint('customer', 'system_number', 'incident', name='uq_restricted_views_incident')
    )
    op.create_table('ring_keys',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('encryptions', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_ring_keys'))
    )
    _log_append_only()
    op.create_table('restricted_view_members',
    sa.Column('view_pk', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['view_pk'], ['restricted_views.pk'], name=op.f('fk_restricted_view_members_view_pk_restricted_views'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('view_pk', 'entry_id', name=op.f('pk_restricted_view_members'))
    )


APPEND_ONLY = "the depot log is append-only"


def _log_append_only() -> None:
    """Refuse UPDATE and DELETE on log_events in the database (VerifyLog still catches whoever drops this)."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER log_events_no_{verb.lower()} BEFORE {verb} ON log_events "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")
        return
    op.execute("CREATE FUNCTION log_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$")
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER log_events_no_{verb.lower()} BEFORE {verb} ON log_events "
                   "FOR EACH ROW EXECUTE FUNCTION log_events_append_only()")


def downgrade() -> None:
    op.drop_table('restricted_view_members')
    op.drop_table('ring_keys')
    op.drop_table('restricted_views')
    with op.batch_alter_table('logon_data', schema=None) as batch_op:
        batch_op.drop_index('ix_logon_data_system')
        batch_op.drop_index(batch_op.f('ix_logon_data_key_version'))
        batch_op.drop_index(batch_op.f('ix_logon_data_expire_time'))

    op.drop_table('logon_data')
    op.drop_table('log_heads')
    with op.batch_alter_table('log_events', schema=None) as batch_op:
        batch_op.drop_index('ix_log_events_system')
        batch_op.drop_index('ix_log_events_entry')

    op.drop_table('log_events')
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION log_events_append_only()")
    op.drop_table('known_systems')
