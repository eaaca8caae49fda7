"""The gateway's domain rules: what a composite call's request must hold before anything is done, the window
states the flows look for, and the errors only the gateway raises. No I/O."""
from __future__ import annotations

from dataclasses import dataclass

import grpc

from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from services.kit import names
from services.kit.errors import DomainError, InvalidArgument
from services.kit.validate import Violations

ACTIVE = (cpb.CONNECTION_STATE_OPEN, cpb.CONNECTION_STATE_SCHEDULED)  # a window that may still let someone in
ENDED = (cpb.CONNECTION_STATE_CLOSED, cpb.CONNECTION_STATE_EXPIRED)
DEFAULT_LOG_EVENTS = 20
MAX_LOG_EVENTS = 100


@dataclass(frozen=True)
class Target:
    """What PrepareRemoteAccess works on."""

    system: str          # customers/{c}/systems/{s}
    connection_type: str  # connectionTypes/{code}
    code: str

    @property
    def setup_name(self) -> str:
        return f"{self.system}/connectionSetups/{self.code}"


def prepare_target(request: gpb.PrepareRemoteAccessRequest) -> Target:
    """What the gateway can tell before doing anything (the services validate the rest)."""
    v = Violations()
    system = _parsed(v, "system", request.system, "system")
    type_parts = _parsed(v, "connection_type", request.connection_type, "connection_type")
    if request.incident:
        _parsed(v, "incident", request.incident, "incident")
    if not request.HasField("end_time"):
        v.add("end_time", "is required")
    if request.HasField("logon_data"):
        if not request.secret:
            v.add("secret", "is required with logon_data")
        if request.logon_data.connection:
            v.add("logon_data.connection", "is set to the window opened by this call; leave it empty")
    elif request.secret:
        v.add("logon_data", "is required with secret")
    v.raise_if_any()
    assert system is not None and type_parts is not None
    return Target(request.system, request.connection_type, type_parts["code"])


def _parsed(v: Violations, kind: str, value: str, field: str) -> dict[str, str] | None:
    try:
        return names.parse(kind, value, field)
    except InvalidArgument as err:
        for f, problem in err.violations:
            v.add(f, problem)
        return None


def log_event_limit(value: int) -> int:
    """How many of the latest log events an overview shows."""
    if value < 0 or value > MAX_LOG_EVENTS:
        raise InvalidArgument("log_event_limit", f"must be between 0 and {MAX_LOG_EVENTS} (0 means "
                                                 f"{DEFAULT_LOG_EVENTS})")
    return value or DEFAULT_LOG_EVENTS


class TooLate(DomainError):
    """The flow finished, but its answer could not reach the caller before the caller's deadline: it is undone."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Abandoned(DomainError):
    """The caller went away (cancelled, deadline passed) before the flow finished: it is undone."""

    code = grpc.StatusCode.CANCELLED
    reason = "CANCELLED"
