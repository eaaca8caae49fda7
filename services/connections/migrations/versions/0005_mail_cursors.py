"""event mails: per customer, the last event position mailed to whom it concerns (services.kit.notices)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 00:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mail_cursors',
    sa.Column('customer', sa.String(length=10), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('customer', name=op.f('pk_mail_cursors'))
    )
    # what happened before the mails existed is not mailed: every customer starts at its present end
    op.execute("INSERT INTO mail_cursors (customer, position) SELECT customer, last_position FROM event_heads")


def downgrade() -> None:
    op.drop_table('mail_cursors')
