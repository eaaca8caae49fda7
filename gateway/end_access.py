"""EndRemoteAccess: close a window early and, if asked, delete the logon data stored for it. Ending access
that has already ended (the window closed or expired) is not an error: the deletion still runs."""
from __future__ import annotations

import grpc

from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from gateway.backends import Backends
from gateway.model import ENDED
from services.kit import names
from services.kit.errors import DomainError

ENTRY_LIMIT = 10_000


async def end_remote_access(b: Backends, request: gpb.EndRemoteAccessRequest) -> gpb.EndRemoteAccessResponse:
    parts = names.parse("connection", request.connection, "connection")
    window = await close(b, request.connection)
    out = gpb.EndRemoteAccessResponse(connection=window)
    if request.delete_logon_data:
        system = names.parent_system(parts)
        out.deleted_logon_data.extend(await delete_entries_for(b, system, request.connection))
    return out


async def close(b: Backends, name: str) -> cpb.Connection:
    """Close the window; one that has ended already is read and returned as it is."""
    try:
        return (await b.call("connections", b.connections.CloseConnection,
                             cpb.CloseConnectionRequest(name=name))).connection
    except DomainError as refused:
        if refused.code != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        window = (await b.call("connections", b.connections.GetConnection,
                               cpb.GetConnectionRequest(name=name))).connection
        if window.state not in ENDED:
            raise refused from None
        return window


async def delete_entries_for(b: Backends, system: str, window: str) -> list[str]:
    """Delete the system's entries stored for `window`; an entry gone meanwhile is not counted."""
    entries = await b.collect("depot", b.depot.ListLogonData, dpb.ListLogonDataRequest(parent=system),
                              "logon_data", ENTRY_LIMIT)
    deleted = []
    for entry in entries:
        if entry.connection != window:
            continue
        try:
            await b.call("depot", b.depot.DeleteLogonData, dpb.DeleteLogonDataRequest(name=entry.name))
        except DomainError as error:
            if error.code != grpc.StatusCode.NOT_FOUND:
                if deleted:  # the window is closed and these are gone; a retry deletes the rest
                    error.metadata["deleted_logon_data"] = ",".join(deleted)
                raise
            continue
        deleted.append(entry.name)
    return deleted
