"""How each RPC of ConnectionsService is authorized: its permission, and the resource attributes read from
the request (names parsed, INVALID_ARGUMENT naming the field) and, through the store, from this service's
database (the system's installation number, an incident's system)."""
from __future__ import annotations

from typing import Awaitable, Callable

from remotesupport.connections.v1 import connections_pb2
from services.connections.model import INSTALLATION_NUMBER
from services.connections.store import Store
from services.kit import names
from services.kit import permissions as p
from services.kit.auth import MethodPolicy, Resource, policy_table
from services.kit.errors import InvalidArgument

SERVICE = connections_pb2.DESCRIPTOR.services_by_name["ConnectionsService"].full_name
Resolver = Callable[[object], Awaitable[Resource]]


def _field(request: object, path: str) -> str:
    value = request
    for part in path.split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


def build_policies(store: Store) -> dict[str, MethodPolicy]:
    async def system_resource(customer: str, number: str, **extra: str) -> Resource:
        return Resource(customer=names.customer(customer), system=names.system(customer, number),
                        installation=await store.installation(customer, number), **extra)

    def anyone(kind: str | None = None, field: str = "") -> Resolver:
        async def resolve(request: object) -> Resource:
            if kind:
                names.parse(kind, _field(request, field), field)
            return Resource()
        return resolve

    def customer_of(field: str) -> Resolver:
        async def resolve(request: object) -> Resource:
            customer = names.parse("customer", _field(request, field), field)["customer"]
            return Resource(customer=names.customer(customer))
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
            number = await store.incident_system(customer, parts["incident"])
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

    return policy_table(SERVICE, {
        "ListConnectionTypes": MethodPolicy(p.TYPES_READ, anyone()),
        "GetConnectionType": MethodPolicy(p.TYPES_READ, anyone("connection_type", "name")),
        "CreateSystem": MethodPolicy(p.SYSTEMS_WRITE, create_system),
        "GetSystem": MethodPolicy(p.SYSTEMS_READ, system_of("system", "name")),
        "ListSystems": MethodPolicy(p.SYSTEMS_LIST, customer_of("parent")),
        "UpdateSystem": MethodPolicy(p.SYSTEMS_WRITE, system_of("system", "system.name")),
        "DeleteSystem": MethodPolicy(p.SYSTEMS_WRITE, system_of("system", "name")),
        "SetUpConnection": MethodPolicy(p.SETUPS_WRITE, system_of("system", "parent")),
        "ListConnectionSetups": MethodPolicy(p.SETUPS_READ, system_of("system", "parent")),
        "DeleteConnectionSetup": MethodPolicy(p.SETUPS_WRITE, system_of("connection_setup", "name")),
        "OpenConnection": MethodPolicy(p.WINDOWS_WRITE, system_of("system", "parent")),
        "CloseConnection": MethodPolicy(p.WINDOWS_WRITE, system_of("connection", "name")),
        "ExtendConnection": MethodPolicy(p.WINDOWS_WRITE, system_of("connection", "name")),
        "GetConnection": MethodPolicy(p.WINDOWS_READ, system_of("connection", "name")),
        "ListConnections": MethodPolicy(p.WINDOWS_READ, system_of("system", "parent")),
        "GetServiceConnector": MethodPolicy(p.CONNECTOR_READ, system_of("connection", "name")),
        "VerifyServiceConnector": MethodPolicy(p.CONNECTOR_VERIFY, anyone()),
        "ListSessions": MethodPolicy(p.SESSIONS_READ, system_of("system", "parent")),
        "GetSession": MethodPolicy(p.SESSIONS_READ, system_of("session", "name")),
        "TerminateSession": MethodPolicy(p.SESSIONS_TERMINATE, system_of("session", "name")),
        "CreateIncident": MethodPolicy(p.INCIDENTS_CREATE, system_in_body("incident.system", required=True)),
        "GetIncident": MethodPolicy(p.INCIDENTS_READ, incident_of("name")),
        "ListIncidents": MethodPolicy(p.INCIDENTS_READ, system_in_body("system", required=False)),
        "UpdateIncidentStatus": MethodPolicy(p.INCIDENTS_UPDATE_STATUS, incident_of("name")),
        "AssignProcessor": MethodPolicy(p.INCIDENTS_ASSIGN, incident_of("name")),
        "WatchEvents": MethodPolicy(p.SESSION, handler_decides=True),  # the feed decides the watch and each event
    })
