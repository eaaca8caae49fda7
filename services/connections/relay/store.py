"""The relay's queries over the connections database (it shares the service's tables): replicas, connector
keys and attachments, sessions. The only module of the relay that talks SQL.

Writes that check before they write run in `_write()`: on SQLite the database's write lock is taken by the first
statement (BEGIN IMMEDIATE), on PostgreSQL the window row is locked (FOR UPDATE), so two replicas attaching two
connectors of one window run one after the other."""
from __future__ import annotations

import datetime as dt
import json
from contextlib import asynccontextmanager
from typing import AsyncIterator, Iterable

from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.connections.connection_types import ConnectionTypes
from services.connections.relay.model import ACTIVE, ENDED, ConnectorAlreadyAttached, EndReason
from services.connections.tables import (
    AttachmentRow,
    ConnectorKeyRow,
    RelayRow,
    SessionRow,
    SetupRow,
    SystemRow,
    WindowRow,
)
from services.connections.events import session_event
from services.connections.store import append_event
from services.connections.targets import target_of
from services.kit.db import Database


class RelayStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._address = ""  # this replica's, once registered

    async def close(self) -> None:
        await self.db.close()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        async with self.db.unit_of_work() as session:
            if session.bind.dialect.name == "sqlite":
                await session.execute(text("BEGIN IMMEDIATE"))
            yield session

    # --- replicas --------------------------------------------------------------------------------------

    async def register(self, relay_id: str, address: str, now: dt.datetime) -> None:
        self._address = address
        async with self._write() as session:
            session.add(RelayRow(id=relay_id, address=address, start_time=now, seen_time=now))

    async def unregister(self, relay_id: str) -> None:
        """A replica stopping cleanly: its attachments and its row go (its sessions were ended first)."""
        async with self._write() as session:
            await session.execute(delete(AttachmentRow).where(AttachmentRow.relay_id == relay_id))
            await session.execute(delete(RelayRow).where(RelayRow.id == relay_id))

    async def renew(self, relay_id: str, now: dt.datetime, window_ids: Iterable[str],
                    counts: dict[str, tuple[int, int]]) -> set[str]:
        """One check's writes: this replica and its attachments seen now, the byte counts of its live sessions;
        returns which of those sessions the customer asked to terminate."""
        windows = list(window_ids)
        async with self.db.unit_of_work() as session:
            renewed = await session.execute(update(RelayRow).where(RelayRow.id == relay_id).values(seen_time=now))
            if not renewed.rowcount:  # taken for gone while it stalled: it is back (its later sessions count)
                session.add(RelayRow(id=relay_id, address=self._address, start_time=now, seen_time=now))
            if windows:
                await session.execute(update(AttachmentRow).where(
                    AttachmentRow.relay_id == relay_id, AttachmentRow.window_id.in_(windows)).values(seen_time=now))
            for session_id, (up, down) in counts.items():
                await session.execute(update(SessionRow).where(SessionRow.id == session_id).values(
                    bytes_to_target=up, bytes_from_target=down))
            if not counts:
                return set()
            rows = await session.scalars(select(SessionRow.id).where(
                SessionRow.id.in_(list(counts)), SessionRow.state == ACTIVE, SessionRow.terminated_by != ""))
            return set(rows.all())

    async def end_lost(self, now: dt.datetime, stale_before: dt.datetime) -> int:
        """End the sessions of replicas not seen since `stale_before` (crashed), and forget those replicas and
        their attachments; returns how many sessions were ended."""
        async with self._write() as session:
            stale = select(RelayRow.id).where(RelayRow.seen_time < stale_before)
            alive = select(RelayRow.id).where(RelayRow.seen_time >= stale_before)
            detail = "the relay replica carrying it stopped"
            ended = (await session.scalars(update(SessionRow).where(
                SessionRow.state == ACTIVE, SessionRow.relay_id.not_in(alive)).values(
                state=ENDED, end_time=now, end_reason=EndReason.RELAY_LOST.value, detail=detail)
                .returning(SessionRow).execution_options(synchronize_session=False))).all()
            await session.execute(delete(AttachmentRow).where(or_(
                AttachmentRow.relay_id.in_(stale), AttachmentRow.seen_time < stale_before)))
            await session.execute(delete(RelayRow).where(RelayRow.seen_time < stale_before))
            for row in sorted(ended, key=lambda r: r.customer):  # heads locked in one order (no deadlock)
                await append_event(session, session_event("SESSION_ENDED", row, now, _ended(row)))
            return len(ended)

    # --- windows, systems, targets ---------------------------------------------------------------------

    async def window(self, window_id: str) -> WindowRow | None:
        async with self.db.unit_of_work() as session:
            return await session.get(WindowRow, window_id)

    async def windows(self, window_ids: Iterable[str]) -> dict[str, WindowRow]:
        ids = list(window_ids)
        if not ids:
            return {}
        async with self.db.unit_of_work() as session:
            rows = await session.scalars(select(WindowRow).where(WindowRow.id.in_(ids)))
            return {row.id: row for row in rows.all()}

    async def system(self, customer: str, number: str) -> SystemRow | None:
        async with self.db.unit_of_work() as session:
            return (await session.scalars(select(SystemRow).where(
                SystemRow.customer == customer, SystemRow.system_number == number))).first()

    async def target(self, window: WindowRow, types: ConnectionTypes) -> str:
        """The target of the window's system's set-up of its type now ("" without a set-up or a target)."""
        async with self.db.unit_of_work() as session:
            parameters = await session.scalar(select(SetupRow.parameters).join(
                SystemRow, SystemRow.id == SetupRow.system_pk).where(
                SystemRow.customer == window.customer, SystemRow.system_number == window.system_number,
                SetupRow.type_code == window.type_code))
        spec = types.find(window.type_code)
        if parameters is None or spec is None:
            return ""
        return target_of(spec, json.loads(parameters))

    # --- connector files and attachments ---------------------------------------------------------------

    async def key_issued(self, key_hash: str, window_id: str) -> bool:
        async with self.db.unit_of_work() as session:
            found = await session.scalar(select(ConnectorKeyRow.window_id).where(
                ConnectorKeyRow.key_hash == key_hash))
        return found == window_id

    async def attach(self, window_id: str, relay_id: str, instance_id: str, now: dt.datetime,
                     live_after: dt.datetime) -> None:
        """Record the connector `instance_id` attached to this replica for the window; ALREADY_EXISTS
        (CONNECTOR_ALREADY_ATTACHED) while another instance is attached to any live replica."""
        async with self._write() as session:
            await session.execute(select(WindowRow.id).where(WindowRow.id == window_id).with_for_update())
            other = (await session.scalars(select(AttachmentRow).where(
                AttachmentRow.window_id == window_id, AttachmentRow.instance_id != instance_id,
                AttachmentRow.seen_time >= live_after))).first()
            if other is not None:
                raise ConnectorAlreadyAttached(
                    "another connector is attached for this window (a copy of the connector file?); only one "
                    "connector may serve a window at a time")
            await session.execute(delete(AttachmentRow).where(
                AttachmentRow.window_id == window_id, or_(AttachmentRow.relay_id == relay_id,
                                                          AttachmentRow.seen_time < live_after)))
            session.add(AttachmentRow(window_id=window_id, relay_id=relay_id, instance_id=instance_id,
                                      attach_time=now, seen_time=now))

    async def detach(self, window_id: str, relay_id: str, instance_id: str) -> None:
        async with self.db.unit_of_work() as session:
            await session.execute(delete(AttachmentRow).where(and_(
                AttachmentRow.window_id == window_id, AttachmentRow.relay_id == relay_id,
                AttachmentRow.instance_id == instance_id)))

    # --- sessions --------------------------------------------------------------------------------------

    async def add_session(self, row: SessionRow) -> None:
        """A new session: ACTIVE (admitted) or REFUSED (with its reason)."""
        async with self.db.unit_of_work() as session:
            session.add(row)
            if row.state == ACTIVE:
                event = session_event("SESSION_STARTED", row, row.start_time, f"to {row.target}")
            else:
                event = session_event("SESSION_REFUSED", row, row.start_time, f"{row.refusal_reason}: {row.detail}")
            await append_event(session, event)

    async def end_session(self, session_id: str, reason: EndReason, detail: str, now: dt.datetime, up: int,
                          down: int) -> None:
        """Record the end of an ACTIVE session once (a session already ended keeps its first end)."""
        async with self.db.unit_of_work() as session:
            row = (await session.scalars(update(SessionRow).where(
                SessionRow.id == session_id, SessionRow.state == ACTIVE).values(
                state=ENDED, end_time=now, end_reason=reason.value, detail=detail[:500], bytes_to_target=up,
                bytes_from_target=down).returning(SessionRow).execution_options(synchronize_session=False))
                ).one_or_none()
            if row is not None:
                await append_event(session, session_event("SESSION_ENDED", row, now, _ended(row)))


def _ended(row: SessionRow) -> str:
    """Why a session ended and what it carried (an ENDED event's detail)."""
    by = f", terminated by {row.terminated_by}" if row.terminated_by else ""
    return (f"{row.end_reason}{by}: {row.bytes_to_target} bytes to the target, {row.bytes_from_target} back; "
            f"{row.detail}")
