"""Windows: a set-up connection type opened for a system over a time frame [start, end); closing one
early; and the sweep that records each automatic close once."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from services.connections import events, model
from services.connections.connection_types import ConnectionTypeSpec, max_duration
from services.connections.model import Actor, IncidentStatus, WindowState, window_state
from services.connections.store import Store, UnitOfWork
from services.connections.systems import find_system, system_name
from services.connections.tables import SystemRow, WindowRow
from services.kit import names
from services.kit.clock import Clock, as_utc
from services.kit.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from services.kit.logs import log
from services.kit.paging import STR, TIME, PageTokens
from services.kit.validate import Violations

logger = logging.getLogger(__name__)

MAX_REASON = 500
SWEEP_BATCH = 500
SWEEP_ACTOR = "services/connections"  # the actor of a window's expiry
_PAGE_TOKENS = PageTokens(TIME, STR)  # ListConnections pages by (start_time, id), newest first


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


async def _check_incident(uow: UnitOfWork, system: SystemRow, incident_id: str) -> None:
    incident = await uow.incident(system.customer, incident_id)
    if incident is None:
        raise InvalidArgument("incident", "names no incident of this customer")
    if incident.system_number != system.system_number:
        raise InvalidArgument("incident", f"is an incident of another system "
                                          f"(customers/{incident.customer}/systems/{incident.system_number})")
    if incident.status == IncidentStatus.CONFIRMED.value:
        raise FailedPrecondition(f"incident customers/{incident.customer}/incidents/{incident.id} is confirmed "
                                 "(closed); no connection can be opened for it")


async def open_connection(store: Store, clock: Clock, actor: Actor, customer: str, number: str,
                          request: OpenRequest, *, validate_only: bool = False) -> WindowRow:
    """Open a window. The overlap check and the insert run under the system's row lock (PostgreSQL) or
    the database write lock (SQLite), so two overlapping windows can never both be stored. With `validate_only`,
    every check runs and nothing is opened."""
    now = clock.now()
    start = request.start or now
    _validate_open(request, start, now)
    code = request.spec.code
    async with store.write(validate_only) as uow:
        system = await find_system(uow, customer, number, lock=True)
        if await uow.setup(system, code) is None:
            raise FailedPrecondition(f"connection type {code} is not set up for system {system_name(system)}; "
                                     "set it up first (SetUpConnection)")
        if request.incident_id:
            await _check_incident(uow, system, request.incident_id)
        clash = await uow.overlapping_window(system, code, start, request.end)
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
        uow.add(row)
        await uow.emit(events.window_event("WINDOW_OPENED", row, actor.user, now, detail=(
            f"{code} from {as_utc(start).isoformat()} to {as_utc(request.end).isoformat()}")))
    if not validate_only:
        log(logger, logging.INFO, "connection opened", connection=window_name(row), opener=actor.user)
    return row


async def _find_window(uow: UnitOfWork, system: SystemRow, window_id: str, *, lock: bool = False) -> WindowRow:
    row = await uow.window(system, window_id, lock=lock)
    if row is None:
        raise NotFound(f"connection {system_name(system)}/connections/{window_id} does not exist")
    return row


async def close_connection(store: Store, clock: Clock, actor: Actor, customer: str, number: str,
                           window_id: str, *, validate_only: bool = False) -> WindowRow:
    """Close an open or scheduled window now (with `validate_only`: check that it could be, and change nothing)."""
    async with store.write(validate_only) as uow:
        system = await find_system(uow, customer, number)
        row = await _find_window(uow, system, window_id, lock=True)
        now = clock.now()
        state = state_of(row, now)
        if state not in model.ACTIVE_STATES:
            raise FailedPrecondition(f"connection {window_name(row)} is already {state.value}")
        row.closer = actor.user
        row.close_time = now
        await uow.emit(events.window_event("WINDOW_CLOSED", row, actor.user, now,
                                           detail=f"{row.type_code} closed before its end"))
    if not validate_only:
        log(logger, logging.INFO, "connection closed", connection=window_name(row), closer=actor.user)
    return row


def _validate_extension(row: WindowRow, spec: ConnectionTypeSpec, end: dt.datetime | None,
                        now: dt.datetime) -> dt.datetime:
    """The new end of `row`, or INVALID_ARGUMENT naming `end_time`: set, later than the current end, and no
    further from the later of the window's start and now than the type's maximum (OpenConnection's limit, as if
    the rest of the window were opened now)."""
    current = as_utc(row.end_time)
    if end is None:
        raise InvalidArgument("end_time", "is required")
    if end <= current:
        raise InvalidArgument("end_time", f"must be later than the connection's current end ({current.isoformat()})")
    begin = max(as_utc(row.start_time), now)
    if end - begin > max_duration(spec):
        hours = int(max_duration(spec).total_seconds() // 3600)
        raise InvalidArgument("end_time", f"is more than {spec.display_name}'s maximum of {hours} hours from "
                                          f"{'now' if begin == now else 'the connection start'}")
    return end


async def extend_connection(store: Store, clock: Clock, actor: Actor, customer: str, number: str, window_id: str,
                            end: dt.datetime | None, spec_of, *, validate_only: bool = False) -> WindowRow:
    """Give an open or scheduled window a later end (`spec_of(code)` is its connection type), under the system's
    lock as OpenConnection, so the longer time frame cannot come to overlap a window of the same type. Its
    closing warning is due again for the new end."""
    async with store.write(validate_only) as uow:
        system = await find_system(uow, customer, number, lock=True)
        row = await _find_window(uow, system, window_id, lock=True)
        now = clock.now()
        state = state_of(row, now)
        if state not in model.ACTIVE_STATES or row.close_time is not None:  # a sweep may have recorded its end
            shown = state.value if state not in model.ACTIVE_STATES else WindowState.EXPIRED.value
            raise FailedPrecondition(f"connection {window_name(row)} is already {shown}; open a new one")
        if row.incident_id:
            await _check_incident(uow, system, row.incident_id)  # not for a confirmed (closed) incident
        end = _validate_extension(row, spec_of(row.type_code), end, now)
        old = as_utc(row.end_time)
        clash = await uow.overlapping_window(system, row.type_code, old, end)
        if clash is not None:
            name = window_name(clash)
            raise Conflict(
                f"the longer time frame overlaps connection {name} of the same type (from "
                f"{as_utc(clash.start_time).isoformat()}); choose an earlier end", metadata={"existing_connection": name})
        row.end_time = end
        row.closing_warned = False
        await uow.emit(events.window_event("WINDOW_EXTENDED", row, actor.user, now, detail=(
            f"{row.type_code} ends at {end.isoformat()} instead of {old.isoformat()}")))
    if not validate_only:
        log(logger, logging.INFO, "connection extended", connection=window_name(row), by=actor.user,
            end=end.isoformat())
    return row


async def get_connection(store: Store, customer: str, number: str, window_id: str
                         ) -> tuple[WindowRow, SystemRow]:
    async with store.read() as uow:
        system = await find_system(uow, customer, number)
        return await _find_window(uow, system, window_id), system


async def list_connections(store: Store, clock: Clock, customer: str, number: str, state: WindowState | None,
                           size: int, token: str) -> tuple[list[WindowRow], str]:
    """One page of the system's windows, newest start first, optionally only those in `state` now."""
    scope = {"parent": names.system(customer, number), "state": state.value if state else "",
             "order": "start_time desc, id desc"}
    after = _PAGE_TOKENS.read(token, scope)
    async with store.read() as uow:
        system = await find_system(uow, customer, number)
        rows, more = await uow.windows_page(system, state, clock.now(), tuple(after) if after else None, size)
    return rows, _PAGE_TOKENS.issue([rows[-1].start_time, rows[-1].id], scope) if more else ""


async def warn_closing(store: Store, clock: Clock, lead: dt.timedelta, batch: int = SWEEP_BATCH) -> list[str]:
    """Write WINDOW_CLOSING for every window whose end is `lead` away or less, once each (marked in the same
    transaction); a window that was open for less than `lead` (or opened inside it) is marked without one.
    Returns the names of the windows warned."""
    if not lead:
        return []
    now = clock.now()
    warned: list[str] = []
    while True:
        async with store.write() as uow:
            due = await uow.mark_closing(now, lead, batch)
            for row in sorted(due, key=lambda r: r.customer):  # heads locked in one order (no deadlock)
                end = as_utc(row.end_time)
                if end - lead < as_utc(row.start_time) or end - lead <= as_utc(row.create_time):
                    continue
                await uow.emit(events.window_event("WINDOW_CLOSING", row, SWEEP_ACTOR, now, detail=(
                    f"{row.type_code} ends at {end.isoformat()}, in {int((end - now).total_seconds() // 60)} min")))
                warned.append(window_name(row))
        if len(due) < batch:
            return warned


async def record_expired(store: Store, clock: Clock, batch: int = SWEEP_BATCH) -> list[str]:
    """Record the automatic close of every window whose end has passed, once each; returns their names.

    Only windows without a recorded close are touched, so a window is recorded by exactly one sweep.
    """
    now = clock.now()
    recorded: list[str] = []
    while True:
        async with store.write() as uow:
            due = await uow.record_expired(now, batch)
            for row in sorted(due, key=lambda r: r.customer):  # heads locked in one order (no deadlock)
                await uow.emit(events.window_event("WINDOW_EXPIRED", row, SWEEP_ACTOR, now, detail=(
                    f"{row.type_code} ended at {as_utc(row.end_time).isoformat()}")))
        for row in due:
            name = window_name(row)
            recorded.append(name)
            log(logger, logging.INFO, "connection expired", connection=name)
        if len(due) < batch:
            return recorded
