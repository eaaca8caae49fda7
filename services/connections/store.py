"""The connections database: its units of work and every query - the only module that talks SQL.

`Store.write()` is a unit of work whose read-check-write is atomic: on SQLite it takes the database's write
lock with its first statement (BEGIN IMMEDIATE; the driver would otherwise begin only at the first write, after
the checking reads), so writers run one after another; on PostgreSQL the queries that check lock their rows
(`lock=True`: SELECT ... FOR UPDATE, which SQLite ignores). `Store.read()` is a plain transaction.

On a SQLite file the system a request names is read on a query-only connection on the calling thread
(services.kit.localsqlite: the authorization of nearly every call reads it); when that connection cannot answer,
and always on PostgreSQL, the engine reads it."""
from __future__ import annotations

import datetime as dt
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Sequence

from sqlalchemy import Row, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.connections.connection_types import ConnectionTypeSpec, spec_from_row
from services.connections.model import IncidentStatus, WindowState
from services.connections.tables import (
    AssignmentCheckRow,
    ConnectionTypeRow,
    EventHeadRow,
    EventRow,
    IncidentRow,
    MailCursorRow,
    SessionRow,
    SetupRow,
    SiemCursorRow,
    SystemRow,
    WindowRow,
)
from services.kit import siem
from services.kit.db import Database, upsert
from services.kit.errors import AlreadyExists
from services.kit.localsqlite import LocalSqlite, LocalTable, LocalUnavailable

_HEADS = EventHeadRow.__table__
_EVENTS = EventRow.__table__
_CURSORS = {"siem": SiemCursorRow.__table__, "mail": MailCursorRow.__table__}  # per reader of the outbox


async def append_event(session: AsyncSession, event: EventRow) -> int:
    """Write `event` at the next position of its customer's feed, in the caller's transaction, and return the
    position. The head's row stays locked to the commit (the upsert takes its lock on PostgreSQL; SQLite has one
    writer), so the customer's positions have no gaps and commit in their order: a reader that saw position n
    has seen every position before it. Call it last in a transaction, so the lock is held briefly."""
    moved = upsert(session, _HEADS, {"customer": event.customer}, {"last_position": 1},
                   on_conflict={"last_position": _HEADS.c.last_position + 1})
    position = (await session.execute(moved.returning(_HEADS.c.last_position))).scalar_one()
    values = {c.name: getattr(event, c.name) for c in _EVENTS.columns}
    await session.execute(insert(_EVENTS).values({**values, "position": position}))
    return position


class Store:
    """The service's database, with the local SQLite reader of systems where there is one."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.committed: Callable[[], None] = lambda: None  # called after every committed write (the feed's wake)
        local = LocalSqlite.for_database(db)
        self.local_systems = LocalTable(local, SystemRow.__table__, ("customer", "system_number")) if local else None

    async def close(self) -> None:
        if self.local_systems is not None:
            self.local_systems.local.close()
        await self.db.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[UnitOfWork]:
        """A transaction for reads."""
        async with self.db.unit_of_work() as session:
            yield UnitOfWork(session)

    @asynccontextmanager
    async def write(self, validate_only: bool = False) -> AsyncIterator[UnitOfWork]:
        """A transaction that writes: committed when the block ends, rolled back if it raises, atomic with the
        reads it checks (see the module docstring). With `validate_only` (AIP-163) every check and statement runs
        as it would, and the transaction is rolled back at the end: nothing changes; the rows read or made keep
        the values they had (detached), for the answer."""
        async with self.db.unit_of_work() as session:
            if session.bind.dialect.name == "sqlite":
                await session.execute(text("BEGIN IMMEDIATE"))
            yield UnitOfWork(session)
            if validate_only:
                await session.flush()
                session.expunge_all()
                await session.rollback()
        if not validate_only:
            self.committed()

    async def system(self, customer: str, number: str) -> SystemRow | None:
        """The system customers/{customer}/systems/{number} (its columns as attributes), or None."""
        if self.local_systems is not None:
            try:
                return self.local_systems.get(customer=customer, system_number=number)
            except LocalUnavailable:
                pass  # the engine reads it
        return await self.engine_system(customer, number)

    async def engine_system(self, customer: str, number: str) -> SystemRow | None:
        """`system` read through the engine."""
        async with self.read() as uow:
            return await uow.system(customer, number)

    async def installation(self, customer: str, number: str) -> str:
        """The system's installation number ("" when there is no such system), as its authorization needs it."""
        if self.local_systems is not None:
            try:
                row = self.local_systems.get(customer=customer, system_number=number)
                return row.installation_number if row is not None else ""
            except LocalUnavailable:
                pass  # the engine reads it
        async with self.db.unit_of_work() as session:
            value = await session.scalar(select(SystemRow.installation_number).where(
                SystemRow.customer == customer, SystemRow.system_number == number))
        return value or ""

    async def incident_system(self, customer: str, incident_id: str) -> str:
        """The number of the incident's system ("" when there is no such incident)."""
        async with self.db.unit_of_work() as session:
            value = await session.scalar(select(IncidentRow.system_number).where(
                IncidentRow.customer == customer, IncidentRow.id == incident_id))
        return value or ""

    async def connection_types(self) -> list[ConnectionTypeSpec]:
        """The catalog, in the seed's order, as the migrations wrote it."""
        table = ConnectionTypeRow.__table__
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(select(table).order_by(table.c.position))).mappings().all()
        return [spec_from_row(row) for row in rows]


def _first(rows: Sequence, size: int) -> tuple[list, bool]:
    """The first `size` of up to size + 1 rows, and whether there were more."""
    return list(rows[:size]), len(rows) > size


def _windows_of(system: SystemRow):
    return and_(WindowRow.customer == system.customer, WindowRow.system_number == system.system_number)


def _in_state(state: WindowState, now: dt.datetime):
    not_closed = WindowRow.closer.is_(None)
    return {
        WindowState.SCHEDULED: and_(not_closed, WindowRow.start_time > now),
        WindowState.OPEN: and_(not_closed, WindowRow.start_time <= now, WindowRow.end_time > now),
        WindowState.CLOSED: WindowRow.closer.is_not(None),
        WindowState.EXPIRED: and_(not_closed, WindowRow.end_time <= now),
    }[state]


class UnitOfWork:
    """The queries of one transaction. Rows it returns may be changed in place: the change is written at the
    commit. `lock=True` holds a row until then (PostgreSQL)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _one(self, query, lock: bool):
        return (await self._session.scalars(query.with_for_update() if lock else query)).one_or_none()

    def add(self, row: object) -> None:
        """Store a new row at the commit."""
        self._session.add(row)

    async def flush_unique(self, what: str) -> None:
        """Write the changes so far now; a uniqueness race lost to a concurrent writer is ALREADY_EXISTS for
        `what`."""
        try:
            await self._session.flush()
        except IntegrityError:
            raise AlreadyExists(f"{what} already exists") from None

    # --- systems -------------------------------------------------------------------------------------

    async def system(self, customer: str, number: str, *, lock: bool = False) -> SystemRow | None:
        return await self._one(select(SystemRow).where(
            SystemRow.customer == customer, SystemRow.system_number == number), lock)

    async def system_with_sid(self, customer: str, installation: str, sid: str, *, other_than: int | None = None
                              ) -> SystemRow | None:
        """A system of the customer with this installation number and system ID (but not row `other_than`)."""
        return (await self._session.scalars(select(SystemRow).where(
            SystemRow.customer == customer, SystemRow.installation_number == installation,
            SystemRow.system_id == sid, SystemRow.id != (other_than or 0)))).first()

    async def systems_page(self, customer: str, query: str, after: str | None, size: int
                           ) -> tuple[list[SystemRow], bool]:
        """The customer's systems by number after `after`, those matching `query` (a case-insensitive substring
        of system ID, installation number or description) when given; and whether more follow."""
        stmt = select(SystemRow).where(SystemRow.customer == customer)
        if query:
            needle = query.lower()
            stmt = stmt.where(or_(*(func.lower(column).contains(needle, autoescape=True) for column in (
                SystemRow.system_id, SystemRow.installation_number, SystemRow.description))))
        if after is not None:
            stmt = stmt.where(SystemRow.system_number > after)
        rows = (await self._session.scalars(stmt.order_by(SystemRow.system_number).limit(size + 1))).all()
        return _first(rows, size)

    async def delete_system(self, system: SystemRow) -> None:
        """Delete the system (its set-ups go with it)."""
        await self._session.execute(delete(SystemRow).where(SystemRow.id == system.id))

    # --- set-ups -------------------------------------------------------------------------------------

    async def setup(self, system: SystemRow, code: str) -> SetupRow | None:
        return (await self._session.scalars(select(SetupRow).where(
            SetupRow.system_pk == system.id, SetupRow.type_code == code))).first()

    async def setups_page(self, system: SystemRow, after: str | None, size: int) -> tuple[list[SetupRow], bool]:
        """The system's set-ups by type code after `after`, and whether more follow."""
        stmt = select(SetupRow).where(SetupRow.system_pk == system.id)
        if after is not None:
            stmt = stmt.where(SetupRow.type_code > after)
        return _first((await self._session.scalars(stmt.order_by(SetupRow.type_code).limit(size + 1))).all(), size)

    async def delete_setup(self, setup: SetupRow) -> None:
        await self._session.execute(delete(SetupRow).where(SetupRow.id == setup.id))

    # --- windows -------------------------------------------------------------------------------------

    async def window(self, system: SystemRow, window_id: str, *, lock: bool = False) -> WindowRow | None:
        return await self._one(select(WindowRow).where(WindowRow.id == window_id, _windows_of(system)), lock)

    async def active_window(self, system: SystemRow, now: dt.datetime, type_code: str | None = None
                            ) -> WindowRow | None:
        """A window of the system (and type) that is open or scheduled at `now`, the earliest first."""
        stmt = select(WindowRow).where(_windows_of(system), WindowRow.closer.is_(None), WindowRow.end_time > now)
        if type_code is not None:
            stmt = stmt.where(WindowRow.type_code == type_code)
        return (await self._session.scalars(stmt.order_by(WindowRow.start_time).limit(1))).first()

    async def overlapping_window(self, system: SystemRow, code: str, start: dt.datetime, end: dt.datetime
                                 ) -> WindowRow | None:
        """A window of the same system and type, not closed early, whose [start, end) meets [start, end)."""
        return (await self._session.scalars(select(WindowRow).where(
            _windows_of(system), WindowRow.type_code == code, WindowRow.closer.is_(None),
            WindowRow.start_time < end, WindowRow.end_time > start,
        ).order_by(WindowRow.start_time).limit(1))).first()

    async def windows_page(self, system: SystemRow, state: WindowState | None, now: dt.datetime,
                           after: tuple[dt.datetime, str] | None, size: int) -> tuple[list[WindowRow], bool]:
        """The system's windows, newest start first (then by id), after the window whose (start, id) is `after`,
        those in `state` at `now` when given; and whether more follow."""
        stmt = select(WindowRow).where(_windows_of(system))
        if state is not None:
            stmt = stmt.where(_in_state(state, now))
        if after is not None:
            start, window_id = after
            stmt = stmt.where(or_(WindowRow.start_time < start,
                                  and_(WindowRow.start_time == start, WindowRow.id < window_id)))
        stmt = stmt.order_by(WindowRow.start_time.desc(), WindowRow.id.desc()).limit(size + 1)
        return _first((await self._session.scalars(stmt)).all(), size)

    async def record_expired(self, now: dt.datetime, limit: int) -> list[Row]:
        """Record `close_time = end_time` on up to `limit` windows whose end has passed and whose close is not
        recorded yet; returns their (id, customer, system_number, incident_id, type_code, end_time). Concurrent
        sweeps on PostgreSQL skip each other's locked rows."""
        due = (await self._session.execute(
            select(WindowRow.id, WindowRow.customer, WindowRow.system_number, WindowRow.incident_id,
                   WindowRow.type_code, WindowRow.end_time)
            .where(WindowRow.close_time.is_(None), WindowRow.end_time <= now)
            .order_by(WindowRow.end_time).limit(limit)
            .with_for_update(skip_locked=True))).all()
        if due:
            await self._session.execute(
                update(WindowRow).where(WindowRow.id.in_([row.id for row in due]), WindowRow.close_time.is_(None))
                .values(close_time=WindowRow.end_time, closed_by_sweep=True)
                .execution_options(synchronize_session=False))
        return list(due)

    async def mark_closing(self, now: dt.datetime, lead: dt.timedelta, limit: int) -> list[WindowRow]:
        """Up to `limit` windows, not closed, ending within `lead` after `now` and not yet marked, now marked
        `closing_warned` (once: concurrent sweeps on PostgreSQL skip each other's locked rows)."""
        due = list((await self._session.scalars(
            select(WindowRow).where(WindowRow.closer.is_(None), WindowRow.closing_warned.is_(False),
                                    WindowRow.end_time > now, WindowRow.end_time <= now + lead)
            .order_by(WindowRow.end_time).limit(limit).with_for_update(skip_locked=True))).all())
        for row in due:
            row.closing_warned = True
        return due

    # --- incidents -----------------------------------------------------------------------------------

    async def incident(self, customer: str, incident_id: str, *, lock: bool = False) -> IncidentRow | None:
        return await self._one(select(IncidentRow).where(
            IncidentRow.id == incident_id, IncidentRow.customer == customer), lock)

    async def incident_by_id(self, incident_id: str, *, lock: bool = False) -> IncidentRow | None:
        """The incident with this id, of whichever customer."""
        return await self._one(select(IncidentRow).where(IncidentRow.id == incident_id), lock)

    async def unconfirmed_incident(self, system: SystemRow) -> IncidentRow | None:
        """An incident of the system that is not confirmed, if any."""
        return (await self._session.scalars(select(IncidentRow).where(
            IncidentRow.customer == system.customer, IncidentRow.system_number == system.system_number,
            IncidentRow.status != IncidentStatus.CONFIRMED.value).limit(1))).first()

    async def incidents_page(self, customer: str, status: IncidentStatus | None, system_number: str | None,
                             after: tuple[dt.datetime, str] | None, size: int) -> tuple[list[IncidentRow], bool]:
        """The customer's incidents, newest first (then by id), after the one whose (create_time, id) is `after`,
        only those in `status` and of `system_number` when given; and whether more follow."""
        stmt = select(IncidentRow).where(IncidentRow.customer == customer)
        if status is not None:
            stmt = stmt.where(IncidentRow.status == status.value)
        if system_number:
            stmt = stmt.where(IncidentRow.system_number == system_number)
        if after is not None:
            created, incident_id = after
            stmt = stmt.where(or_(IncidentRow.create_time < created,
                                  and_(IncidentRow.create_time == created, IncidentRow.id < incident_id)))
        stmt = stmt.order_by(IncidentRow.create_time.desc(), IncidentRow.id.desc()).limit(size + 1)
        return _first((await self._session.scalars(stmt)).all(), size)

    # --- relay sessions (written by the relay; read and marked for termination here) -----------------

    async def session(self, customer: str, number: str, session_id: str, *, lock: bool = False
                      ) -> SessionRow | None:
        """The session `session_id` of system customers/{customer}/systems/{number}, or None."""
        return await self._one(select(SessionRow).where(
            SessionRow.id == session_id, SessionRow.customer == customer, SessionRow.system_number == number), lock)

    async def sessions_page(self, customer: str, number: str, state: str | None, window_id: str | None,
                            principal: str | None, after: tuple[dt.datetime, str] | None, size: int
                            ) -> tuple[list[SessionRow], bool]:
        """The system's sessions, newest start first (then by id), after the one whose (start_time, id) is
        `after`; only those in `state`, through window `window_id` and of `principal` when given; and whether
        more follow."""
        stmt = select(SessionRow).where(SessionRow.customer == customer, SessionRow.system_number == number)
        if state is not None:
            stmt = stmt.where(SessionRow.state == state)
        if window_id is not None:
            stmt = stmt.where(SessionRow.window_id == window_id)
        if principal is not None:
            stmt = stmt.where(SessionRow.principal == principal)
        if after is not None:
            start, session_id = after
            stmt = stmt.where(or_(SessionRow.start_time < start,
                                  and_(SessionRow.start_time == start, SessionRow.id < session_id)))
        stmt = stmt.order_by(SessionRow.start_time.desc(), SessionRow.id.desc()).limit(size + 1)
        return _first((await self._session.scalars(stmt)).all(), size)

    async def request_termination(self, row: SessionRow, by: str, live_state: str) -> bool:
        """Set `terminated_by` on the session if it is still in `live_state` and nobody asked before (the relay
        carrying it then cuts it); False when it was not. `row` is updated too."""
        result = await self._session.execute(
            update(SessionRow).where(SessionRow.id == row.id, SessionRow.state == live_state,
                                     SessionRow.terminated_by == "")
            .values(terminated_by=by).execution_options(synchronize_session="evaluate"))
        return result.rowcount == 1

    # --- the event feed ------------------------------------------------------------------------------

    async def emit(self, event: EventRow) -> int:
        """Append the event of this transaction's change (`append_event`); its position."""
        return await append_event(self._session, event)

    async def events_after(self, customer: str, position: int, limit: int) -> list[EventRow]:
        """Up to `limit` events of the customer after `position`, in order."""
        return list((await self._session.scalars(select(EventRow).where(
            EventRow.customer == customer, EventRow.position > position)
            .order_by(EventRow.position).limit(limit))).all())

    async def last_event_position(self, customer: str) -> int:
        return (await self._session.scalar(select(EventHeadRow.last_position).where(
            EventHeadRow.customer == customer))) or 0

    async def people_of(self, customer: str, window_ids: Sequence[str], incident_ids: Sequence[str]
                        ) -> tuple[dict[str, str], dict[str, str]]:
        """The opener of each of the customer's windows and the reporter of each of its incidents, by id."""
        openers = await self._session.execute(select(WindowRow.id, WindowRow.opener).where(
            WindowRow.customer == customer, WindowRow.id.in_(list(window_ids)))) if window_ids else []
        reporters = await self._session.execute(select(IncidentRow.id, IncidentRow.reporter).where(
            IncidentRow.customer == customer, IncidentRow.id.in_(list(incident_ids)))) if incident_ids else []
        return dict(tuple(r) for r in openers), dict(tuple(r) for r in reporters)

    async def outbox_behind(self, reader: str, limit: int) -> list[tuple[str, int]]:
        """Customers whose events go past what `reader` ("siem", "mail") handled (siem.Outbox.behind)."""
        return [tuple(row) for row in await self._session.execute(
            siem.behind_statement(_HEADS, _HEADS.c.last_position, _CURSORS[reader], limit))]

    async def outbox_handled(self, reader: str, customer: str, position: int) -> None:
        await self._session.execute(siem.exported_statement(self._session, _CURSORS[reader], customer, position))

    # --- notes of assignment changes in flight -------------------------------------------------------

    async def drop_note(self, note_id: str) -> None:
        await self._session.execute(delete(AssignmentCheckRow).where(AssignmentCheckRow.id == note_id))

    async def notes_before(self, cutoff: dt.datetime, limit: int) -> list[AssignmentCheckRow]:
        """Up to `limit` notes written at or before `cutoff`, the oldest first."""
        return list((await self._session.scalars(select(AssignmentCheckRow).where(
            AssignmentCheckRow.create_time <= cutoff).order_by(AssignmentCheckRow.create_time).limit(limit))).all())
