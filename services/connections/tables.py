"""The connections service's tables (SQLAlchemy 2). Timestamps are stored in UTC and read back through
`services.kit.clock.as_utc`."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, false, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    closing_warned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # WINDOW_CLOSING


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


# --- the relay (services/connections/relay): connector files, attachments, replicas, sessions ------------------


class ConnectorKeyRow(Base):
    """The SHA-256 of an issued connector file's attach key: a file attaches only while its key is here.
    Deleted with the window (closing it early, or the sweep after its end)."""

    __tablename__ = "connector_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_id: Mapped[str] = mapped_column(ForeignKey("connection_windows.id", ondelete="CASCADE"), index=True)
    issue_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)


class RelayRow(Base):
    """A relay replica, alive while `seen_time` is recent (each replica renews it every second)."""

    __tablename__ = "relays"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    start_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    seen_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP, index=True)


class AttachmentRow(Base):
    """A connector attached to one relay replica for one window. One connector instance (a process) may be
    attached to every replica; a second instance is refused while a live attachment of another one exists."""

    __tablename__ = "connector_attachments"

    window_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    relay_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64))
    attach_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    seen_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)


class SessionRow(Base):
    """A tunnel through the relay (or a refused attempt at one): who, which window and incident, the target,
    when, the bytes each way and why it ended."""

    __tablename__ = "relay_sessions"
    __table_args__ = (Index("ix_relay_sessions_system", "customer", "system_number", "start_time"),
                      Index("ix_relay_sessions_live", "state", "relay_id"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer: Mapped[str] = mapped_column(String(10))
    system_number: Mapped[str] = mapped_column(String(18))
    window_id: Mapped[str] = mapped_column(String(32))
    type_code: Mapped[str] = mapped_column(String(40))
    principal: Mapped[str] = mapped_column(String(USER_NAME))
    principal_kind: Mapped[str] = mapped_column(String(32))
    incident: Mapped[str] = mapped_column(String(128), default="")
    target: Mapped[str] = mapped_column(String(300), default="")
    relay_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # ACTIVE, ENDED, REFUSED
    start_time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    end_time: Mapped[dt.datetime | None] = mapped_column(TIMESTAMP, nullable=True)
    bytes_to_target: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_from_target: Mapped[int] = mapped_column(BigInteger, default=0)
    end_reason: Mapped[str] = mapped_column(String(32), default="")
    refusal_reason: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(String(500), default="")
    terminated_by: Mapped[str] = mapped_column(String(USER_NAME), default="")


class EventRow(Base):
    """One event of a customer's feed (the service's outbox): written in the transaction of the change it
    describes, at the next position of the customer's `EventHeadRow`, so positions have no gaps and commit in
    order. Never holds a secret."""

    __tablename__ = "events"

    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(40))  # an EventType name without its prefix
    actor: Mapped[str] = mapped_column(String(USER_NAME))
    time: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    system: Mapped[str] = mapped_column(String(120))  # customers/{c}/systems/{s}
    resource: Mapped[str] = mapped_column(String(300))  # the window, incident or session
    incident: Mapped[str] = mapped_column(String(300))  # customers/{c}/incidents/{i}, or ""
    scope_incident: Mapped[str] = mapped_column(String(300))  # the incident an engineer must process to see it
    detail: Mapped[str] = mapped_column(String(500))


class EventHeadRow(Base):
    """A customer's newest event position; moving it locks the row to the commit (the order of positions)."""

    __tablename__ = "event_heads"

    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_position: Mapped[int] = mapped_column(BigInteger)


class SiemCursorRow(Base):
    """How far a customer's events were exported to the SIEM (services.kit.siem)."""

    __tablename__ = "siem_cursors"

    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class MailCursorRow(Base):
    """How far a customer's events were mailed to whom they concern (services.kit.notices)."""

    __tablename__ = "mail_cursors"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
