"""ExtendConnection: an open or scheduled window gets a later end in one step, within OpenConnection's limits
(the type's maximum window, counted from the later of its start and now; no overlap with a window of the same
type), as WINDOW_EXTENDED in the feed; its closing warning is due again for the new end. Every refusal names
its problem and changes nothing."""
from __future__ import annotations

import datetime as dt

import grpc
import pytest

from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.connections.v1 import connections_pb2 as cp
from services.kit.validate import timestamp
from tests.feeds import Watcher
from tests.helpers import expect_error, status_details
from tests.integration.connections.world import HOUR, World

pytestmark = pytest.mark.asyncio(loop_scope="module")

T = ep.EventType
US = dt.timedelta(microseconds=1)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION
SSH_MAX = 72 * HOUR  # the SSH type's maximum window (the seed's catalog)


@pytest.fixture(autouse=True)
def clock(suite):
    """The suite's clock, put back where it was after the test (logins expire 12 h after they were made)."""
    before = suite.clock.now()
    yield suite.clock
    suite.clock.set(before)


def extend(name: str, end: dt.datetime | None, *, validate_only: bool = False) -> cp.ExtendConnectionRequest:
    request = cp.ExtendConnectionRequest(name=name, validate_only=validate_only)
    if end is not None:
        request.end_time.FromDatetime(end)
    return request


async def get(world: World, name: str) -> cp.Connection:
    return (await world.call("GetConnection", cp.GetConnectionRequest(name=name), "member")).connection


async def watch(world: World, types) -> Watcher:
    return await Watcher.open(world.conn.WatchEvents, cp.WatchEventsRequest(
        parent=f"customers/{world.customer}", types=types), world.md("member"))


async def test_an_open_window_is_extended_once_and_the_feed_says_so(world):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0), length=HOUR)
    old_end = timestamp(window.end_time)
    watcher = await watch(world, [T.EVENT_TYPE_WINDOW_EXTENDED])
    new_end = old_end + 2 * HOUR
    rehearsed = (await world.call("ExtendConnection", extend(window.name, new_end, validate_only=True),
                                  "opener")).connection
    assert timestamp(rehearsed.end_time) == new_end
    assert timestamp((await get(world, window.name)).end_time) == old_end  # a rehearsal changes nothing
    got = (await world.call("ExtendConnection", extend(window.name, new_end), "opener")).connection
    assert (got.name, timestamp(got.end_time), got.state) == (window.name, new_end, cp.CONNECTION_STATE_OPEN)
    assert timestamp((await get(world, window.name)).end_time) == new_end
    world.suite.clock.set(old_end)  # past the old end it is still open
    assert (await get(world, window.name)).state == cp.CONNECTION_STATE_OPEN
    event, = await watcher.wait_for(1)
    assert (event.type, event.actor, event.resource) == (T.EVENT_TYPE_WINDOW_EXTENDED, world.users["opener"],
                                                         window.name)
    assert new_end.isoformat() in event.detail and old_end.isoformat() in event.detail
    await watcher.next_heartbeats()
    assert len(watcher.events) == 1  # the rehearsal wrote no event
    await watcher.close()


async def test_the_limits_of_opening_hold_for_the_new_end(world):
    system = await world.new_system()
    await world.set_up(system)
    now = world.suite.clock.now()
    scheduled = await world.open(system, start=HOUR, length=HOUR)
    start, end = timestamp(scheduled.start_time), timestamp(scheduled.end_time)
    await expect_error(world.call("ExtendConnection", extend(scheduled.name, None), "opener"), INVALID,
                       field="end_time", message="required")
    await expect_error(world.call("ExtendConnection", extend(scheduled.name, end), "opener"), INVALID,
                       field="end_time", message="later than the connection's current end")
    await expect_error(world.call("ExtendConnection", extend(scheduled.name, start + SSH_MAX + US), "opener"),
                       INVALID, field="end_time", message="maximum of 72 hours from the connection start")
    # scheduled: counted from its start; the full maximum is allowed
    await world.call("ExtendConnection", extend(scheduled.name, start + SSH_MAX), "opener")
    # open for a while: counted from now, as if the rest were opened now
    running = await world.open(await _set_up_system(world), start=dt.timedelta(0), length=HOUR)
    world.suite.clock.set(now + 30 * dt.timedelta(minutes=1))
    moved = world.suite.clock.now()
    await expect_error(world.call("ExtendConnection", extend(running.name, moved + SSH_MAX + US), "opener"),
                       INVALID, field="end_time", message="maximum of 72 hours from now")
    await world.call("ExtendConnection", extend(running.name, moved + SSH_MAX), "opener")
    assert timestamp((await get(world, running.name)).end_time) == moved + SSH_MAX


async def _set_up_system(world: World) -> str:
    system = await world.new_system()
    await world.set_up(system)
    return system


async def test_it_may_not_reach_into_the_next_window_of_the_type(world):
    system = await _set_up_system(world)
    first = await world.open(system, start=dt.timedelta(0), length=HOUR)
    second = await world.open(system, start=3 * HOUR, length=HOUR)
    err = await expect_error(world.call("ExtendConnection", extend(first.name, timestamp(second.start_time) + US),
                                        "opener"), FAILED, "CONFLICT", message=second.name)
    assert status_details(err)[2]["existing_connection"] == second.name
    assert (await get(world, first.name)).end_time == first.end_time
    await world.call("ExtendConnection", extend(first.name, timestamp(second.start_time)), "opener")  # adjacent


async def test_a_closed_or_expired_window_is_not_extended_and_strangers_may_not(world):
    system = await _set_up_system(world)
    window = await world.open(system, start=dt.timedelta(0), length=HOUR)
    later = timestamp(window.end_time) + HOUR
    for principal in ("member", "engineer", "other"):
        await expect_error(world.call("ExtendConnection", extend(window.name, later), principal),
                           grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(world.call("ExtendConnection", extend(f"{system}/connections/nope", later), "opener"),
                       grpc.StatusCode.NOT_FOUND, message="does not exist")
    await expect_error(world.call("ExtendConnection", extend("customers/x", later), "opener"), INVALID, field="name")
    await world.call("CloseConnection", cp.CloseConnectionRequest(name=window.name), "opener")
    await expect_error(world.call("ExtendConnection", extend(window.name, later), "opener"), FAILED,
                       message="already CLOSED")
    expired = await world.open(system, start=HOUR, length=HOUR)
    world.suite.clock.set(timestamp(expired.end_time))
    await expect_error(world.call("ExtendConnection", extend(expired.name, timestamp(expired.end_time) + HOUR),
                                  "opener"), FAILED, message="already EXPIRED")


async def test_a_window_of_a_confirmed_incident_is_not_extended(world):
    system = await _set_up_system(world)
    incident = await world.new_incident(system)
    request = cp.OpenConnectionRequest(parent=system, connection_type="connectionTypes/SSH", reason="for it",
                                       incident=incident.name, end_time=world.at(HOUR))
    window = (await world.call("OpenConnection", request, "opener")).connection
    await world.call("UpdateIncidentStatus", cp.UpdateIncidentStatusRequest(
        name=incident.name, status=cp.INCIDENT_STATUS_CONFIRMED, etag=incident.etag), "reporter")
    await expect_error(world.call("ExtendConnection", extend(window.name, timestamp(window.end_time) + HOUR),
                                  "opener"), FAILED, message="confirmed")


async def test_the_closing_warning_is_due_again_for_the_new_end(world):
    sweep = world.suite.running["connections"].app.sweep_once
    system = await _set_up_system(world)
    window = await world.open(system, start=dt.timedelta(0), length=HOUR)
    end = timestamp(window.end_time)
    world.suite.clock.set(end - dt.timedelta(minutes=15))
    assert window.name in (await sweep()).closing
    await world.call("ExtendConnection", extend(window.name, end + HOUR), "opener")
    assert window.name not in (await sweep()).closing  # the new end is more than 15 minutes away
    world.suite.clock.set(end + HOUR - dt.timedelta(minutes=15))
    assert window.name in (await sweep()).closing
    assert window.name not in (await sweep()).closing  # once
