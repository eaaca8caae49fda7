"""log head seal: every customer's log head sealed under a key derived from the master key (barrier.LogSealer),
so a log rewritten in the database, hashes and head included, no longer verifies

The heads already stored are sealed here as they stand, so this migration needs the master key: the depot
applies it at start, handing its sealer over as the Alembic attribute "log_sealer". Run without it (a bare
`alembic upgrade`) on a database that has log heads, it stops with nothing changed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    heads = sa.table('log_heads', sa.column('customer', sa.String), sa.column('last_sequence', sa.BigInteger),
                     sa.column('last_hash', sa.String), sa.column('seal', sa.String))
    connection = op.get_bind()
    stored = connection.execute(sa.select(heads.c.customer, heads.c.last_sequence, heads.c.last_hash)).all()
    sealer = op.get_context().config.attributes.get('log_sealer')
    if stored and sealer is None:
        raise RuntimeError('migration 0002 seals the stored log heads with the master key: start the depot to '
                           'apply it (it hands over its key), not a bare alembic upgrade')
    with op.batch_alter_table('log_heads') as batch:
        batch.add_column(sa.Column('seal', sa.String(length=64), nullable=False, server_default=''))
    for customer, last_sequence, last_hash in stored:
        connection.execute(heads.update().where(heads.c.customer == customer)
                           .values(seal=sealer.seal(customer, last_sequence, last_hash)))


def downgrade() -> None:
    with op.batch_alter_table('log_heads') as batch:
        batch.drop_column('seal')
