"""Assertions shared by the tests: a call fails with this code, this reason, this field."""
from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2


def status_details(err: grpc.RpcError) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """(ErrorInfo reason, BadRequest violations, ErrorInfo metadata) of a failed call."""
    reason, violations, metadata = "", [], {}
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
                assert info.domain == "remotesupport"
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
    return reason, violations, metadata


async def expect_error(awaitable, code: grpc.StatusCode, reason: str | None = None, field: str | None = None,
                       message: str | None = None) -> grpc.RpcError:
    """Await a call that must fail with `code` (and the ErrorInfo `reason`, a violation on `field`,
    `message` in the text); returns the error for further checks."""
    try:
        await awaitable
    except grpc.RpcError as err:
        assert err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}"
        got_reason, violations, _ = status_details(err)
        if reason is not None:
            assert got_reason == reason, f"expected reason {reason}, got {got_reason!r}: {err.details()}"
        if field is not None:
            assert field in [f for f, _ in violations], f"no violation on {field!r}: {violations}"
        if message is not None:
            assert message in err.details(), f"{message!r} not in {err.details()!r}"
        return err
    raise AssertionError(f"call succeeded; expected {code.name}")
