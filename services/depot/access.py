"""Who is calling, which entry a name means, and what an engineer may see of it (restricted views)."""
from __future__ import annotations

from dataclasses import dataclass

from services.depot import audit, model
from services.depot.deps import Depot
from services.depot.store import EngineTx, Entry
from services.kit import auth, names
from services.kit.auth import Decision, Resource
from services.kit.clock import as_utc
from services.kit.errors import NotFound, PermissionDenied
from services.kit.principals import SUPPORT_ENGINEER


@dataclass(frozen=True)
class Caller:
    """The caller and, for an engineer, the incidents whose assignments let it reach the system."""

    user: str
    kind: str
    incidents: tuple[str, ...] = ()

    @property
    def is_engineer(self) -> bool:
        return self.kind == SUPPORT_ENGINEER


def caller() -> Caller:
    ctx = auth.current()
    return Caller(ctx.subject.user, ctx.subject.kind, ctx.decision.incidents)


def system_name(row: Entry) -> str:
    return names.system(row.customer, row.system_number)


def name_of(row: Entry) -> str:
    return model.entry_name(row.customer, row.system_number, row.entry_id)


async def known_installation(depot: Depot, customer: str, system: str) -> str:
    """The installation number of a system the depot has stored entries for ("" if unknown)."""
    return await depot.store.known_installation(customer, system)


async def system_resource(depot: Depot, parts: dict[str, str], **extra: str) -> Resource:
    """A system (or something in it that does not exist) as authz sees it."""
    installation = await known_installation(depot, parts["customer"], parts["system"])
    return Resource(customer=names.customer(parts["customer"]), system=names.parent_system(parts),
                    installation=installation, **extra)


def resource(row: Entry, incident: str = "") -> Resource:
    """The entry as authz sees it: its customer, installation, system, owner and the incident of the access."""
    return Resource(customer=names.customer(row.customer), installation=row.installation, system=system_name(row),
                    owner=row.creator, incident=incident)


async def check_all(permissions: list[str], target: Resource) -> None:
    """Require every permission on `target` (one round trip to authz)."""
    ctx = auth.current()
    decisions: list[Decision] = await ctx.authorizer.check_bulk(ctx.token, [(p, target) for p in permissions])
    for decision in decisions:
        decision.raise_unless_allowed()


async def find(depot: Depot, parts: dict[str, str]) -> Entry | None:
    """The entry a parsed name means (its customer and system must match too), expired or not."""
    row = await depot.store.find_entry(parts["logon_data"])
    if row is None or (row.customer, row.system_number) != (parts["customer"], parts["system"]):
        return None
    return row


def not_found(parts: dict[str, str]) -> NotFound:
    return NotFound(f"logon data {model.entry_name(parts['customer'], parts['system'], parts['logon_data'])} "
                    "does not exist")


async def load_readable(depot: Depot, parts: dict[str, str]) -> Entry:
    """The entry, or NOT_FOUND if it does not exist or has expired (the log, alone, says it expired)."""
    return await readable(depot, parts, await find(depot, parts))


async def readable(depot: Depot, parts: dict[str, str], row: Entry | None) -> Entry:
    """`row` if it is there and unexpired, else NOT_FOUND (logging EXPIRE the first time it is met expired)."""
    if row is None:
        raise not_found(parts)
    if model.is_expired(as_utc(row.expire_time), depot.clock.now()):
        if not row.expiry_logged:
            await note_expired(depot, row)
        raise not_found(parts)
    return row


async def note_expired(depot: Depot, row: Entry) -> None:
    """Log the entry's EXPIRE event, once, the first time the depot meets it expired."""

    async def work(tx: EngineTx) -> None:
        if await tx.mark_expiry_logged(row.pk):
            await audit.append(tx, depot.sealer, row.customer, expired_event(row), depot.clock.now())

    await depot.store.write(work)


def expired_event(row: Entry) -> audit.Event:
    return audit.Event(audit.EXPIRE, audit.DEPOT_ACTOR, system=system_name(row), logon_data=name_of(row),
                       incident=row.restricted_incident,
                       detail=f"expired at {as_utc(row.expire_time).isoformat()}; unreadable from then on")


async def engineer_incident(depot: Depot, who: Caller, row: Entry) -> str | None:
    """For an engineer: the incident through which it sees the entry, None if the entry is hidden from it."""
    async with depot.store.read() as tx:
        views = await tx.views_for(row.customer, row.system_number, who.incidents)
    return model.engineer_access(row.kind, row.entry_id, row.restricted_incident, who.incidents, views)


def hidden(row: Entry) -> PermissionDenied:
    return PermissionDenied(f"logon data {name_of(row)} is not visible to you: the customer left it out of the "
                            "restricted view of your incident, or keeps it for another incident")


async def access_incident(depot: Depot, who: Caller, row: Entry) -> str:
    """The incident an engineer's access to the entry is for ("" for customer users); PERMISSION_DENIED if the
    entry is outside what the engineer's incidents may see."""
    if not who.is_engineer:
        return ""
    incident = await engineer_incident(depot, who, row)
    if incident is None:
        raise hidden(row)
    return incident
