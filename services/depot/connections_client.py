"""What the depot asks the connections service, always with the caller's token: does this system exist (and
its installation number), is this an incident of that system, is this a connection type of the catalog."""
from __future__ import annotations

import contextvars
from dataclasses import dataclass

import grpc

from remotesupport.connections.v1 import connections_pb2, connections_pb2_grpc
from services.kit import clients
from services.kit.errors import DomainError, FailedPrecondition, InvalidArgument

# Systems already confirmed during this call (the create policy's resolver asks, the handler reuses the answer).
_confirmed: contextvars.ContextVar[dict[str, "SystemInfo"] | None] = contextvars.ContextVar(
    "depot_confirmed_systems", default=None)


@dataclass(frozen=True)
class SystemInfo:
    name: str
    installation: str


class Connections:
    def __init__(self, channel: grpc.aio.Channel, deadline_s: float) -> None:
        self._stub = connections_pb2_grpc.ConnectionsServiceStub(channel)
        self._deadline_s = deadline_s

    async def system(self, name: str) -> SystemInfo:
        """The system as the connections service knows it (its errors, e.g. NOT_FOUND, come back as they are)."""
        memo = _confirmed.get()
        if memo is None:
            memo = {}
            _confirmed.set(memo)
        if name not in memo:
            response = await clients.call(self._stub.GetSystem, connections_pb2.GetSystemRequest(name=name),
                                          service="connections", default_timeout=self._deadline_s)
            memo[name] = SystemInfo(response.system.name, response.system.installation_number)
        return memo[name]

    async def check_incident(self, incident: str, system: str, field: str | None) -> None:
        """Raise unless `incident` exists and is an incident of `system`. With `field`, a missing incident is a
        bad value of that field (INVALID_ARGUMENT); without, it is the resource acted on (NOT_FOUND)."""
        try:
            response = await clients.call(self._stub.GetIncident, connections_pb2.GetIncidentRequest(name=incident),
                                          service="connections", default_timeout=self._deadline_s)
        except DomainError as err:
            if field and err.code == grpc.StatusCode.NOT_FOUND:
                raise InvalidArgument(field, "names no incident") from None
            raise
        if response.incident.system != system:
            if field:
                raise InvalidArgument(field, f"is an incident of another system ({response.incident.system})")
            raise FailedPrecondition(f"{incident} is an incident of {response.incident.system}, not of {system}")

    async def connection_type_exists(self, name: str) -> bool:
        """Whether `name` ("connectionTypes/{code}", well formed) is a connection type of the catalog."""
        try:
            await clients.call(self._stub.GetConnectionType, connections_pb2.GetConnectionTypeRequest(name=name),
                               service="connections", default_timeout=self._deadline_s)
        except DomainError as err:
            if err.code == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True
