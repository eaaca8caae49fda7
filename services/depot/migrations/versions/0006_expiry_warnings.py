"""expiry warnings: per entry, the closest warning of its expiration logged so far

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 16:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('expiry_warnings',
    sa.Column('entry_pk', sa.Integer(), nullable=False),
    sa.Column('expire_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lead_s', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['entry_pk'], ['logon_data.pk'], name=op.f('fk_expiry_warnings_entry_pk_logon_data'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('entry_pk', name=op.f('pk_expiry_warnings'))
    )


def downgrade() -> None:
    op.drop_table('expiry_warnings')
