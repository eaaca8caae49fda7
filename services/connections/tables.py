"""The connections service's tables (SQLAlchemy 2). Timestamps are stored in UTC and read back through
`services.kit.clock.as_utc`."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.kit.db import make_base

Base = make_base()

USER_NAME = 80  # "users/{id}"
TIMESTAMP = DateTime(timezone=True)


class ConnectionTypeRow(Base):
    """One row of the connection-type catalog (reference data written by the initial migration)."""

    __tablename__ = "connection_types"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(String(255))
    sap_note: Mapped[str] = mapped_column(String(10))
    parameters: Mapped[str] = mapped_column(Text)  # JSON list of parameter specs
    default_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_open_hours: Mapped[int] = mapped_column(Integer)


class SystemRow(Base):
    """A customer's system; (customer, system_number) is its name."""

    __tablename__ = "systems"
    __table_args__ = (
        UniqueConstraint("customer", "system_number", name="uq_systems_customer_system_number"),
        UniqueConstraint("customer", "installation_number", "system_id", name="uq_systems_customer_installation_sid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer: Mapped[str] = mapped_column(String(10))
    system_number: Mapped[str] = mapped_column(String(18))
    installation_number: Mapped[str] = mapped_column(String(10))
    system_id: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(255), default="")
    product: Mapped[str] = mapped_column(String(100), default="")
    saprouter_route: Mapped[str] = mapped_column(String(255), default="")
    create_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    update_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    etag: Mapped[str] = mapped_column(String(32))


class SetupRow(Base):
    """A connection type set up for a system (at most one per system and type)."""

    __tablename__ = "connection_setups"
    __table_args__ = (UniqueConstraint("system_pk", "type_code", name="uq_connection_setups_system_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system_pk: Mapped[int] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"))
    type_code: Mapped[str] = mapped_column(ForeignKey("connection_types.code"))
    parameters: Mapped[str] = mapped_column(Text)  # JSON object of string values
    creator: Mapped[str] = mapped_column(String(USER_NAME))
    create_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    updater: Mapped[str] = mapped_column(String(USER_NAME))
    update_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)


class WindowRow(Base):
    """A connection type opened for a system over [start_time, end_time).

    `closer`/`close_time` are set when it is closed early; when its end passes, the sweep records
    `close_time = end_time` and `closed_by_sweep` (once). The state itself is always computed from the clock.
    The system is referenced by number, not by key: who opened and closed what stays on record when the
    system is deleted (which is refused while a window of it is open or scheduled).
    """

    __tablename__ = "connection_windows"
    __table_args__ = (
        Index("ix_connection_windows_system_type_end", "customer", "system_number", "type_code", "end_time"),
        Index("ix_connection_windows_unrecorded", "close_time", "end_time"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer: Mapped[str] = mapped_column(String(10))
    system_number: Mapped[str] = mapped_column(String(18))
    type_code: Mapped[str] = mapped_column(ForeignKey("connection_types.code"))
    start_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    end_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    incident_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    opener: Mapped[str] = mapped_column(String(USER_NAME))
    create_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    closer: Mapped[str | None] = mapped_column(String(USER_NAME), nullable=True)
    close_time: Mapped[dt.datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    closed_by_sweep: Mapped[bool] = mapped_column(Boolean, default=False)


class IncidentRow(Base):
    """A customer's incident for one of its systems (referenced by number: confirmed incidents outlive it)."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_customer_created", "customer", "create_time"),
        Index("ix_incidents_customer_system", "customer", "system_number"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer: Mapped[str] = mapped_column(String(10))
    system_number: Mapped[str] = mapped_column(String(18))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    processor: Mapped[str | None] = mapped_column(String(USER_NAME), nullable=True)
    reporter: Mapped[str] = mapped_column(String(USER_NAME))
    create_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    update_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    etag: Mapped[str] = mapped_column(String(32))


class AssignmentCheckRow(Base):
    """A note, written before authz is asked to change an incident's support assignment and removed once
    authz and this database agree again. A note left behind (a crash, or authz unreachable for the
    compensation) makes the sweep bring authz in line with the incident's stored status."""

    __tablename__ = "assignment_checks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(32), index=True)
    customer: Mapped[str] = mapped_column(String(10))
    create_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP, index=True)
