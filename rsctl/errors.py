"""Exit codes and the one error type every rsctl failure becomes, including the mapping from a gRPC
error (code, message, google.rpc.Status details) to an exit code and a readable message."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

OK = 0
FAILURE = 1
USAGE = 2
NOT_LOGGED_IN = 3
PERMISSION_DENIED = 4
NOT_FOUND = 5
BAD_REQUEST = 6
UNREACHABLE = 7
DATA_LOSS = 8
INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  any other failure (internal server error, local file error, ...)
  2  usage error (bad command line)
  3  not logged in, or the token is unknown, expired or revoked (UNAUTHENTICATED)
  4  permission denied (PERMISSION_DENIED; the message names the authorization needed)
  5  not found (NOT_FOUND)
  6  request problem (INVALID_ARGUMENT, FAILED_PRECONDITION, ABORTED, ALREADY_EXISTS, OUT_OF_RANGE)
  7  service unreachable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED)
  8  integrity failure (DATA_LOSS; also 'log verify', 'users verify-log' and 'connector verify' finding a
     broken log or file)"""

_BY_CODE = {
    grpc.StatusCode.OK: OK,
    grpc.StatusCode.UNAUTHENTICATED: NOT_LOGGED_IN,
    grpc.StatusCode.PERMISSION_DENIED: PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: BAD_REQUEST,
    grpc.StatusCode.ABORTED: BAD_REQUEST,
    grpc.StatusCode.ALREADY_EXISTS: BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: BAD_REQUEST,
    grpc.StatusCode.UNAVAILABLE: UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: UNREACHABLE,
    grpc.StatusCode.DATA_LOSS: DATA_LOSS,
}


def exit_code_for(code: grpc.StatusCode) -> int:
    """The documented exit code of a gRPC status code."""
    return _BY_CODE.get(code, FAILURE)


class CliError(Exception):
    """A failure to report as `rsctl: <label>: <message>` (plus detail lines) and exit with `exit_code`."""

    def __init__(self, label: str, message: str, exit_code: int = FAILURE, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.label = label
        self.message = message
        self.exit_code = exit_code
        self.details = list(details or [])

    def lines(self) -> list[str]:
        """The message and its detail lines, without control characters (they come from a server)."""
        return [_printable(f"rsctl: {self.label}: {self.message}")] + [_printable(f"  {d}") for d in self.details]


def _printable(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f\x9b]", lambda m: " " if m.group() in "\n\t\r" else "?", text)


def usage(message: str) -> CliError:
    return CliError("usage", message, USAGE)


def not_logged_in(message: str = "not logged in; run 'rsctl login USER_ID' first") -> CliError:
    return CliError("UNAUTHENTICATED", message, NOT_LOGGED_IN)


@dataclass
class StatusDetails:
    """What a google.rpc.Status in the trailing metadata says beyond code and message."""

    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)


def status_details(err: grpc.RpcError) -> StatusDetails:
    """Parse grpc-status-details-bin (ErrorInfo, BadRequest) of a failed call; empty when absent."""
    out = StatusDetails()
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:  # a garbled detail must not hide the error itself
            continue
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                out.violations = [(v.field, v.description) for v in bad.field_violations]
    return out


_METADATA_LABELS = {"required_authorizations": "required authorization", "field": None, "request_id": "request id"}


def _metadata_order(key: str) -> tuple[int, str]:
    return ({"required_authorizations": 0, "request_id": 2}.get(key, 1), key)


def _detail_lines(details: StatusDetails, message: str) -> list[str]:
    lines = [f"field {name}: {problem}" for name, problem in details.violations
             if f"{name}: {problem}" not in message]
    parts = [f"reason {details.reason}"] if details.reason else []
    for key in sorted(details.metadata, key=_metadata_order):
        label, value = _METADATA_LABELS.get(key, key), details.metadata[key]
        if label is not None and value:
            parts.append(f"{label} {value}")
    if parts:
        lines.append("; ".join(parts))
    return lines


def _transport_hint(code: grpc.StatusCode, message: str, target: str) -> str:
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach {target}: {message}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{target} did not answer in time (raise --timeout?): {message}"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return (f"{target} does not serve this method ({message}); point --address at the gateway "
                "or at the service that owns the method")
    return message


def from_rpc_error(err: grpc.RpcError, target: str) -> CliError:
    """The CliError for a failed call to `target` ("<address> (<service>)")."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    code = code or grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else "") or code.name
    details = status_details(err)
    if not details.reason:  # no server-side status: a transport-level problem, say where
        message = _transport_hint(code, message, target)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        message += " (run: rsctl login USER_ID)"
    return CliError(code.name, message, exit_code_for(code), _detail_lines(details, message))
