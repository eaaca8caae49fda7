"""The connections service's event feed (WatchEvents): windows opened, closed and expired, incidents created,
taken and changed, in the order they committed; each shown to whom the lists show it; resumable from a cursor;
nothing for a change that did not commit."""
from __future__ import annotations

import datetime as dt

import grpc
import pytest

from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.connections.v1 import connections_pb2 as cp
from tests.feeds import Watcher
from tests.helpers import expect_error
from tests.integration.connections.world import HOUR, World

pytestmark = pytest.mark.asyncio(loop_scope="module")

T = ep.EventType


async def watch(world: World, principal: str, *, types=(), cursor: str = "") -> Watcher:
    return await Watcher.open(world.conn.WatchEvents, cp.WatchEventsRequest(
        parent=f"customers/{world.customer}", types=types, cursor=cursor), world.md(principal))


async def take(world: World, incident: str) -> None:
    await world.call("AssignProcessor", cp.AssignProcessorRequest(name=incident), "engineer")


async def test_windows_and_incidents_in_commit_order_with_who_and_what(world):
    watcher = await watch(world, "member")
    start = watcher.cursor
    window = await world.open()
    await world.call("CloseConnection", cp.CloseConnectionRequest(name=window.name), "opener")
    incident = await world.new_incident()
    await take(world, incident.name)
    other = await world.new_incident()
    await world.call("UpdateIncidentStatus", cp.UpdateIncidentStatusRequest(
        name=other.name, status=cp.INCIDENT_STATUS_CONFIRMED, etag=other.etag), "reporter")
    got = await watcher.wait_for(6)
    assert [(e.type, e.actor, e.resource) for e in got] == [
        (T.EVENT_TYPE_WINDOW_OPENED, world.users["opener"], window.name),
        (T.EVENT_TYPE_WINDOW_CLOSED, world.users["opener"], window.name),
        (T.EVENT_TYPE_INCIDENT_CREATED, world.users["reporter"], incident.name),
        (T.EVENT_TYPE_INCIDENT_TAKEN, world.users["engineer"], incident.name),
        (T.EVENT_TYPE_INCIDENT_CREATED, world.users["reporter"], other.name),
        (T.EVENT_TYPE_INCIDENT_STATUS_CHANGED, world.users["reporter"], other.name)]
    assert [b.position - a.position for a, b in zip(got, got[1:])] == [1] * 5
    assert all(e.source == "connections" and e.system == world.system for e in got)
    assert got[3].incident == incident.name and world.users["engineer"] in got[3].detail
    assert got[0].id == f"connections/customers/{world.customer}/events/{got[0].position}"
    assert got[0].time.ToDatetime(dt.timezone.utc) == world.suite.clock.now()
    await watcher.next_heartbeats()
    assert len(watcher.events) == 6 and watcher.cursor != start
    await watcher.close()


async def test_a_cursor_resumes_without_loss_or_repetition(world):
    first = await watch(world, "member", types=[T.EVENT_TYPE_INCIDENT_CREATED])
    one = await world.new_incident()
    await first.wait_for(1)
    cursor = first.cursor
    await first.close()
    two, three = await world.new_incident(), await world.new_incident()
    again = await watch(world, "member", types=[T.EVENT_TYPE_INCIDENT_CREATED], cursor=cursor)
    got = await again.wait_for(2)
    assert [e.resource for e in got] == [two.name, three.name] and one.name != two.name
    await again.next_heartbeats()
    assert len(again.events) == 2
    await again.close()


async def test_an_engineer_sees_its_own_assignments_only(world):
    """The engineer processing an incident of the system sees the system's windows and its incident's events;
    an engineer processing nothing of the customer may not watch, nor anybody of another customer."""
    incident = await world.new_incident()
    await take(world, incident.name)
    assigned, member = await watch(world, "engineer"), await watch(world, "member")
    other = await world.new_incident()
    await take(world, other.name)  # an event of an incident this engineer processes
    window = await world.open()
    unseen = await world.new_incident()  # created, not taken: not this engineer's
    await member.wait_for(4)
    got = await assigned.wait_for(2)
    assert [(e.type, e.resource) for e in got] == [(T.EVENT_TYPE_INCIDENT_TAKEN, other.name),
                                                   (T.EVENT_TYPE_WINDOW_OPENED, window.name)]
    await assigned.next_heartbeats()
    assert len(assigned.events) == 2 and unseen.name not in [e.resource for e in assigned.events]
    for principal in ("unassigned", "other", "admin"):
        await expect_error(watch(world, principal), grpc.StatusCode.PERMISSION_DENIED)
    for watcher in (assigned, member):
        await watcher.close()


async def test_what_did_not_commit_is_no_event(world):
    watcher = await watch(world, "member", types=[T.EVENT_TYPE_WINDOW_OPENED])
    start = world.at(200 * HOUR)
    request = cp.OpenConnectionRequest(parent=world.system, connection_type="connectionTypes/SSH", start_time=start,
                                       end_time=world.at(201 * HOUR), validate_only=True)
    await world.call("OpenConnection", request, "opener")  # a rehearsal
    request.validate_only = False
    opened = (await world.call("OpenConnection", request, "opener")).connection
    await expect_error(world.call("OpenConnection", request, "opener"), grpc.StatusCode.FAILED_PRECONDITION)  # overlaps
    got = await watcher.wait_for(1)
    await watcher.next_heartbeats()
    assert [e.resource for e in watcher.events] == [opened.name] == [got[0].resource]
    await watcher.close()


async def test_a_window_s_closing_warning_comes_once_at_its_instant(world):
    """15 minutes before the end (the default): WINDOW_CLOSING once; none for a window shorter than that."""
    sweep = world.suite.running["connections"].app.sweep_once
    system = await world.new_system()
    await world.set_up(system)
    watcher = await watch(world, "member", types=[T.EVENT_TYPE_WINDOW_CLOSING])
    window = await world.open(system, start=dt.timedelta(0), length=HOUR)
    short = await world.open(system, start=2 * HOUR, length=dt.timedelta(minutes=10))
    end = window.end_time.ToDatetime(dt.timezone.utc)
    world.suite.clock.set(end - dt.timedelta(minutes=15, seconds=1))
    assert window.name not in (await sweep()).closing
    world.suite.clock.set(end - dt.timedelta(minutes=15))
    assert (await sweep()).closing == [window.name]
    assert (await sweep()).closing == []
    world.suite.clock.set(short.end_time.ToDatetime(dt.timezone.utc) - dt.timedelta(minutes=5))
    assert short.name not in (await sweep()).closing
    await watcher.next_heartbeats()
    assert [e.resource for e in watcher.events] == [window.name]
    assert "ends at" in watcher.events[0].detail and "in 15 min" in watcher.events[0].detail
    await watcher.close()


async def test_the_sweep_s_expiry_is_an_event(world):
    """(Last in this module: it moves the clock.)"""
    watcher = await watch(world, "member", types=[T.EVENT_TYPE_WINDOW_EXPIRED])
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0), length=dt.timedelta(minutes=5))
    world.suite.clock.advance(minutes=6)
    await world.suite.running["connections"].app.sweep_once()
    await watcher.until(lambda w: window.name in [e.resource for e in w.events])
    [event] = [e for e in watcher.events if e.resource == window.name]
    assert event.actor == "services/connections" and "ended at" in event.detail
    await watcher.close()
