"""The depot's event feed (WatchEvents): its log as the suite's events, in log order, shown to whom
ListLogEvents shows it, resumable from a cursor without loss or repetition, and nothing for what did not commit."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from remotesupport.authz.v1 import authz_pb2 as ap
from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot.events import event_type
from tests.feeds import Watcher
from tests.helpers import expect_error
from tests.integration.depot.world import World, fresh_customer

pytestmark = pytest.mark.asyncio(loop_scope="module")

T = ep.EventType


def watch_request(world: World, *, types=(), cursor: str = "", customer: str | None = None):
    return dp.WatchEventsRequest(parent=f"customers/{customer or world.customer}", types=types, cursor=cursor)


async def watch(world: World, principal: str, **kw) -> Watcher:
    return await Watcher.open(world.depot.WatchEvents, watch_request(world, **kw), world.md(principal))


async def some_changes(w: World) -> dp.LogonData:
    """Create, change, reveal, a refused reveal, a restricted view, delete: seven log events."""
    entry = await w.create("creator", secret="feed-secret-1")
    entry = await w.update("creator", entry, ["notes"], notes="n")
    entry = await w.update("other_edit_my", entry, ["secret"], secret="feed-secret-2")
    await w.reveal("creator", entry.name, reason="check")
    await expect_error(w.reveal("other_edit_my", entry.name), grpc.StatusCode.PERMISSION_DENIED)
    await w.set_view("edit_all", await w.new_incident(), [entry.name])
    await w.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name), metadata=w.md("edit_all"))
    return entry


def as_log(event: ep.Event) -> tuple:
    return event.log_sequence, event.chain_hash, event.actor, event.system, event.resource, event.incident


async def test_the_feed_is_the_log_in_order_with_sequence_and_chain_hash(world):
    w = await fresh_customer(world)
    watcher = await watch(w, "edit_all")
    await some_changes(w)
    got = await watcher.wait_for(7)
    log = await w.events()
    assert [as_log(e) for e in got] == [(e.sequence, e.hash, e.actor, e.system, e.logon_data, e.incident)
                                        for e in log]
    assert [e.type for e in got] == [T.EVENT_TYPE_LOGON_DATA_CREATED, T.EVENT_TYPE_LOGON_DATA_CHANGED,
                                     T.EVENT_TYPE_LOGON_DATA_CHANGED, T.EVENT_TYPE_LOGON_DATA_REVEALED,
                                     T.EVENT_TYPE_LOGON_DATA_REVEAL_REFUSED, T.EVENT_TYPE_RESTRICTED_VIEW_CHANGED,
                                     T.EVENT_TYPE_LOGON_DATA_DELETED]
    assert [e.position for e in got] == list(range(1, 8))
    assert all(e.source == "depot" and e.customer == f"customers/{w.customer}" for e in got)
    assert got[0].id == f"depot/customers/{w.customer}/events/1"
    assert got[0].time.ToDatetime() == log[0].event_time.ToDatetime()
    assert "feed-secret" not in repr(list(got))  # no secret in an event
    await watcher.next_heartbeats()
    assert len(watcher.events) == 7  # nothing twice
    await watcher.close()


async def test_a_cursor_resumes_without_loss_or_repetition(world):
    w = await fresh_customer(world)
    first = await watch(w, "edit_all")
    entry = await w.create("creator")
    await w.reveal("creator", entry.name)
    await first.wait_for(2)
    cursor = first.cursor
    await first.close()
    await w.reveal("creator", entry.name)  # while nobody watches
    await w.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name), metadata=w.md("edit_all"))
    again = await watch(w, "edit_all", cursor=cursor)
    got = await again.wait_for(2)
    assert [e.position for e in got] == [3, 4]
    assert [e.type for e in got] == [T.EVENT_TYPE_LOGON_DATA_REVEALED, T.EVENT_TYPE_LOGON_DATA_DELETED]
    await again.next_heartbeats()
    assert len(again.events) == 2
    await again.close()
    # the cursor of the first response (before any event) resumes from the start of the watch
    replay = await watch(w, "edit_all", cursor=(await watch_first_cursor(w)))
    await replay.next_heartbeats()
    assert replay.events == []
    await replay.close()


async def watch_first_cursor(w: World) -> str:
    watcher = await watch(w, "edit_all")
    await watcher.close()
    return watcher.cursor


async def test_the_type_filter(world):
    w = await fresh_customer(world)
    watcher = await watch(w, "edit_all", types=[T.EVENT_TYPE_LOGON_DATA_REVEALED,
                                               T.EVENT_TYPE_LOGON_DATA_REVEAL_REFUSED])
    await some_changes(w)
    got = await watcher.wait_for(2)
    assert [e.type for e in got] == [T.EVENT_TYPE_LOGON_DATA_REVEALED, T.EVENT_TYPE_LOGON_DATA_REVEAL_REFUSED]
    assert [e.position for e in got] == [4, 5]
    await watcher.next_heartbeats()
    assert len(watcher.events) == 2
    await watcher.close()


async def test_visibility_is_that_of_list_log_events(world):
    """EDIT_MY and EDIT_ALL users see every event of their customer (as ListLogEvents shows them); nobody else
    may open the depot's feed, not even to learn its pace: a member without either, an engineer (even the one
    assigned to the system), someone of another customer, the platform administrator."""
    watchers = {p: await watch(world, p) for p in ("creator", "edit_all")}
    for principal in ("assigned_engineer", "other_customer", "platform_admin"):
        await expect_error(watch(world, principal), grpc.StatusCode.PERMISSION_DENIED)
        await expect_error(world.depot.ListLogEvents(dp.ListLogEventsRequest(
            parent=f"customers/{world.customer}"), metadata=world.md(principal)), grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(Watcher.open(world.depot.WatchEvents, watch_request(world), world.suite.md(world.ops)),
                       grpc.StatusCode.PERMISSION_DENIED)
    entry = await world.create("edit_all")
    await world.reveal("assigned_engineer", entry.name)
    for principal in ("creator", "edit_all"):
        got = await watchers[principal].wait_for(2)
        assert [e.type for e in got] == [T.EVENT_TYPE_LOGON_DATA_CREATED, T.EVENT_TYPE_LOGON_DATA_REVEALED]
        assert got[1].actor == world.users["assigned_engineer"]
    for watcher in watchers.values():
        await watcher.close()


async def test_one_principal_s_watches_are_bounded(world):
    w = await fresh_customer(world)
    watchers = [await watch(w, "edit_all") for _ in range(8)]  # RS_EVENTS_MAX_WATCHES_PER_USER's default
    await expect_error(watch(w, "edit_all"), grpc.StatusCode.RESOURCE_EXHAUSTED, message="8 watches")
    other = await watch(w, "creator")  # another principal's are counted apart
    await watchers.pop().close()
    await asyncio.sleep(0.2)  # the server sees the cancellation
    watchers.append(await watch(w, "edit_all"))
    for watcher in watchers + [other]:
        await watcher.close()


async def test_what_did_not_commit_is_no_event(world):
    w = await fresh_customer(world)
    watcher = await watch(w, "edit_all")
    start = watcher.cursor
    await w.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=w.system, logon_data=dp.LogonData(
        kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT1", client="001", expire_time=w.expire_in(days=3)),
        secret="s", validate_only=True), metadata=w.md("creator"))
    await expect_error(w.create("creator", expire_time=w.expire_in(days=400)), grpc.StatusCode.INVALID_ARGUMENT)
    entry = await w.create("creator")
    got = await watcher.wait_for(1)
    assert got[0].position == 1 and got[0].resource == entry.name  # the rehearsal and the refusal wrote nothing
    await watcher.next_heartbeats()
    assert len(watcher.events) == 1 and watcher.cursor != start
    await watcher.close()


async def test_bad_requests_name_the_field(world):
    other = await fresh_customer(world)
    md = world.md("edit_all")
    cases = [(dp.WatchEventsRequest(parent="customer/1"), "parent"),
             (dp.WatchEventsRequest(parent=f"customers/{world.customer}", types=[999]), "types[0]"),
             (dp.WatchEventsRequest(parent=f"customers/{world.customer}", cursor="not-a-cursor"), "cursor")]
    other_cursor = (await watch(other, "edit_all")).cursor
    cases.append((dp.WatchEventsRequest(parent=f"customers/{world.customer}", cursor=other_cursor), "cursor"))
    for request, field in cases:
        await expect_error(_first(world.depot.WatchEvents(request, metadata=md)), grpc.StatusCode.INVALID_ARGUMENT,
                           field=field)
    await expect_error(_first(world.depot.WatchEvents(watch_request(world))), grpc.StatusCode.UNAUTHENTICATED)


async def _first(call):
    async for response in call:
        return response


async def test_a_revoked_token_ends_the_watch(world):
    w = await fresh_customer(world)
    user, token = await w.suite.new_user(w.customer, ["EDIT_ALL_LOGIN_DATA"])
    watcher = await Watcher.open(w.depot.WatchEvents, watch_request(w), w.suite.md(token))
    await w.suite.stub("authz").Logout(ap.LogoutRequest(), metadata=w.suite.md(token))
    await w.create("creator")  # the next batch is decided again: the token is refused
    await watcher.until(lambda x: x.ended is not None)
    assert watcher.ended.code() == grpc.StatusCode.UNAUTHENTICATED
    assert watcher.events == []


async def test_every_log_action_has_an_event_type():
    for action in dp.LogAction.keys()[1:]:
        for outcome in dp.LogOutcome.keys()[1:]:
            name = event_type(action.removeprefix("LOG_ACTION_"), outcome.removeprefix("LOG_OUTCOME_"))
            assert "EVENT_TYPE_" + name in ep.EventType.keys()
