"""The relay's domain: its refusals (each with its ErrorInfo reason), why a session ends, and the limits of
what it accepts. No I/O."""
from __future__ import annotations

import enum
import re

import grpc

from services.kit.errors import DomainError, FailedPrecondition, PermissionDenied

INSTANCE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
CHUNK_BYTES = 256 * 1024  # the largest data message either side sends


class WindowNotOpen(FailedPrecondition):
    reason = "WINDOW_NOT_OPEN"


class ConnectorNotAttached(FailedPrecondition):
    reason = "CONNECTOR_NOT_ATTACHED"


class ConnectorAlreadyAttached(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "CONNECTOR_ALREADY_ATTACHED"


class ConnectorFileInvalid(PermissionDenied):
    reason = "CONNECTOR_FILE_INVALID"


class ConnectorFileExpired(FailedPrecondition):
    reason = "CONNECTOR_FILE_EXPIRED"


class ConnectorFileNotYetValid(FailedPrecondition):
    reason = "CONNECTOR_FILE_NOT_YET_VALID"


class NoSupportAssignment(PermissionDenied):
    reason = "NO_SUPPORT_ASSIGNMENT"


class TargetUnreachable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "TARGET_UNREACHABLE"


class SessionEnded(DomainError):
    """The relay cut a live session; the message says why."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "SESSION_ENDED"


class EndReason(str, enum.Enum):
    """Why an admitted session ended (SessionEndReason of connections.proto, without its prefix)."""

    CLIENT_CLOSED = "CLIENT_CLOSED"
    TARGET_CLOSED = "TARGET_CLOSED"
    WINDOW_ENDED = "WINDOW_ENDED"
    WINDOW_CLOSED = "WINDOW_CLOSED"
    NOT_AUTHORIZED = "NOT_AUTHORIZED"
    TERMINATED = "TERMINATED"
    CONNECTOR_DETACHED = "CONNECTOR_DETACHED"
    RELAY_LOST = "RELAY_LOST"
    TARGET_UNREACHABLE = "TARGET_UNREACHABLE"
    AUTHZ_UNAVAILABLE = "AUTHZ_UNAVAILABLE"


# How a session ends in the database: state and, for a cut, what the engineer is told.
ACTIVE, ENDED, REFUSED = "ACTIVE", "ENDED", "REFUSED"
NORMAL_ENDS = frozenset({EndReason.CLIENT_CLOSED, EndReason.TARGET_CLOSED})
