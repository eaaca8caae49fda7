"""Systems of a customer: register, read, search ("Switch System"), change and delete."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.connections import model
from services.connections.model import IncidentStatus
from services.connections.store import begin_write, page_token, read_page_token
from services.connections.tables import IncidentRow, SystemRow, WindowRow
from services.kit import names
from services.kit.clock import Clock
from services.kit.db import Database
from services.kit.errors import AlreadyExists, EtagMismatch, FailedPrecondition, InvalidArgument, NotFound
from services.kit.validate import Violations

UPDATABLE = {"installation_number", "system_id", "description", "product", "saprouter_route"}


@dataclass(frozen=True)
class SystemFields:
    """The values of a system a caller supplies."""

    installation_number: str = ""
    system_id: str = ""
    system_number: str = ""
    description: str = ""
    product: str = ""
    saprouter_route: str = ""


def validate_fields(values: SystemFields, only: set[str] | None = None, prefix: str = "system.") -> None:
    """Raise INVALID_ARGUMENT naming every bad field (of `only`, when given)."""
    v = Violations()
    checks = {
        "installation_number": lambda x: None if model.INSTALLATION_NUMBER.fullmatch(x)
        else ("is required" if not x else "must be 1 to 10 digits"),
        "system_id": model.sid_problem,
        "system_number": lambda x: None if model.SYSTEM_NUMBER.fullmatch(x)
        else ("is required" if not x else "must be 1 to 18 digits"),
        "description": lambda x: model.text_problem(x, model.MAX_DESCRIPTION),
        "product": lambda x: model.text_problem(x, model.MAX_PRODUCT),
        "saprouter_route": model.route_problem,
    }
    for field in fields(values):
        if only is not None and field.name not in only:
            continue
        problem = checks[field.name](getattr(values, field.name))
        if problem:
            v.add(prefix + field.name, problem)
    v.raise_if_any()


def system_name(row: SystemRow) -> str:
    return names.system(row.customer, row.system_number)


async def find_system(session: AsyncSession, customer: str, number: str, *, lock: bool = False) -> SystemRow:
    """The system customers/{customer}/systems/{number}, or NOT_FOUND; `lock` holds its row until commit."""
    query = select(SystemRow).where(SystemRow.customer == customer, SystemRow.system_number == number)
    row = (await session.scalars(query.with_for_update() if lock else query)).one_or_none()
    if row is None:
        raise no_such_system(customer, number)
    return row


def no_such_system(customer: str, number: str) -> NotFound:
    return NotFound(f"system {names.system(customer, number)} does not exist")


async def _check_unique(session: AsyncSession, customer: str, values: SystemFields, own_pk: int | None) -> None:
    clash = (await session.scalars(select(SystemRow).where(
        SystemRow.customer == customer,
        SystemRow.installation_number == values.installation_number,
        SystemRow.system_id == values.system_id,
        SystemRow.id != (own_pk or 0),
    ))).first()
    if clash is not None:
        raise AlreadyExists(f"installation {values.installation_number} already has system ID {values.system_id}: "
                            f"{system_name(clash)}")


async def _flush_unique(session: AsyncSession, what: str) -> None:
    """Flush; a uniqueness race lost to a concurrent writer becomes ALREADY_EXISTS."""
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists(f"{what} already exists") from None


async def create_system(db: Database, clock: Clock, customer: str, values: SystemFields) -> SystemRow:
    validate_fields(values)
    now = clock.now()
    async with db.unit_of_work() as session:
        await begin_write(session)
        existing = (await session.scalars(select(SystemRow).where(
            SystemRow.customer == customer, SystemRow.system_number == values.system_number))).first()
        if existing is not None:
            raise AlreadyExists(f"system {system_name(existing)} already exists")
        await _check_unique(session, customer, values, None)
        row = SystemRow(customer=customer, create_time=now, update_time=now, etag=model.new_etag(),
                        **{f.name: getattr(values, f.name) for f in fields(values)})
        session.add(row)
        await _flush_unique(session, f"system {names.system(customer, values.system_number)}")
    return row


async def get_system(db: Database, customer: str, number: str) -> SystemRow:
    async with db.unit_of_work() as session:
        return await find_system(session, customer, number)


async def list_systems(db: Database, customer: str, query: str, size: int, token: str
                       ) -> tuple[list[SystemRow], str]:
    """One page of the customer's systems by system number, optionally matching `query` (case-insensitive
    substring of system ID, installation number or description)."""
    problem = model.text_problem(query, model.MAX_QUERY)
    if problem:
        raise InvalidArgument("query", problem)
    filters = {"customer": customer, "query": query}
    after = read_page_token(token, filters)
    stmt = select(SystemRow).where(SystemRow.customer == customer)
    if query:
        needle = query.lower()
        stmt = stmt.where(or_(*(func.lower(column).contains(needle, autoescape=True) for column in (
            SystemRow.system_id, SystemRow.installation_number, SystemRow.description))))
    if after:
        stmt = stmt.where(SystemRow.system_number > str(after[0]))
    async with db.unit_of_work() as session:
        rows = list((await session.scalars(stmt.order_by(SystemRow.system_number).limit(size + 1))).all())
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, page_token([rows[-1].system_number], filters)


def check_etag(etag: str, row_etag: str, what: str) -> None:
    if etag and etag != row_etag:
        raise EtagMismatch(f"{what} was changed since it was read (etag mismatch); read it again")


async def update_system(db: Database, clock: Clock, customer: str, number: str, values: SystemFields,
                        paths: list[str], etag: str) -> SystemRow:
    validate_fields(values, only=set(paths))
    async with db.unit_of_work() as session:
        await begin_write(session)
        row = await find_system(session, customer, number, lock=True)
        check_etag(etag, row.etag, system_name(row))
        merged = SystemFields(**{f.name: getattr(values if f.name in paths else row, f.name) for f in fields(values)})
        if {"installation_number", "system_id"} & set(paths):
            await _check_unique(session, customer, merged, row.id)
        for path in paths:
            setattr(row, path, getattr(values, path))
        row.update_time = clock.now()
        row.etag = model.new_etag()
        await _flush_unique(session, f"a system with installation {merged.installation_number} "
                                     f"and system ID {merged.system_id}")
    return row


def windows_of(system: SystemRow):
    """The condition selecting the windows of `system`."""
    return and_(WindowRow.customer == system.customer, WindowRow.system_number == system.system_number)


async def active_window(session: AsyncSession, system: SystemRow, now: dt.datetime,
                        type_code: str | None = None) -> WindowRow | None:
    """A window of the system (and type) that is open or scheduled at `now`, if any."""
    stmt = select(WindowRow).where(windows_of(system), WindowRow.closer.is_(None), WindowRow.end_time > now)
    if type_code is not None:
        stmt = stmt.where(WindowRow.type_code == type_code)
    return (await session.scalars(stmt.order_by(WindowRow.start_time).limit(1))).first()


async def delete_system(db: Database, clock: Clock, customer: str, number: str, etag: str) -> None:
    """Delete a system with its set-ups; refused while a window is open or scheduled or an incident of it
    is not confirmed. Its past windows and confirmed incidents stay on record."""
    async with db.unit_of_work() as session:
        await begin_write(session)
        row = await find_system(session, customer, number, lock=True)
        check_etag(etag, row.etag, system_name(row))
        window = await active_window(session, row, clock.now())
        if window is not None:
            raise FailedPrecondition(
                f"system {system_name(row)} has an open or scheduled connection "
                f"{system_name(row)}/connections/{window.id}; close it first")
        incident = (await session.scalars(select(IncidentRow).where(
            IncidentRow.customer == customer, IncidentRow.system_number == number,
            IncidentRow.status != IncidentStatus.CONFIRMED.value).limit(1))).first()
        if incident is not None:
            raise FailedPrecondition(
                f"system {system_name(row)} has an incident that is not confirmed: "
                f"customers/{customer}/incidents/{incident.id}")
        await session.execute(delete(SystemRow).where(SystemRow.id == row.id))
