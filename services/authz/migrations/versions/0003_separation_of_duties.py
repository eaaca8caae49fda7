"""separation of duties: unique e-mail keys, one-time codes, grant requests, identity logs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 15:20:00
"""
import re

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _email_key(email: str) -> str:
    """As services.authz.model.email_key was when this migration was written (frozen here)."""
    local, _, domain = email.strip().lower().rpartition("@")
    return f"{re.sub(r'[+].*$', '', local)}@{domain}"


def upgrade() -> None:
    with op.batch_alter_table('principals') as batch:
        batch.add_column(sa.Column('email_key', sa.String(length=254), nullable=True))
    principals = sa.table('principals', sa.column('user_id', sa.String), sa.column('email', sa.String),
                          sa.column('email_key', sa.String))
    conn = op.get_bind()
    seen = set()
    for user_id, email in conn.execute(sa.select(principals.c.user_id, principals.c.email)
                                       .order_by(principals.c.user_id)).all():
        if not email:
            continue
        key = _email_key(email)
        if key in seen:  # an address shared before it had to be unique: the first user keeps it as its key
            continue
        seen.add(key)
        conn.execute(principals.update().where(principals.c.user_id == user_id).values(email_key=key))
    with op.batch_alter_table('principals') as batch:
        batch.create_unique_constraint(op.f('uq_principals_email_key'), ['email_key'])
    with op.batch_alter_table('grants') as batch:
        batch.add_column(sa.Column('approved_by', sa.String(length=64), nullable=True))
    op.create_table('grant_requests',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('authorization', sa.String(length=40), nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('installations', sa.Text(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer'], ['customers.number'], name=op.f('fk_grant_requests_customer_customers')),
    sa.ForeignKeyConstraint(['user_id'], ['principals.user_id'], name=op.f('fk_grant_requests_user_id_principals'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'authorization', name=op.f('pk_grant_requests'))
    )
    op.create_table('one_time_codes',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts_left', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['principals.user_id'], name=op.f('fk_one_time_codes_user_id_principals'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_one_time_codes'))
    )
    op.create_table('identity_events',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('sequence', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=120), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('previous_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('customer', 'sequence', name=op.f('pk_identity_events'))
    )
    op.create_table('identity_log_heads',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('customer', name=op.f('pk_identity_log_heads'))
    )
    # every log has its head row from the start (the vendor side's is customer ''), so appends only lock it
    heads = sa.table('identity_log_heads', sa.column('customer', sa.String), sa.column('sequence', sa.Integer),
                     sa.column('hash', sa.String))
    customers = sa.table('customers', sa.column('number', sa.String))
    numbers = [''] + [n for (n,) in conn.execute(sa.select(customers.c.number)).all()]
    op.bulk_insert(heads, [{'customer': n, 'sequence': 0, 'hash': '0' * 64} for n in numbers])


def downgrade() -> None:
    op.drop_table('identity_log_heads')
    op.drop_table('identity_events')
    op.drop_table('one_time_codes')
    op.drop_table('grant_requests')
    with op.batch_alter_table('grants') as batch:
        batch.drop_column('approved_by')
    with op.batch_alter_table('principals') as batch:
        batch.drop_constraint(op.f('uq_principals_email_key'), type_='unique')
        batch.drop_column('email_key')
