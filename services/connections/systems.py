"""Systems of a customer: register, read, search ("Switch System"), change and delete."""
from __future__ import annotations

from dataclasses import dataclass, fields

from services.connections import model
from services.connections.store import Store, UnitOfWork
from services.connections.tables import SystemRow
from services.kit import auth, names
from services.kit import permissions as p
from services.kit.auth import Resource
from services.kit.clock import Clock
from services.kit.errors import AlreadyExists, EtagMismatch, FailedPrecondition, InvalidArgument, NotFound
from services.kit.paging import STR, PageTokens
from services.kit.validate import Violations

UPDATABLE = {"installation_number", "system_id", "description", "product", "saprouter_route"}
_PAGE_TOKENS = PageTokens(STR)  # ListSystems pages by system number


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


def no_such_system(customer: str, number: str) -> NotFound:
    return NotFound(f"system {names.system(customer, number)} does not exist")


async def find_system(uow: UnitOfWork, customer: str, number: str, *, lock: bool = False) -> SystemRow:
    """The system customers/{customer}/systems/{number}, or NOT_FOUND; `lock` holds its row until commit."""
    row = await uow.system(customer, number, lock=lock)
    if row is None:
        raise no_such_system(customer, number)
    return row


async def _check_unique(uow: UnitOfWork, customer: str, values: SystemFields, own_pk: int | None) -> None:
    clash = await uow.system_with_sid(customer, values.installation_number, values.system_id, other_than=own_pk)
    if clash is not None:
        raise AlreadyExists(f"installation {values.installation_number} already has system ID {values.system_id}: "
                            f"{system_name(clash)}")


async def create_system(store: Store, clock: Clock, customer: str, values: SystemFields) -> SystemRow:
    validate_fields(values)
    now = clock.now()
    async with store.write() as uow:
        existing = await uow.system(customer, values.system_number)
        if existing is not None:
            raise AlreadyExists(f"system {system_name(existing)} already exists")
        await _check_unique(uow, customer, values, None)
        row = SystemRow(customer=customer, create_time=now, update_time=now, etag=model.new_etag(),
                        **{f.name: getattr(values, f.name) for f in fields(values)})
        uow.add(row)
        await uow.flush_unique(f"system {names.system(customer, values.system_number)}")
    return row


async def get_system(store: Store, customer: str, number: str) -> SystemRow:
    """The system (its columns as attributes), or NOT_FOUND."""
    row = await store.system(customer, number)
    if row is None:
        raise no_such_system(customer, number)
    return row


async def list_systems(store: Store, customer: str, query: str, size: int, token: str
                       ) -> tuple[list[SystemRow], str]:
    """One page of the customer's systems by system number, optionally matching `query` (case-insensitive
    substring of system ID, installation number or description)."""
    problem = model.text_problem(query, model.MAX_QUERY)
    if problem:
        raise InvalidArgument("query", problem)
    scope = {"parent": names.customer(customer), "query": query, "order": "system_number"}
    after = _PAGE_TOKENS.read(token, scope)
    async with store.read() as uow:
        rows, more = await uow.systems_page(customer, query, after[0] if after else None, size)
    return rows, _PAGE_TOKENS.issue([rows[-1].system_number], scope) if more else ""


def check_etag(etag: str, row_etag: str, what: str) -> None:
    if etag and etag != row_etag:
        raise EtagMismatch(f"{what} was changed since it was read (etag mismatch); read it again")


async def update_system(store: Store, clock: Clock, customer: str, number: str, values: SystemFields,
                        paths: list[str], etag: str) -> SystemRow:
    validate_fields(values, only=set(paths))
    if "installation_number" in paths:
        # moving a system to another installation needs the right on that installation too
        await auth.current().require(p.SYSTEMS_WRITE, Resource(
            customer=names.customer(customer), system=names.system(customer, number),
            installation=values.installation_number))
    async with store.write() as uow:
        row = await find_system(uow, customer, number, lock=True)
        check_etag(etag, row.etag, system_name(row))
        merged = SystemFields(**{f.name: getattr(values if f.name in paths else row, f.name) for f in fields(values)})
        if {"installation_number", "system_id"} & set(paths):
            await _check_unique(uow, customer, merged, row.id)
        for path in paths:
            setattr(row, path, getattr(values, path))
        row.update_time = clock.now()
        row.etag = model.new_etag()
        await uow.flush_unique(f"a system with installation {merged.installation_number} "
                               f"and system ID {merged.system_id}")
    return row


async def delete_system(store: Store, clock: Clock, customer: str, number: str, etag: str) -> None:
    """Delete a system with its set-ups; refused while a window is open or scheduled or an incident of it
    is not confirmed. Its past windows and confirmed incidents stay on record."""
    async with store.write() as uow:
        row = await find_system(uow, customer, number, lock=True)
        check_etag(etag, row.etag, system_name(row))
        window = await uow.active_window(row, clock.now())
        if window is not None:
            raise FailedPrecondition(
                f"system {system_name(row)} has an open or scheduled connection "
                f"{system_name(row)}/connections/{window.id}; close it first")
        incident = await uow.unconfirmed_incident(row)
        if incident is not None:
            raise FailedPrecondition(
                f"system {system_name(row)} has an incident that is not confirmed: "
                f"customers/{customer}/incidents/{incident.id}")
        await uow.delete_system(row)
