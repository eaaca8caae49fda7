"""initial authz schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 00:26:48.416924
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('number', sa.String(length=10), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_customers'))
    )
    op.create_table('principals',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=True),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer'], ['customers.number'], name=op.f('fk_principals_customer_customers')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_principals'))
    )
    with op.batch_alter_table('principals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_principals_customer'), ['customer'], unique=False)

    op.create_table('grants',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('authorization', sa.String(length=40), nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('installations', sa.Text(), nullable=False),
    sa.Column('granted_by', sa.String(length=64), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer'], ['customers.number'], name=op.f('fk_grants_customer_customers')),
    sa.ForeignKeyConstraint(['user_id'], ['principals.user_id'], name=op.f('fk_grants_user_id_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'authorization', name=op.f('pk_grants'))
    )
    op.create_table('support_assignments',
    sa.Column('incident', sa.String(length=120), nullable=False),
    sa.Column('engineer', sa.String(length=64), nullable=False),
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('system', sa.String(length=120), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['engineer'], ['principals.user_id'], name=op.f('fk_support_assignments_engineer_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('incident', name=op.f('pk_support_assignments'))
    )
    with op.batch_alter_table('support_assignments', schema=None) as batch_op:
        batch_op.create_index('ix_support_assignments_engineer_system', ['engineer', 'system'], unique=False)

    op.create_table('tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['principals.user_id'], name=op.f('fk_tokens_user_id_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_tokens'))
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tokens_user_id'), ['user_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tokens_user_id'))

    op.drop_table('tokens')
    with op.batch_alter_table('support_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_support_assignments_engineer_system')

    op.drop_table('support_assignments')
    op.drop_table('grants')
    with op.batch_alter_table('principals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_principals_customer'))

    op.drop_table('principals')
    op.drop_table('customers')
