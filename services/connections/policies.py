"""How each RPC of ConnectionsService is authorized: its permission, and the resource attributes read from
the request (names parsed, INVALID_ARGUMENT naming the field) and from this service's database (the
system's installation number, an incident's system)."""
from __future__ import annotations

from typing import Awaitable, Callable

from sqlalchemy import select

from services.connections import systems
from services.connections.model import INSTALLATION_NUMBER
from services.connections.tables import IncidentRow, SystemRow
from services.kit import names
from services.kit import permissions as p
from services.kit.auth import MethodPolicy, Resource
from services.kit.db import Database
from services.kit.errors import InvalidArgument
from services.kit.localsqlite import FALLBACK, LocalSqlite, LocalTable

PREFIX = "/remotesupport.connections.v1.ConnectionsService/"
Resolver = Callable[[object], Awaitable[Resource]]


class Directory:
    """Reads what authz decisions need from this service's own tables."""

    def __init__(self, db: Database) -> None:
        self.db = db
        local = LocalSqlite.for_database(db)  # a SQLite file: read on the calling thread (services.kit.localsqlite)
        self.systems = LocalTable(local, SystemRow.__table__, ("customer", "system_number")) if local else None

    def close(self) -> None:
        if self.systems is not None:
            self.systems.local.close()

    async def installation(self, customer: str, number: str) -> str:
        """The system's installation number ("" when there is no such system)."""
        if self.systems is not None:
            row = self.systems.get(customer=customer, system_number=number)
            if row is not FALLBACK:
                return row.installation_number if row is not None else ""
        async with self.db.unit_of_work() as session:
            value = await session.scalar(select(SystemRow.installation_number).where(
                SystemRow.customer == customer, SystemRow.system_number == number))
        return value or ""

    async def system(self, customer: str, number: str) -> SystemRow:
        """The system's row (its columns as attributes), or NOT_FOUND."""
        if self.systems is not None:
            row = self.systems.get(customer=customer, system_number=number)
            if row is not FALLBACK:
                if row is None:
                    raise systems.no_such_system(customer, number)
                return row  # type: ignore[return-value]
        return await systems.get_system(self.db, customer, number)

    async def incident_system(self, customer: str, incident_id: str) -> str:
        """The number of the incident's system ("" when there is no such incident)."""
        async with self.db.unit_of_work() as session:
            value = await session.scalar(select(IncidentRow.system_number).where(
                IncidentRow.customer == customer, IncidentRow.id == incident_id))
        return value or ""


def _field(request: object, path: str) -> str:
    value = request
    for part in path.split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


def build_policies(directory: Directory) -> dict[str, MethodPolicy]:
    async def system_resource(customer: str, number: str, **extra: str) -> Resource:
        return Resource(customer=names.customer(customer), system=names.system(customer, number),
                        installation=await directory.installation(customer, number), **extra)

    def anyone(kind: str | None = None, field: str = "") -> Resolver:
        async def resolve(request: object) -> Resource:
            if kind:
                names.parse(kind, _field(request, field), field)
            return Resource()
        return resolve

    def customer_of(field: str) -> Resolver:
        async def resolve(request: object) -> Resource:
            return Resource(customer=names.customer(names.parse("customer", _field(request, field), field)["customer"]))
        return resolve

    def system_of(kind: str, field: str) -> Resolver:
        async def resolve(request: object) -> Resource:
            parts = names.parse(kind, _field(request, field), field)
            return await system_resource(parts["customer"], parts["system"])
        return resolve

    def incident_of(field: str) -> Resolver:
        async def resolve(request: object) -> Resource:
            parts = names.parse("incident", _field(request, field), field)
            customer, incident = parts["customer"], _field(request, field)
            number = await directory.incident_system(customer, parts["incident"])
            if not number:
                return Resource(customer=names.customer(customer), incident=incident)
            return await system_resource(customer, number, incident=incident)
        return resolve

    async def create_system(request) -> Resource:
        customer = names.parse("customer", request.parent, "parent")["customer"]
        installation = request.system.installation_number
        return Resource(customer=names.customer(customer),
                        installation=installation if INSTALLATION_NUMBER.fullmatch(installation) else "")

    def system_in_body(field: str, required: bool) -> Resolver:
        """A customer from `parent` and, optionally, a system of the same customer from `field`."""
        async def resolve(request) -> Resource:
            customer = names.parse("customer", request.parent, "parent")["customer"]
            value = _field(request, field)
            if not value and not required:
                return Resource(customer=names.customer(customer))
            parts = names.parse("system", value, field)
            if parts["customer"] != customer:
                raise InvalidArgument(field, f"must be a system of {names.customer(customer)}")
            return await system_resource(customer, parts["system"])
        return resolve

    table: dict[str, tuple[str, Resolver]] = {
        "ListConnectionTypes": (p.TYPES_READ, anyone()),
        "GetConnectionType": (p.TYPES_READ, anyone("connection_type", "name")),
        "CreateSystem": (p.SYSTEMS_WRITE, create_system),
        "GetSystem": (p.SYSTEMS_READ, system_of("system", "name")),
        "ListSystems": (p.SYSTEMS_LIST, customer_of("parent")),
        "UpdateSystem": (p.SYSTEMS_WRITE, system_of("system", "system.name")),
        "DeleteSystem": (p.SYSTEMS_WRITE, system_of("system", "name")),
        "SetUpConnection": (p.SETUPS_WRITE, system_of("system", "parent")),
        "ListConnectionSetups": (p.SETUPS_READ, system_of("system", "parent")),
        "DeleteConnectionSetup": (p.SETUPS_WRITE, system_of("connection_setup", "name")),
        "OpenConnection": (p.WINDOWS_WRITE, system_of("system", "parent")),
        "CloseConnection": (p.WINDOWS_WRITE, system_of("connection", "name")),
        "GetConnection": (p.WINDOWS_READ, system_of("connection", "name")),
        "ListConnections": (p.WINDOWS_READ, system_of("system", "parent")),
        "GetServiceConnector": (p.CONNECTOR_READ, system_of("connection", "name")),
        "VerifyServiceConnector": (p.CONNECTOR_VERIFY, anyone()),
        "CreateIncident": (p.INCIDENTS_CREATE, system_in_body("incident.system", required=True)),
        "GetIncident": (p.INCIDENTS_READ, incident_of("name")),
        "ListIncidents": (p.INCIDENTS_READ, system_in_body("system", required=False)),
        "UpdateIncidentStatus": (p.INCIDENTS_UPDATE_STATUS, incident_of("name")),
        "AssignProcessor": (p.INCIDENTS_ASSIGN, incident_of("name")),
    }
    return {PREFIX + method: MethodPolicy(permission, resolve) for method, (permission, resolve) in table.items()}
