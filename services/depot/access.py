"""Who is calling, which entry a name means, and what an engineer may see of it (restricted views)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.depot import audit, model
from services.depot.context import Depot
from services.depot.tables import EntryRow, KnownSystemRow, ViewMemberRow, ViewRow
from services.kit import auth, names
from services.kit.auth import Decision, Resource
from services.kit.clock import as_utc
from services.kit.errors import NotFound, PermissionDenied

ENGINEER = "SUPPORT_ENGINEER"


@dataclass(frozen=True)
class Caller:
    """The caller and, for an engineer, the incidents whose assignments let it reach the system."""

    user: str
    kind: str
    incidents: tuple[str, ...] = ()

    @property
    def is_engineer(self) -> bool:
        return self.kind == ENGINEER


def caller() -> Caller:
    ctx = auth.current()
    return Caller(ctx.subject.user, ctx.subject.kind, ctx.decision.incidents)


def system_name(row: EntryRow) -> str:
    return names.system(row.customer, row.system_number)


def name_of(row: EntryRow) -> str:
    return model.entry_name(row.customer, row.system_number, row.entry_id)


async def known_installation(depot: Depot, customer: str, system: str) -> str:
    """The installation number of a system the depot has stored entries for ("" if unknown)."""
    async with depot.store.read() as session:
        known = await session.get(KnownSystemRow, (customer, system))
    return known.installation if known else ""


async def system_resource(depot: Depot, parts: dict[str, str], **extra: str) -> Resource:
    """A system (or something in it that does not exist) as authz sees it."""
    installation = await known_installation(depot, parts["customer"], parts["system"])
    return Resource(customer=names.customer(parts["customer"]), system=names.parent_system(parts),
                    installation=installation, **extra)


def resource(row: EntryRow, incident: str = "") -> Resource:
    """The entry as authz sees it: its customer, installation, system, owner and the incident of the access."""
    return Resource(customer=names.customer(row.customer), installation=row.installation, system=system_name(row),
                    owner=row.creator, incident=incident)


async def check_all(permissions: list[str], target: Resource) -> None:
    """Require every permission on `target` (one round trip to authz)."""
    ctx = auth.current()
    decisions: list[Decision] = await ctx.authorizer.check_bulk(ctx.token, [(p, target) for p in permissions])
    for decision in decisions:
        decision.raise_unless_allowed()


async def find(session: AsyncSession, parts: dict[str, str]) -> EntryRow | None:
    """The entry a parsed name means (its customer and system must match too), expired or not."""
    row = (await session.execute(select(EntryRow).where(EntryRow.entry_id == parts["logon_data"]))).scalar()
    if row is None or (row.customer, row.system_number) != (parts["customer"], parts["system"]):
        return None
    return row


def not_found(parts: dict[str, str]) -> NotFound:
    return NotFound(f"logon data {model.entry_name(parts['customer'], parts['system'], parts['logon_data'])} "
                    "does not exist")


async def load_readable(depot: Depot, parts: dict[str, str]) -> EntryRow:
    """The entry, or NOT_FOUND if it does not exist or has expired (the log, alone, says it expired)."""
    async with depot.store.read() as session:
        row = await find(session, parts)
    return await readable(depot, parts, row)


async def readable(depot: Depot, parts: dict[str, str], row: EntryRow | None) -> EntryRow:
    """`row` if it is there and unexpired, else NOT_FOUND (logging EXPIRE the first time it is met expired)."""
    if row is None:
        raise not_found(parts)
    if model.is_expired(as_utc(row.expire_time), depot.clock.now()):
        if not row.expiry_logged:
            await note_expired(depot, row)
        raise not_found(parts)
    return row


async def note_expired(depot: Depot, row: EntryRow) -> None:
    """Log the entry's EXPIRE event, once, the first time the depot meets it expired."""

    async def work(session: AsyncSession) -> None:
        marked = await session.execute(update(EntryRow).where(EntryRow.pk == row.pk, EntryRow.expiry_logged.is_(False))
                                       .values(expiry_logged=True))
        if marked.rowcount == 1:
            await audit.append(session, row.customer, expired_event(row), depot.clock.now())

    await depot.store.write(work)


def expired_event(row: EntryRow) -> audit.Event:
    return audit.Event(audit.EXPIRE, audit.DEPOT_ACTOR, system=system_name(row), logon_data=name_of(row),
                       incident=row.restricted_incident,
                       detail=f"expired at {as_utc(row.expire_time).isoformat()}; unreadable from then on")


async def views_for(session: AsyncSession, customer: str, system: str, incidents: tuple[str, ...]) \
        -> dict[str, frozenset[str]]:
    """The restricted views of `incidents` on the system: incident -> entry ids it shows (absent: no view)."""
    if not incidents:
        return {}
    rows = (await session.execute(
        select(ViewRow.pk, ViewRow.incident)
        .where(ViewRow.customer == customer, ViewRow.system_number == system, ViewRow.incident.in_(incidents)))).all()
    views: dict[str, set[str]] = {incident: set() for _, incident in rows}
    by_pk = {pk: incident for pk, incident in rows}
    if by_pk:
        members = await session.execute(
            select(ViewMemberRow.view_pk, ViewMemberRow.entry_id).where(ViewMemberRow.view_pk.in_(by_pk)))
        for view_pk, entry_id in members:
            views[by_pk[view_pk]].add(entry_id)
    return {incident: frozenset(ids) for incident, ids in views.items()}


async def engineer_incident(depot: Depot, who: Caller, row: EntryRow) -> str | None:
    """For an engineer: the incident through which it sees the entry, None if the entry is hidden from it."""
    async with depot.store.read() as session:
        views = await views_for(session, row.customer, row.system_number, who.incidents)
    return model.engineer_access(row.kind, row.entry_id, row.restricted_incident, who.incidents, views)


def hidden(row: EntryRow) -> PermissionDenied:
    return PermissionDenied(f"logon data {name_of(row)} is not visible to you: the customer left it out of the "
                            "restricted view of your incident, or keeps it for another incident")


async def access_incident(depot: Depot, who: Caller, row: EntryRow) -> str:
    """The incident an engineer's access to the entry is for ("" for customer users); PERMISSION_DENIED if the
    entry is outside what the engineer's incidents may see."""
    if not who.is_engineer:
        return ""
    incident = await engineer_incident(depot, who, row)
    if incident is None:
        raise hidden(row)
    return incident
