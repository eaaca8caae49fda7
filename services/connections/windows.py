"""Windows: a set-up connection type opened for a system over a time frame [start, end); closing one
early; and the sweep that records each automatic close once."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.connections import model
from services.connections.catalog import ConnectionTypeSpec
from services.connections.model import Actor, IncidentStatus, WindowState, window_state
from services.connections.setups import find_setup
from services.connections.store import begin_write, cursor_time, page_token, read_page_token
from services.connections.systems import find_system, system_name, windows_of
from services.connections.tables import IncidentRow, SystemRow, WindowRow
from services.connections.type_catalog import max_duration
from services.kit.clock import Clock, as_utc
from services.kit.db import Database
from services.kit.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from services.kit.logs import log
from services.kit.validate import Violations

logger = logging.getLogger(__name__)

MAX_REASON = 500
SWEEP_BATCH = 500


@dataclass(frozen=True)
class OpenRequest:
    """What OpenConnection asks for; `start=None` means now."""

    spec: ConnectionTypeSpec
    start: dt.datetime | None
    end: dt.datetime | None
    incident_id: str | None
    reason: str


def window_name(row: WindowRow) -> str:
    return f"customers/{row.customer}/systems/{row.system_number}/connections/{row.id}"


def state_of(row: WindowRow, now: dt.datetime) -> WindowState:
    return window_state(as_utc(row.start_time), as_utc(row.end_time), row.closer is not None, now)


def _validate_open(request: OpenRequest, start: dt.datetime, now: dt.datetime) -> None:
    v = Violations()
    for field, problem in model.time_frame_problems(start, request.end, now, max_duration(request.spec),
                                                    request.spec.display_name):
        v.add(field, problem)
    problem = model.text_problem(request.reason, MAX_REASON)
    if problem:
        v.add("reason", problem)
    v.raise_if_any()


async def _check_incident(session: AsyncSession, system: SystemRow, incident_id: str) -> None:
    incident = await session.get(IncidentRow, incident_id)
    if incident is None or incident.customer != system.customer:
        raise InvalidArgument("incident", "names no incident of this customer")
    if incident.system_number != system.system_number:
        raise InvalidArgument("incident", f"is an incident of another system "
                                          f"(customers/{incident.customer}/systems/{incident.system_number})")
    if incident.status == IncidentStatus.CONFIRMED.value:
        raise FailedPrecondition(f"incident customers/{incident.customer}/incidents/{incident.id} is confirmed "
                                 "(closed); no connection can be opened for it")


async def _overlapping(session: AsyncSession, system: SystemRow, code: str, start: dt.datetime,
                       end: dt.datetime) -> WindowRow | None:
    """A window of the same system and type not closed early whose [start, end) meets [start, end)."""
    return (await session.scalars(select(WindowRow).where(
        windows_of(system), WindowRow.type_code == code, WindowRow.closer.is_(None),
        WindowRow.start_time < end, WindowRow.end_time > start,
    ).order_by(WindowRow.start_time).limit(1))).first()


async def open_connection(db: Database, clock: Clock, actor: Actor, customer: str, number: str,
                          request: OpenRequest) -> WindowRow:
    """Open a window. The overlap check and the insert run under the system's row lock (PostgreSQL) or
    the database write lock (SQLite), so two overlapping windows can never both be stored."""
    now = clock.now()
    start = request.start or now
    _validate_open(request, start, now)
    code = request.spec.code
    async with db.unit_of_work() as session:
        await begin_write(session)
        system = await find_system(session, customer, number, lock=True)
        if await find_setup(session, system, code) is None:
            raise FailedPrecondition(f"connection type {code} is not set up for system {system_name(system)}; "
                                     "set it up first (SetUpConnection)")
        if request.incident_id:
            await _check_incident(session, system, request.incident_id)
        clash = await _overlapping(session, system, code, start, request.end)
        if clash is not None:
            name = window_name(clash)
            raise Conflict(
                f"the time frame overlaps connection {name} of the same type "
                f"({as_utc(clash.start_time).isoformat()} to {as_utc(clash.end_time).isoformat()}); "
                "close it or choose another time frame", metadata={"existing_connection": name})
        row = WindowRow(id=model.new_id(), customer=system.customer, system_number=system.system_number,
                        type_code=code, start_time=start, end_time=request.end,
                        incident_id=request.incident_id or None, reason=request.reason, opener=actor.user,
                        create_time=now, closed_by_sweep=False)
        session.add(row)
    log(logger, logging.INFO, "connection opened", connection=window_name(row), opener=actor.user)
    return row


async def _find_window(session: AsyncSession, system: SystemRow, window_id: str, *, lock: bool = False
                       ) -> WindowRow:
    query = select(WindowRow).where(WindowRow.id == window_id, windows_of(system))
    row = (await session.scalars(query.with_for_update() if lock else query)).one_or_none()
    if row is None:
        raise NotFound(f"connection {system_name(system)}/connections/{window_id} does not exist")
    return row


async def close_connection(db: Database, clock: Clock, actor: Actor, customer: str, number: str,
                           window_id: str) -> WindowRow:
    """Close an open or scheduled window now."""
    async with db.unit_of_work() as session:
        await begin_write(session)
        system = await find_system(session, customer, number)
        row = await _find_window(session, system, window_id, lock=True)
        now = clock.now()
        state = state_of(row, now)
        if state not in model.ACTIVE_STATES:
            raise FailedPrecondition(f"connection {window_name(row)} is already {state.value}")
        row.closer = actor.user
        row.close_time = now
    log(logger, logging.INFO, "connection closed", connection=window_name(row), closer=actor.user)
    return row


async def get_connection(db: Database, customer: str, number: str, window_id: str) -> tuple[WindowRow, SystemRow]:
    async with db.unit_of_work() as session:
        system = await find_system(session, customer, number)
        return await _find_window(session, system, window_id), system


def _state_filter(state: WindowState, now: dt.datetime):
    not_closed = WindowRow.closer.is_(None)
    return {
        WindowState.SCHEDULED: and_(not_closed, WindowRow.start_time > now),
        WindowState.OPEN: and_(not_closed, WindowRow.start_time <= now, WindowRow.end_time > now),
        WindowState.CLOSED: WindowRow.closer.is_not(None),
        WindowState.EXPIRED: and_(not_closed, WindowRow.end_time <= now),
    }[state]


async def list_connections(db: Database, clock: Clock, customer: str, number: str, state: WindowState | None,
                           size: int, token: str) -> tuple[list[WindowRow], str]:
    """One page of the system's windows, newest start first, optionally only those in `state` now."""
    filters = {"customer": customer, "system": number, "state": state.value if state else ""}
    after = read_page_token(token, filters)
    async with db.unit_of_work() as session:
        system = await find_system(session, customer, number)
        stmt = select(WindowRow).where(windows_of(system))
        if state is not None:
            stmt = stmt.where(_state_filter(state, clock.now()))
        if after:
            start = cursor_time(after[0])
            stmt = stmt.where(or_(WindowRow.start_time < start,
                                  and_(WindowRow.start_time == start, WindowRow.id < str(after[1]))))
        stmt = stmt.order_by(WindowRow.start_time.desc(), WindowRow.id.desc()).limit(size + 1)
        rows = list((await session.scalars(stmt)).all())
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    last = rows[-1]
    return rows, page_token([as_utc(last.start_time).isoformat(), last.id], filters)


async def record_expired(db: Database, clock: Clock, batch: int = SWEEP_BATCH) -> list[str]:
    """Record the automatic close of every window whose end has passed, once each; returns their names.

    Only rows without a close are touched (`close_time IS NULL`), so a window is recorded by exactly one
    sweep; on PostgreSQL concurrent sweeps skip each other's locked rows.
    """
    now = clock.now()
    recorded: list[str] = []
    while True:
        async with db.unit_of_work() as session:
            await begin_write(session)
            due = (await session.execute(
                select(WindowRow.id, WindowRow.customer, WindowRow.system_number)
                .where(WindowRow.close_time.is_(None), WindowRow.end_time <= now)
                .order_by(WindowRow.end_time).limit(batch)
                .with_for_update(skip_locked=True))).all()
            ids = [row.id for row in due]
            if ids:
                await session.execute(
                    update(WindowRow).where(WindowRow.id.in_(ids), WindowRow.close_time.is_(None))
                    .values(close_time=WindowRow.end_time, closed_by_sweep=True)
                    .execution_options(synchronize_session=False))
        for row in due:
            name = window_name(row)
            recorded.append(name)
            log(logger, logging.INFO, "connection expired", connection=name)
        if len(due) < batch:
            return recorded
