"""The authz database: customers, principals, tokens and one-time codes (hashes only), grants and grant
requests, support assignments, and the hash-chained identity logs."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.kit.db import make_base

Base = make_base()


class CustomerRow(Base):
    __tablename__ = "customers"
    number: Mapped[str] = mapped_column(String(10), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class PrincipalRow(Base):
    __tablename__ = "principals"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    customer: Mapped[str | None] = mapped_column(ForeignKey("customers.number"), nullable=True, index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), default="")
    # the address as compared for uniqueness (model.email_key); NULL for principals without one
    email_key: Mapped[str | None] = mapped_column(String(254), nullable=True, unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in a row
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the NotificationKind names (without prefix) it does not want mailed, comma-separated; "": every kind
    muted_notifications: Mapped[str] = mapped_column(String(200), default="", server_default="")


class TokenRow(Base):
    __tablename__ = "tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("principals.user_id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class GrantRow(Base):
    __tablename__ = "grants"
    user_id: Mapped[str] = mapped_column(ForeignKey("principals.user_id", ondelete="CASCADE"), primary_key=True)
    authorization: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer: Mapped[str] = mapped_column(ForeignKey("customers.number"))
    installations: Mapped[str] = mapped_column(Text, default="")  # comma-separated; empty = all
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # four eyes: the second admin


class GrantRequestRow(Base):
    """A grant of EDIT_ALL_LOGIN_DATA or USER_ADMIN waiting for a second user administrator (four eyes)."""

    __tablename__ = "grant_requests"
    user_id: Mapped[str] = mapped_column(ForeignKey("principals.user_id", ondelete="CASCADE"), primary_key=True)
    authorization: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer: Mapped[str] = mapped_column(ForeignKey("customers.number"))
    installations: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class CodeRow(Base):
    """A user's one live one-time code (enrollment or reset): its SHA-256 only."""

    __tablename__ = "one_time_codes"
    user_id: Mapped[str] = mapped_column(ForeignKey("principals.user_id", ondelete="CASCADE"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    attempts_left: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class IdentityEventRow(Base):
    """One event of an identity log: a customer's (customer = its number) or the vendor side's (customer = "")."""

    __tablename__ = "identity_events"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    event_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(120))
    detail: Mapped[str] = mapped_column(Text, default="")
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class IdentityHeadRow(Base):
    """The last event of each identity log: locked by every append, so appends to one log run one by one."""

    __tablename__ = "identity_log_heads"
    customer: Mapped[str] = mapped_column(String(10), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class AssignmentRow(Base):
    __tablename__ = "support_assignments"
    incident: Mapped[str] = mapped_column(String(120), primary_key=True)
    engineer: Mapped[str] = mapped_column(ForeignKey("principals.user_id", ondelete="CASCADE"))
    customer: Mapped[str] = mapped_column(String(10))
    system: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


Index("ix_support_assignments_engineer_system", AssignmentRow.engineer, AssignmentRow.system)
