"""Domain errors, declared once with their gRPC code and reason, and their mapping to google.rpc.Status.

The reasons are said once, in common/v1/errors.proto's ErrorReason: REASONS is derived from it, every
DomainError class (here or in any service) must declare one of them (checked when the class is defined), and
an error rebuilt from another service's answer keeps its reason only if it is one of them."""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from remotesupport.common.v1 import errors_pb2

DOMAIN = "remotesupport"
_PREFIX = "ERROR_REASON_"
# Every value of google.rpc.ErrorInfo.reason the suite sends.
REASONS: frozenset[str] = frozenset(v.name.removeprefix(_PREFIX) for v in errors_pb2.ErrorReason.DESCRIPTOR.values
                                    if v.number != errors_pb2.ERROR_REASON_UNSPECIFIED)
# The reason of an answer that carried none (a gRPC-level failure on the way: no connection, deadline, ...).
REASON_BY_CODE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    grpc.StatusCode.PERMISSION_DENIED: "PERMISSION_DENIED",
    grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
    grpc.StatusCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    grpc.StatusCode.ABORTED: "ETAG_MISMATCH",
    grpc.StatusCode.FAILED_PRECONDITION: "FAILED_PRECONDITION",
    grpc.StatusCode.UNAVAILABLE: "DEPENDENCY_UNAVAILABLE",
    grpc.StatusCode.DATA_LOSS: "DATA_LOSS",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
    grpc.StatusCode.CANCELLED: "CANCELLED",
}
DEFAULT_REASON = "INTERNAL"  # any other code (UNKNOWN, INTERNAL, UNIMPLEMENTED, ...)


def reason_for(code: grpc.StatusCode, sent: str = "") -> str:
    """The reason an error from another service carries on: the one it sent if ours, else its code's."""
    return sent if sent in REASONS else REASON_BY_CODE.get(code, DEFAULT_REASON)


class DomainError(Exception):
    """Base of every error a caller may see. `message` must never contain a secret."""

    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.reason not in REASONS:
            raise TypeError(f"{cls.__name__}.reason {cls.reason!r} is not an ErrorReason of errors.proto")

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})

    def details(self) -> list:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        return [info]


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[tuple[str, str]] | str, message: str | None = None) -> None:
        if isinstance(violations, str):
            violations = [(violations, message or "is invalid")]
        self.violations = violations
        text = message if message and len(violations) > 1 else "; ".join(f"{f}: {d}" for f, d in violations)
        super().__init__(text, metadata={"field": violations[0][0]} if violations else None)

    def details(self) -> list:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in self.violations
            ]
        )
        return super().details() + [bad]


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"

    def __init__(self, message: str, *, required: list[str] | None = None) -> None:
        meta = {"required_authorizations": ",".join(required)} if required else None
        super().__init__(message, metadata=meta)


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class EtagMismatch(DomainError):
    code = grpc.StatusCode.ABORTED
    reason = "ETAG_MISMATCH"


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Conflict(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CONFLICT"


class AuthzUnavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "AUTHZ_UNAVAILABLE"


class DependencyUnavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "DEPENDENCY_UNAVAILABLE"


class DataLoss(DomainError):
    code = grpc.StatusCode.DATA_LOSS
    reason = "DATA_LOSS"


class AuditUnavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "AUDIT_UNAVAILABLE"


class KeyUnavailable(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "KEY_UNAVAILABLE"


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Internal(DomainError):
    """An unexpected fault; the message says only that, the request id finds the log line."""


def to_grpc_status(error: DomainError) -> grpc.Status:
    packed = []
    for detail in error.details():
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(code=error.code.value[0], message=error.message, details=packed)
    return rpc_status.to_status(status)


def from_rpc_error(err: grpc.RpcError) -> DomainError:
    """Rebuild a DomainError from another service's answer, keeping its code, reason and details."""
    status = _status_details(err)
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    reason, violations, metadata = "", [], {}
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
    if violations:
        error: DomainError = InvalidArgument(violations)
        error.message = message or error.message
    else:
        error = DomainError(message or code.name)
        error.code = code
        error.reason = reason_for(code, reason)
    error.metadata.update({k: v for k, v in metadata.items() if k != "request_id"})
    return error


def _status_details(err: grpc.RpcError) -> status_pb2.Status | None:
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
assert set(REASON_BY_CODE.values()) | {DEFAULT_REASON} <= REASONS
