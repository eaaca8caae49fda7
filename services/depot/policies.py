"""How each RPC of LogonDepotService is authorized: its permission, and the resource attributes read from the
request (names parsed, INVALID_ARGUMENT naming the field), from the depot's own database (an entry's owner and
installation) and, for a create, from the connections service (the system exists, its installation).

The policies check the coarse permission (may the caller see this system's logon data at all) before anything
else, so a caller without it gets PERMISSION_DENIED whether or not an entry exists; the use cases then make
the decisive check on the entry itself (its owner, the engineer's incident). RevealLogonData's policy only
authenticates (`handler_decides`): its use case makes both decisions in one round trip to authz, so that it
can log every refused reveal before refusing."""
from __future__ import annotations

from typing import Callable

from remotesupport.depot.v1 import depot_pb2
from services.depot import access, model
from services.depot.deps import Depot
from services.kit import names
from services.kit import permissions as P
from services.kit.auth import MethodPolicy, Resource, no_resource, policy_table

SERVICE = depot_pb2.DESCRIPTOR.services_by_name["LogonDepotService"].full_name


def build_policies(depot: Depot) -> dict[str, MethodPolicy]:
    async def new_entry(request: depot_pb2.CreateLogonDataRequest) -> Resource:
        parts = names.parse("system", request.parent, "parent")
        confirmed = await depot.connections.system(request.parent)  # permission and existence: connections
        return Resource(customer=names.customer(parts["customer"]), system=request.parent,
                        installation=confirmed.installation)

    async def parent_system(request) -> Resource:
        return await access.system_resource(depot, names.parse("system", request.parent, "parent"))

    def entry(field: str, name_of: Callable[[object], str]):
        async def resolve(request) -> Resource:
            parts = names.parse("logon_data", name_of(request), field)
            row = await access.find(depot, parts)
            if row is None:
                return await access.system_resource(depot, parts)
            return access.resource(row)
        return resolve

    def view(field: str, name_of: Callable[[object], str]):
        async def resolve(request) -> Resource:
            parts = names.parse("restricted_view", name_of(request), field)
            incident = model.incident_name(parts["customer"], parts["incident"])
            return await access.system_resource(depot, parts, incident=incident)
        return resolve

    async def customer(request) -> Resource:
        names.parse("customer", request.parent, "parent")
        return Resource(customer=request.parent)

    def customer_in(kind: str, field: str, name_of: Callable[[object], str]):
        async def resolve(request) -> Resource:
            return Resource(customer=names.customer(names.parse(kind, name_of(request), field)["customer"]))
        return resolve

    named_entry = entry("name", lambda r: r.name)
    return policy_table(SERVICE, {
        "CreateLogonData": MethodPolicy(P.LOGON_CREATE, new_entry),
        "GetLogonData": MethodPolicy(P.LOGON_READ, named_entry),
        "ListLogonData": MethodPolicy(P.LOGON_READ, parent_system),
        "UpdateLogonData": MethodPolicy(P.LOGON_READ, entry("logon_data.name", lambda r: r.logon_data.name)),
        "DeleteLogonData": MethodPolicy(P.LOGON_READ, named_entry),
        "RevealLogonData": MethodPolicy(P.SESSION, handler_decides=True),
        "SetRestrictedView": MethodPolicy(P.VIEWS_WRITE, view("restricted_view.name",
                                                              lambda r: r.restricted_view.name)),
        "GetRestrictedView": MethodPolicy(P.VIEWS_READ, view("name", lambda r: r.name)),
        "ListLogEvents": MethodPolicy(P.LOG_READ, customer),
        "VerifyLog": MethodPolicy(P.LOG_READ, customer),
        "WatchEvents": MethodPolicy(P.SESSION, handler_decides=True),  # the feed decides the watch and each event
        "RotateKey": MethodPolicy(P.KEYS_MANAGE, no_resource),
        "GetKeyStatus": MethodPolicy(P.KEYS_MANAGE, no_resource),
        "CreateWebhook": MethodPolicy(P.WEBHOOKS_MANAGE, customer),
        "GetWebhook": MethodPolicy(P.WEBHOOKS_READ, customer_in("webhook", "name", lambda r: r.name)),
        "ListWebhooks": MethodPolicy(P.WEBHOOKS_READ, customer),
        "DeleteWebhook": MethodPolicy(P.WEBHOOKS_MANAGE, customer_in("webhook", "name", lambda r: r.name)),
        "ListWebhookDeliveries": MethodPolicy(P.WEBHOOKS_READ, customer_in("webhook", "parent", lambda r: r.parent)),
        "RedeliverWebhookDelivery": MethodPolicy(P.WEBHOOKS_MANAGE,
                                                 customer_in("webhook_delivery", "name", lambda r: r.name)),
    })
