"""The depot database: logon-data entries (secrets only as ciphertext), the key ring (ring keys only wrapped by
the master key), restricted views, the known systems, and the hash-chained log."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, \
    UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from services.kit.db import make_base

Base = make_base()


class EntryRow(Base):
    """One logon-data entry. `secret_ciphertext` is encrypted with the entry's data key, which is stored only
    wrapped by ring key `key_version`; both are bound to the entry's id, customer and system."""

    __tablename__ = "logon_data"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # creation order
    entry_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer: Mapped[str] = mapped_column(String(10))
    system_number: Mapped[str] = mapped_column(String(18))
    installation: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(24))
    connection_type: Mapped[str] = mapped_column(String(60))
    user_name: Mapped[str] = mapped_column(String(128))
    client: Mapped[str] = mapped_column(String(3))
    server: Mapped[str] = mapped_column(String(255))
    notes: Mapped[str] = mapped_column(Text)
    connection: Mapped[str] = mapped_column(String(300))
    restricted_incident: Mapped[str] = mapped_column(String(300))
    expire_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    creator: Mapped[str] = mapped_column(String(80))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updater: Mapped[str] = mapped_column(String(80))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    etag: Mapped[str] = mapped_column(String(64))
    key_version: Mapped[int] = mapped_column(Integer, index=True)
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    expiry_logged: Mapped[bool] = mapped_column(Boolean, default=False)  # its EXPIRE event is in the log
    unreadable: Mapped[bool] = mapped_column(Boolean, default=False)  # failed authentication while re-wrapping

    __table_args__ = (Index("ix_logon_data_system", "customer", "system_number", "pk"),)


class RingKeyRow(Base):
    """A ring key, wrapped by the master key. The highest version is active. `encryptions` counts the
    encryptions under it that were stored: claimed in the transaction that stores them, never past the usage
    limit (one whose transaction rolled back is not counted: its ciphertext was never stored). `requested`:
    added by a rotation someone asked for (RotateKey, or the first start), whose re-wrapping moves every entry
    off the older keys; False for a key the depot added because the one before it reached its usage limit."""

    __tablename__ = "ring_keys"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    encryptions: Mapped[int] = mapped_column(BigInteger, default=0)
    requested: Mapped[bool] = mapped_column(Boolean, server_default=true())


class KnownSystemRow(Base):
    """A system the connections service confirmed, with its installation number (for authorization)."""

    __tablename__ = "known_systems"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    system_number: Mapped[str] = mapped_column(String(18), primary_key=True)
    installation: Mapped[str] = mapped_column(String(10))
    confirm_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ViewRow(Base):
    """A restricted view: while it exists, engineers of the incident see only its system users."""

    __tablename__ = "restricted_views"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer: Mapped[str] = mapped_column(String(10))
    system_number: Mapped[str] = mapped_column(String(18))
    incident: Mapped[str] = mapped_column(String(300))  # "customers/{c}/incidents/{i}"
    updater: Mapped[str] = mapped_column(String(80))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("customer", "system_number", "incident", name="uq_restricted_views_incident"),)


class ViewMemberRow(Base):
    """An entry a view makes visible. Members outlive deleted entries, so a view never silently widens."""

    __tablename__ = "restricted_view_members"
    view_pk: Mapped[int] = mapped_column(ForeignKey("restricted_views.pk", ondelete="CASCADE"), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class LogEventRow(Base):
    """One event of a customer's append-only, hash-chained log. Never holds a secret."""

    __tablename__ = "log_events"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer: Mapped[str] = mapped_column(String(10))
    sequence: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(80))
    system: Mapped[str] = mapped_column(String(120))
    logon_data: Mapped[str] = mapped_column(String(200))
    incident: Mapped[str] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text)
    event_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str] = mapped_column(String(64))
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("customer", "sequence", name="uq_log_events_sequence"),
        Index("ix_log_events_system", "customer", "system", "sequence"),
        Index("ix_log_events_entry", "customer", "logon_data", "sequence"),
    )


class LogHeadRow(Base):
    """The newest event of a customer's log; appends lock it, so the chain never forks. `seal` is
    barrier.LogSealer's seal of (customer, last_sequence, last_hash): only the depot, with the master key, can
    write a head that verifies."""

    __tablename__ = "log_heads"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    seal: Mapped[str] = mapped_column(String(64), server_default="")


class ExpiryWarningRow(Base):
    """The closest warning of an entry's expiration logged so far (`lead_s` before `expire_time`); gone with the
    entry. A changed expiration makes it stale: the entry is warned again for its new date."""

    __tablename__ = "expiry_warnings"
    entry_pk: Mapped[int] = mapped_column(ForeignKey("logon_data.pk", ondelete="CASCADE"), primary_key=True)
    expire_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    lead_s: Mapped[int] = mapped_column(Integer)


class SiemCursorRow(Base):
    """How far a customer's log was exported to the SIEM (services.kit.siem): its last exported sequence."""

    __tablename__ = "siem_cursors"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class ForeignDenialRow(Base):
    """The hour in which one caller outside a customer (a user of another customer, an engineer without a
    support assignment for the system, the platform admin) had reveals of the customer's entries refused:
    `logged` of them were logged one by one, `counted` more (past the bound) only counted here, until a
    REVEAL_DENIALS_COUNTED event carries the count into the log when the hour has passed."""

    __tablename__ = "foreign_denials"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    actor: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    logged: Mapped[int] = mapped_column(Integer)
    counted: Mapped[int] = mapped_column(BigInteger)


class MailCursorRow(Base):
    """How far a customer's log were mailed to whom they concern (services.kit.notices)."""

    __tablename__ = "mail_cursors"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class WebhookCursorRow(Base):
    """How far a customer's log was fanned out to its webhooks' deliveries (services.depot.webhooks)."""

    __tablename__ = "webhook_cursors"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class WebhookRow(Base):
    """An endpoint of a customer's that receives its events of `event_types` (EventType names without their
    prefix, comma-separated). Its signing secret is never stored: it is derived from the master key and
    `secret_nonce` (barrier.WebhookSecrets), so only the depot can sign."""

    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer: Mapped[str] = mapped_column(String(10), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[str] = mapped_column(String(1000))
    description: Mapped[str] = mapped_column(String(500))
    secret_nonce: Mapped[str] = mapped_column(String(64))
    creator: Mapped[str] = mapped_column(String(80))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class WebhookSourceRow(Base):
    """The cursor of the connections service's feed of a customer, up to which its events became deliveries."""

    __tablename__ = "webhook_sources"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    cursor: Mapped[str] = mapped_column(String(2000))


class WebhookDeliveryRow(Base):
    """One event for one endpoint: PENDING until answered 2xx (DELIVERED) or parked (FAILED). `next_attempt_time`
    also leases a delivery being sent (a replica's worker claims it by moving it on), so no two send it at once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "event_id"),
                      Index("ix_webhook_deliveries_due", "state", "next_attempt_time"),
                      Index("ix_webhook_deliveries_webhook", "webhook_id", "pk"))
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    customer: Mapped[str] = mapped_column(String(10))
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_attempt_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str] = mapped_column(String(200))
    delivered_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
