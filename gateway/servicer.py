"""RemoteSupportService: the composite flows, and how each of them is authorized at the gateway."""
from __future__ import annotations

import grpc

from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
from gateway.backends import Backends
from gateway.end_access import end_remote_access
from gateway.overview import system_overview
from gateway.prepare import prepare_remote_access
from services.kit import auth, names
from services.kit import permissions as P
from services.kit.auth import MethodPolicy, Resource
from services.kit.errors import DomainError

SERVICE = gpb.DESCRIPTOR.services_by_name["RemoteSupportService"].full_name
# Answers to the installation lookup that mean "decide without it" (authz then decides on the customer).
_NO_INSTALLATION = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}


class RemoteSupportServicer(gateway_pb2_grpc.RemoteSupportServiceServicer):
    def __init__(self, backends: Backends) -> None:
        self.b = backends

    async def PrepareRemoteAccess(self, request, context):
        return await prepare_remote_access(self.b, request, auth.current().subject.user)

    async def EndRemoteAccess(self, request, context):
        return await end_remote_access(self.b, request)

    async def GetSystemOverview(self, request, context):
        return await system_overview(self.b, request)

    # --- authorization policies -------------------------------------------------------------------------
    async def _system_resource(self, system: str, field: str, *, installation: bool) -> Resource:
        parts = names.parse("system", system, field)
        resource = Resource(customer=names.customer(parts["customer"]), system=system)
        if not installation:
            return resource
        return Resource(customer=resource.customer, system=system, installation=await self._installation(system))

    async def _installation(self, system: str) -> str:
        """The system's installation number, so that installation-scoped grants can match (read as the caller,
        whose token the authentication interceptor has set)."""
        try:
            response = await self.b.call("connections", self.b.connections.GetSystem,
                                         cpb.GetSystemRequest(name=system))
        except DomainError as error:
            if error.code in _NO_INSTALLATION:
                return ""
            raise
        return response.system.installation_number

    def policies(self) -> dict[str, MethodPolicy]:
        async def prepare(req: gpb.PrepareRemoteAccessRequest) -> Resource:
            return await self._system_resource(req.system, "system", installation=True)

        async def end(req: gpb.EndRemoteAccessRequest) -> Resource:
            parts = names.parse("connection", req.connection, "connection")
            return await self._system_resource(names.parent_system(parts), "connection", installation=True)

        async def overview(req: gpb.GetSystemOverviewRequest) -> Resource:
            return await self._system_resource(req.system, "system", installation=False)

        return {
            f"/{SERVICE}/PrepareRemoteAccess": MethodPolicy(P.PREPARE_ACCESS, prepare),
            f"/{SERVICE}/EndRemoteAccess": MethodPolicy(P.END_ACCESS, end),
            f"/{SERVICE}/GetSystemOverview": MethodPolicy(P.SYSTEM_OVERVIEW, overview),
        }
