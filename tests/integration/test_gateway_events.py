"""WatchEvents at the gateway: the depot's and the connections service's feeds of a customer as one stream,
each source in its order, resumable from one cursor, filtered by type, and each service's visibility rules;
and the services' own feeds through the pass-through, which outlive the default call deadline."""
from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
import pytest_asyncio

import gateway.server
from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.depot.v1 import depot_pb2_grpc
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.kit.validate import to_timestamp
from tests.feeds import Watcher
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
T = ep.EventType
SECRET = "gw-feed-Pa55word!"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    await suite.start_service("gateway", build=gateway.server.build)
    w = type("World", (), {})()
    w.suite = suite
    w.gw = gateway_pb2_grpc.RemoteSupportServiceStub(suite.channels["gateway"])
    w.gw_depot = depot_pb2_grpc.LogonDepotServiceStub(suite.channels["gateway"])
    w.a, w.b = await suite.new_customer(), await suite.new_customer()
    w.full_user, w.full = await suite.new_user(w.a, ["MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS",
                                                     "EDIT_ALL_LOGIN_DATA", "CREATE_INCIDENTS"])
    w.member_user, w.member = await suite.new_user(w.a, [])
    w.stranger_user, w.stranger = await suite.new_user(w.b, ["EDIT_ALL_LOGIN_DATA"])
    w.system = await suite.new_system(w.a, w.full, sid="EVT")
    return w


def request(world, **kw) -> gpb.WatchEventsRequest:
    return gpb.WatchEventsRequest(parent=f"customers/{world.a}", **kw)


async def watch(world, token: str, **kw) -> Watcher:
    return await Watcher.open(world.gw.WatchEvents, request(world, **kw), world.suite.md(token))


async def prepare(world) -> gpb.PrepareRemoteAccessResponse:
    """A window opened and closed, and a logon data entry: events of both services."""
    end = to_timestamp(world.suite.clock.now() + dt.timedelta(hours=2))
    response = await world.gw.PrepareRemoteAccess(gpb.PrepareRemoteAccessRequest(
        system=world.system, connection_type="connectionTypes/SSH", parameters={"host": "10.1.2.3"}, end_time=end,
        logon_data=dpb.LogonData(kind=dpb.LOGON_DATA_KIND_SERVER_OS_USER, user_name="sapadm", server="10.1.2.3"),
        secret=SECRET), metadata=world.suite.md(world.full))
    await world.suite.stub("connections").CloseConnection(cpb.CloseConnectionRequest(
        name=response.connection.name), metadata=world.suite.md(world.full))
    return response


async def reveal(world, name: str) -> None:
    await world.gw_depot.RevealLogonData(dpb.RevealLogonDataRequest(name=name), metadata=world.suite.md(world.full))


async def test_both_sources_in_one_stream_each_in_its_order(world):
    watcher = await watch(world, world.full)
    prepared = await prepare(world)
    await reveal(world, prepared.logon_data.name)
    await watcher.until(lambda w: {e.type for e in w.events} >= {T.EVENT_TYPE_WINDOW_OPENED,
                                                                  T.EVENT_TYPE_LOGON_DATA_REVEALED})
    by_source = {s: [e for e in watcher.events if e.source == s] for s in ("depot", "connections")}
    assert T.EVENT_TYPE_LOGON_DATA_CREATED in [e.type for e in by_source["depot"]]
    assert [e.type for e in by_source["connections"]][:1] == [T.EVENT_TYPE_WINDOW_OPENED]
    for events in by_source.values():
        assert [e.position for e in events] == sorted(e.position for e in events)
        assert len({e.id for e in events}) == len(events)
    assert SECRET not in repr(list(watcher.events))
    await watcher.close()


async def test_one_cursor_resumes_both_sources(world):
    first = await watch(world, world.full)
    prepared = await prepare(world)
    await first.until(lambda w: T.EVENT_TYPE_WINDOW_CLOSED in [e.type for e in w.events]
                      and T.EVENT_TYPE_LOGON_DATA_CREATED in [e.type for e in w.events])
    await first.next_heartbeats()
    cursor, seen = first.cursor, {e.id for e in first.events}
    await first.close()
    await reveal(world, prepared.logon_data.name)
    incident = await world.suite.stub("connections").CreateIncident(cpb.CreateIncidentRequest(
        parent=f"customers/{world.a}", incident=cpb.Incident(system=world.system, title="after the cursor",
                                                              priority=cpb.INCIDENT_PRIORITY_LOW)),
        metadata=world.suite.md(world.full))
    again = await watch(world, world.full, cursor=cursor)
    got = await again.wait_for(2)
    assert sorted((e.type, e.resource) for e in got) == sorted([
        (T.EVENT_TYPE_LOGON_DATA_REVEALED, prepared.logon_data.name),
        (T.EVENT_TYPE_INCIDENT_CREATED, incident.incident.name)])
    await again.next_heartbeats()
    assert len(again.events) == 2 and not seen & {e.id for e in again.events}
    await again.close()


async def test_the_type_filter_and_the_services_visibility(world):
    reveals = await watch(world, world.full, types=[T.EVENT_TYPE_LOGON_DATA_REVEALED])
    member = await watch(world, world.member)  # no depot authorization: the connections feed only
    prepared = await prepare(world)
    await reveal(world, prepared.logon_data.name)
    got = await reveals.wait_for(1)
    assert got[0].type == T.EVENT_TYPE_LOGON_DATA_REVEALED and got[0].log_sequence and got[0].chain_hash
    await member.until(lambda w: T.EVENT_TYPE_WINDOW_CLOSED in [e.type for e in w.events])
    for watcher in (reveals, member):
        await watcher.next_heartbeats()
    assert {e.type for e in reveals.events} == {T.EVENT_TYPE_LOGON_DATA_REVEALED}
    assert {e.source for e in member.events} == {"connections"}
    for watcher in (reveals, member):
        await watcher.close()


async def test_refusals_name_their_cause(world):
    md = world.suite.md(world.full)
    for bad, field in ((request(world, cursor="garbage!"), "cursor"), (request(world, types=[77]), "types[0]"),
                       (gpb.WatchEventsRequest(parent="customers/x"), "parent")):
        await expect_error(_first(world.gw.WatchEvents(bad, metadata=md)), grpc.StatusCode.INVALID_ARGUMENT,
                           field=field)
    await expect_error(_first(world.gw.WatchEvents(request(world), metadata=world.suite.md(world.stranger))),
                       grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(_first(world.gw.WatchEvents(request(world))), grpc.StatusCode.UNAUTHENTICATED)
    await expect_error(_first(world.gw.WatchEvents(request(world, types=[T.EVENT_TYPE_LOGON_DATA_REVEALED]),
                                                   metadata=world.suite.md(world.member))),
                       grpc.StatusCode.PERMISSION_DENIED)  # the depot's feed is not a member's
    depot_cursor = (await Watcher.open(world.gw_depot.WatchEvents, dpb.WatchEventsRequest(
        parent=f"customers/{world.a}"), md)).cursor
    await expect_error(_first(world.suite.stub("connections").WatchEvents(cpb.WatchEventsRequest(
        parent=f"customers/{world.a}", cursor=depot_cursor), metadata=md)), grpc.StatusCode.INVALID_ARGUMENT,
        field="cursor")  # one service's cursor is not another's
    b_cursor = (await Watcher.open(world.gw.WatchEvents, gpb.WatchEventsRequest(parent=f"customers/{world.b}"),
                                   world.suite.md(world.stranger))).cursor
    await expect_error(_first(world.gw.WatchEvents(request(world, cursor=b_cursor), metadata=md)),
                       grpc.StatusCode.INVALID_ARGUMENT, field="cursor")


async def _first(call):
    async for response in call:
        return response


async def test_feeds_outlive_the_default_call_deadline(world):
    """The suite's default call deadline is 5 s: a feed without a deadline of its own is not cut by it, at the
    gateway's merged feed nor through the pass-through."""
    merged = await watch(world, world.full)
    forwarded = await Watcher.open(world.gw_depot.WatchEvents, dpb.WatchEventsRequest(
        parent=f"customers/{world.a}"), world.suite.md(world.full))
    await asyncio.sleep(world.suite.config("gateway").call_deadline_s + 1)
    prepared = await prepare(world)
    for watcher in (merged, forwarded):
        await watcher.until(lambda w: prepared.logon_data.name in [e.resource for e in w.events])
        assert watcher.ended is None
        await watcher.close()
