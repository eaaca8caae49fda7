"""How each RPC of RemoteSupportService is authorized at the gateway (its permission, and the resource read from
the request), and the pass-through methods, which the service that owns them authorizes."""
from __future__ import annotations

import grpc

from gateway.backends import Backends
from gateway.passthrough import Passthrough
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from services.kit import names
from services.kit import permissions as P
from services.kit.auth import MethodPolicy, Resource, policy_table
from services.kit.errors import DomainError

SERVICE = gpb.DESCRIPTOR.services_by_name["RemoteSupportService"].full_name
# Answers to the installation lookup that mean "decide without it" (authz then decides on the customer).
_NO_INSTALLATION = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}


def build_policies(b: Backends, passthrough: Passthrough) -> dict[str, MethodPolicy]:
    """The composite flows' policies, and the pass-through's (each forwarded method is authorized by the
    service that owns it)."""

    async def installation(system: str) -> str:
        """The system's installation number, so that installation-scoped grants can match (read as the caller,
        whose token the authentication interceptor has set)."""
        try:
            response = await b.call("connections", b.connections.GetSystem, cpb.GetSystemRequest(name=system))
        except DomainError as error:
            if error.code in _NO_INSTALLATION:
                return ""
            raise
        return response.system.installation_number

    async def system_resource(system: str, field: str, *, with_installation: bool) -> Resource:
        parts = names.parse("system", system, field)
        customer = names.customer(parts["customer"])
        if not with_installation:
            return Resource(customer=customer, system=system)
        return Resource(customer=customer, system=system, installation=await installation(system))

    async def prepare(req: gpb.PrepareRemoteAccessRequest) -> Resource:
        return await system_resource(req.system, "system", with_installation=True)

    async def end(req: gpb.EndRemoteAccessRequest) -> Resource:
        parts = names.parse("connection", req.connection, "connection")
        return await system_resource(names.parent_system(parts), "connection", with_installation=True)

    async def overview(req: gpb.GetSystemOverviewRequest) -> Resource:
        return await system_resource(req.system, "system", with_installation=False)

    async def evidence(req: gpb.ExportIncidentEvidenceRequest) -> Resource:
        """The incident's customer: evidence is for whom may read the customer's log (the depot's rule)."""
        parts = names.parse("incident", req.incident, "incident")
        return Resource(customer=names.customer(parts["customer"]), incident=req.incident)

    async def anyone(req) -> Resource:
        return Resource()

    own = policy_table(SERVICE, {
        "PrepareRemoteAccess": MethodPolicy(P.PREPARE_ACCESS, prepare),
        "EndRemoteAccess": MethodPolicy(P.END_ACCESS, end),
        "GetSystemOverview": MethodPolicy(P.SYSTEM_OVERVIEW, overview),
        "WatchEvents": MethodPolicy(P.SESSION, handler_decides=True),  # gateway.events.watch, then each source's
        "ExportIncidentEvidence": MethodPolicy(P.EVIDENCE_EXPORT, evidence),
        "GetEvidenceKey": MethodPolicy(P.EVIDENCE_KEY_READ, anyone),  # a public key, but every call is decided
    })
    return {**passthrough.policies(), **own}
