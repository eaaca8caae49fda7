"""The relay's sessions in the connections service's event feed: started, refused and ended, written by the
relay process in the transaction that records the session; seen by the customer's members and by the engineer
whose incident the session is of."""
from __future__ import annotations

import grpc
import pytest

from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.connections.v1 import connections_pb2 as cp
from tests.feeds import Watcher
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz", "connections", "relay")
T = ep.EventType
SESSION_TYPES = [T.EVENT_TYPE_SESSION_STARTED, T.EVENT_TYPE_SESSION_REFUSED, T.EVENT_TYPE_SESSION_ENDED]


async def watch(world, principal: str) -> Watcher:
    return await Watcher.open(world.suite.stub("connections").WatchEvents, cp.WatchEventsRequest(
        parent=f"customers/{world.customer}", types=SESSION_TYPES), world.suite.md(world.tokens[principal]))


async def test_a_tunnel_s_start_and_end_and_a_refusal_are_events(world):
    line = await world.new_line()
    mine = (await world.call("CreateIncident", cp.CreateIncidentRequest(
        parent=f"customers/{world.customer}", incident=cp.Incident(system=line.system, title="Printing",
                                                                     priority=cp.INCIDENT_PRIORITY_LOW)),
        "reporter")).incident.name
    await world.call("AssignProcessor", cp.AssignProcessorRequest(name=mine), "colleague")  # same system
    member, engineer, colleague = [await watch(world, p) for p in ("member", "engineer", "colleague")]
    await world.attached(line)
    tunnel = world.tunnel(line)
    admitted = await tunnel.open()
    await tunnel.send(b"ping")
    assert await tunnel.receive(4) == b"ping"
    await tunnel.close_write()
    assert await tunnel.status() == grpc.StatusCode.OK
    await expect_error(world.tunnel(line, "unassigned").open(), grpc.StatusCode.PERMISSION_DENIED)
    got = await member.wait_for(3)
    sessions = {s.name: s for s in await world.sessions(line)}
    assert [(e.type, e.resource) for e in got[:2]] == [(T.EVENT_TYPE_SESSION_STARTED, admitted.session),
                                                       (T.EVENT_TYPE_SESSION_ENDED, admitted.session)]
    assert got[2].type == T.EVENT_TYPE_SESSION_REFUSED and got[2].actor == world.users["unassigned"]
    assert sessions[got[2].resource].state == cp.SESSION_STATE_REFUSED
    assert got[0].actor == world.users["engineer"] and got[0].incident == line.incident
    assert "CLIENT_CLOSED" in got[1].detail and "4 bytes to the target" in got[1].detail
    own = await engineer.wait_for(2)  # its own session; not another engineer's refusal on its system
    assert [e.resource for e in own] == [admitted.session] * 2
    await engineer.next_heartbeats()
    assert len(engineer.events) == 2
    await colleague.next_heartbeats()  # assigned to the same system: sees no one else's sessions
    assert [e for e in colleague.events if e.type in SESSION_TYPES] == []
    for watcher in (member, engineer, colleague):
        await watcher.close()
