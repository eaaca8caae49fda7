"""The gateway's proto conversions: the backends' messages a composite call sends, and the answers it
composes from theirs."""
from __future__ import annotations

from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb


def logon_data_for(request: gpb.PrepareRemoteAccessRequest, window: cpb.Connection,
                   connection_type: str) -> dpb.LogonData:
    """The request's logon data as stored for the window it opened: bound to the window, for its connection type
    unless the request names another, and expiring with the window unless the request says when."""
    entry = dpb.LogonData()
    entry.CopyFrom(request.logon_data)
    entry.connection = window.name
    if not entry.connection_type:
        entry.connection_type = connection_type
    if not entry.HasField("expire_time"):
        entry.expire_time.CopyFrom(window.end_time)
    return entry


def prepared(window: cpb.Connection, connector: cpb.GetServiceConnectorResponse,
             setup: cpb.ConnectionSetup | None) -> gpb.PrepareRemoteAccessResponse:
    """PrepareRemoteAccess's answer, before the logon data is added."""
    out = gpb.PrepareRemoteAccessResponse(connection=window, service_connector=connector.service_connector)
    if setup is not None:
        out.connection_setup.CopyFrom(setup)
    return out
