"""EndRemoteAccess: close a window early and, if asked, delete the logon data stored for it. Ending access
that has already ended (the window closed or expired) is not an error: the deletion still runs. Every step is
asked with validate_only first (the close and each deletion), so a refusal ends the call before the window is
closed; a failure after that is reported as the partial outcome it is (ErrorInfo metadata `closed_connection`
and `deleted_logon_data` name what was done)."""
from __future__ import annotations

import grpc

from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from gateway.backends import Backends, checked
from gateway.model import ENDED
from services.kit import names
from services.kit.errors import DomainError

ENTRY_LIMIT = 10_000


async def end_remote_access(b: Backends, request: gpb.EndRemoteAccessRequest) -> gpb.EndRemoteAccessResponse:
    parts = names.parse("connection", request.connection, "connection")
    system = names.parent_system(parts)
    entries = await entries_for(b, system, request.connection) if request.delete_logon_data else []
    await checked(close(b, request.connection, validate_only=True),
                  *(delete(b, entry, validate_only=True) for entry in entries))
    window, closed_here = await close(b, request.connection)
    out = gpb.EndRemoteAccessResponse(connection=window)
    try:
        for entry in entries:
            if await delete(b, entry):
                out.deleted_logon_data.append(entry)
    except DomainError as error:  # the window is closed and these are gone; a retry deletes the rest
        if closed_here:
            error.metadata["closed_connection"] = window.name
        if out.deleted_logon_data:
            error.metadata["deleted_logon_data"] = ",".join(out.deleted_logon_data)
        raise
    return out


async def close(b: Backends, name: str, *, validate_only: bool = False) -> tuple[cpb.Connection, bool]:
    """Close the window: (the window, True). One that has ended already is read and returned as it is: (the
    window, False)."""
    try:
        return (await b.call("connections", b.connections.CloseConnection,
                             cpb.CloseConnectionRequest(name=name, validate_only=validate_only))).connection, True
    except DomainError as refused:
        if refused.code != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        window = (await b.call("connections", b.connections.GetConnection,
                               cpb.GetConnectionRequest(name=name))).connection
        if window.state not in ENDED:
            raise refused from None
        return window, False


async def entries_for(b: Backends, system: str, window: str) -> list[str]:
    """The names of the system's entries stored for `window`."""
    entries = await b.collect("depot", b.depot.ListLogonData, dpb.ListLogonDataRequest(parent=system),
                              "logon_data", ENTRY_LIMIT)
    return [entry.name for entry in entries if entry.connection == window]


async def delete(b: Backends, name: str, *, validate_only: bool = False) -> bool:
    """Delete one entry; False when it was gone already (not an error)."""
    try:
        await b.call("depot", b.depot.DeleteLogonData, dpb.DeleteLogonDataRequest(name=name,
                                                                                 validate_only=validate_only))
    except DomainError as error:
        if error.code != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True
