"""GetSystemOverview: a system with its set-ups, windows, live relay sessions, logon data (masked) and latest
log events, read in parallel under one deadline, as the caller (so a support engineer's live sessions are its
own only, as ListSessions answers it). A part the caller may not see (PERMISSION_DENIED) is left out and named
in `omitted`; the system itself failing, or any other failure, fails the call."""
from __future__ import annotations

import asyncio
import time

import grpc

from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from gateway.backends import Backends
from gateway.model import log_event_limit
from services.kit import auth, names
from services.kit.errors import DomainError

PART_LIMIT = 1000  # set-ups (at most one per catalog type), windows and live sessions (newest first), entries
PARTS = ("connection_setups", "connections", "live_sessions", "logon_data", "log_events")


async def system_overview(b: Backends, request: gpb.GetSystemOverviewRequest) -> gpb.GetSystemOverviewResponse:
    parts = names.parse("system", request.system, "system")
    limit = log_event_limit(request.log_event_limit)
    system, customer = request.system, names.customer(parts["customer"])
    one_deadline = auth.deadline_var.set(time.monotonic() + auth.remaining(b.call_deadline_s))
    try:
        results = await asyncio.gather(
            b.call("connections", b.connections.GetSystem, cpb.GetSystemRequest(name=system)),
            b.collect("connections", b.connections.ListConnectionSetups,
                      cpb.ListConnectionSetupsRequest(parent=system), "connection_setups", PART_LIMIT),
            b.collect("connections", b.connections.ListConnections,
                      cpb.ListConnectionsRequest(parent=system), "connections", PART_LIMIT),
            b.collect("connections", b.connections.ListSessions,
                      cpb.ListSessionsRequest(parent=system, state=cpb.SESSION_STATE_ACTIVE), "sessions", PART_LIMIT),
            b.collect("depot", b.depot.ListLogonData, dpb.ListLogonDataRequest(parent=system), "logon_data",
                      PART_LIMIT),
            latest_events(b, customer, system, limit),
            return_exceptions=True)
    finally:
        auth.deadline_var.reset(one_deadline)
    head, rest = results[0], results[1:]
    if isinstance(head, BaseException):
        raise head
    out = gpb.GetSystemOverviewResponse(system=head.system)
    for part, result in zip(PARTS, rest):
        if isinstance(result, DomainError) and result.code == grpc.StatusCode.PERMISSION_DENIED:
            out.omitted.append(part)
        elif isinstance(result, BaseException):
            raise result
        else:
            getattr(out, part).extend(result)
    return out


async def latest_events(b: Backends, customer: str, system: str, limit: int) -> list[dpb.LogEvent]:
    """The system's latest `limit` events, oldest of them first: one page of the log read newest first."""
    response = await b.call("depot", b.depot.ListLogEvents, dpb.ListLogEventsRequest(
        parent=customer, system=system, page_size=limit, order_by="sequence desc"))
    return list(reversed(response.events))
