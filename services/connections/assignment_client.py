"""The client of authz's support assignments (kept for incidents in process at the vendor), which this
service writes as its own service account. Keyed by incident, so setting or deleting again is harmless."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import grpc

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from services.kit import clients
from services.kit.errors import DomainError

# Answers that mean authz looked at the request and changed nothing.
_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
}
# Refusals that are about the assignment's content (the engineer), not about this service's own access.
CONTENT_REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}


@dataclass(frozen=True)
class Assignment:
    """Engineer `engineer` ("users/{id}") may reach `system` for `incident` (resource names)."""

    incident: str
    engineer: str
    system: str


class AssignmentRefused(Exception):
    """authz answered and refused: nothing was changed there."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AssignmentUnavailable(Exception):
    """authz did not answer: the change may or may not have been made."""


class AssignmentPort(Protocol):
    async def set(self, assignment: Assignment) -> None: ...

    async def delete(self, incident: str) -> None: ...


class AuthzAssignments:
    """SetSupportAssignment / DeleteSupportAssignment on the authz service, with this service's token."""

    def __init__(self, channel: grpc.aio.Channel, service_token: Callable[[], str], deadline_s: float) -> None:
        self._stub = authz_pb2_grpc.AuthzServiceStub(channel)
        self._service_token = service_token
        self._deadline_s = deadline_s

    async def set(self, assignment: Assignment) -> None:
        await self._call(self._stub.SetSupportAssignment, authz_pb2.SetSupportAssignmentRequest(
            assignment=authz_pb2.SupportAssignment(incident=assignment.incident, engineer=assignment.engineer,
                                                   system=assignment.system)))

    async def delete(self, incident: str) -> None:
        await self._call(self._stub.DeleteSupportAssignment,
                         authz_pb2.DeleteSupportAssignmentRequest(incident=incident))

    async def _call(self, method, request) -> None:
        metadata = (("authorization", f"Bearer {self._service_token()}"),)
        try:
            await clients.call(method, request, service="authz", default_timeout=self._deadline_s,
                               metadata=metadata)
        except DomainError as error:
            if error.code in _REFUSALS:
                raise AssignmentRefused(error.code, error.message) from None
            raise AssignmentUnavailable(f"authz did not answer ({error.code.name})") from None
