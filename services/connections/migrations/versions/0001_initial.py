"""Initial schema, with the connection-type catalog loaded as reference data.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

The 33 catalog rows are written from `services.connections.catalog` as it stands when this revision runs;
a later change to the catalog needs a migration of its own that updates `connection_types`.
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from services.connections import catalog

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def _catalog_rows() -> list[dict]:
    return [
        {
            "code": spec.code,
            "position": position,
            "display_name": spec.display_name,
            "category": spec.category,
            "description": spec.description,
            "sap_note": spec.sap_note,
            "parameters": json.dumps([
                {"key": p.key, "display_name": p.display_name, "kind": p.kind, "required": p.required,
                 "description": p.description}
                for p in spec.parameters
            ]),
            "default_port": spec.default_port,
            "max_open_hours": spec.max_open_hours,
        }
        for position, spec in enumerate(catalog.CONNECTION_TYPES, start=1)
    ]


def upgrade() -> None:
    connection_types = op.create_table(
        "connection_types",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("sap_note", sa.String(length=10), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("default_port", sa.Integer(), nullable=True),
        sa.Column("max_open_hours", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_connection_types")),
        sa.UniqueConstraint("position", name=op.f("uq_connection_types_position")),
    )
    op.bulk_insert(connection_types, _catalog_rows())

    op.create_table(
        "systems",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("system_number", sa.String(length=18), nullable=False),
        sa.Column("installation_number", sa.String(length=10), nullable=False),
        sa.Column("system_id", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("product", sa.String(length=100), nullable=False),
        sa.Column("saprouter_route", sa.String(length=255), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("update_time", TIMESTAMP, nullable=False),
        sa.Column("etag", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_systems")),
        sa.UniqueConstraint("customer", "system_number", name="uq_systems_customer_system_number"),
        sa.UniqueConstraint("customer", "installation_number", "system_id",
                            name="uq_systems_customer_installation_sid"),
    )

    op.create_table(
        "connection_setups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("system_pk", sa.Integer(), nullable=False),
        sa.Column("type_code", sa.String(length=40), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("creator", sa.String(length=80), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("updater", sa.String(length=80), nullable=False),
        sa.Column("update_time", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["system_pk"], ["systems.id"], name=op.f("fk_connection_setups_system_pk_systems"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["type_code"], ["connection_types.code"],
                                name=op.f("fk_connection_setups_type_code_connection_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_setups")),
        sa.UniqueConstraint("system_pk", "type_code", name="uq_connection_setups_system_type"),
    )

    op.create_table(
        "connection_windows",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("system_number", sa.String(length=18), nullable=False),
        sa.Column("type_code", sa.String(length=40), nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=False),
        sa.Column("end_time", TIMESTAMP, nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("opener", sa.String(length=80), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("closer", sa.String(length=80), nullable=True),
        sa.Column("close_time", TIMESTAMP, nullable=True),
        sa.Column("closed_by_sweep", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["type_code"], ["connection_types.code"],
                                name=op.f("fk_connection_windows_type_code_connection_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_windows")),
    )
    op.create_index("ix_connection_windows_system_type_end", "connection_windows",
                    ["customer", "system_number", "type_code", "end_time"])
    op.create_index("ix_connection_windows_unrecorded", "connection_windows", ["close_time", "end_time"])

    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("system_number", sa.String(length=18), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("processor", sa.String(length=80), nullable=True),
        sa.Column("reporter", sa.String(length=80), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("update_time", TIMESTAMP, nullable=False),
        sa.Column("etag", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_customer_created", "incidents", ["customer", "create_time"])
    op.create_index("ix_incidents_customer_system", "incidents", ["customer", "system_number"])

    op.create_table(
        "assignment_checks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("customer", sa.String(length=10), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_checks")),
    )
    op.create_index(op.f("ix_assignment_checks_incident_id"), "assignment_checks", ["incident_id"])
    op.create_index(op.f("ix_assignment_checks_create_time"), "assignment_checks", ["create_time"])


def downgrade() -> None:
    op.drop_table("assignment_checks")
    op.drop_table("incidents")
    op.drop_table("connection_windows")
    op.drop_table("connection_setups")
    op.drop_table("systems")
    op.drop_table("connection_types")
