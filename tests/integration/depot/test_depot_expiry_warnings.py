"""Expiry warnings: an EXPIRY_WARNING log event (and LOGON_DATA_EXPIRING in the feed) at the exact configured
instants before an entry expires (7 days and 1 day by default), once each, also with two replicas' passes at the
same moment; none for an instant that came before the entry was stored; again for a new date after an extension.
The clock is the suite's (injected)."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import maintenance
from services.depot.settings import parse_leads
from services.depot.store import Store
from tests.feeds import Watcher
from tests.integration.depot.world import World, app, fresh_customer

pytestmark = pytest.mark.asyncio(loop_scope="module")
DAY, SECOND = dt.timedelta(days=1), dt.timedelta(seconds=1)


async def customer(world: World) -> World:
    """A fresh customer (world.fresh_customer), its users' tokens noted with the clock they were issued at."""
    w = await fresh_customer(world)
    for token in w.tokens.values():
        _logged_in_at[token] = w.suite.clock.now()
    return w


async def warnings_of(w: World, name: str) -> list[dp.LogEvent]:
    await fresh_tokens(w)  # the clock moved on by days: the users log in again
    return [e for e in await w.events(logon_data=name) if e.action == dp.LOG_ACTION_EXPIRY_WARNING]


_logged_in_at: dict[str, dt.datetime] = {}  # token -> the clock when it was issued


async def fresh_tokens(w: World) -> None:
    """New tokens for the customer's users once the clock moved past the old ones' lifetime (an hour on)."""
    now = w.suite.clock.now()
    for principal, user in w.users.items():
        if now - _logged_in_at[w.tokens[principal]] >= dt.timedelta(hours=1):
            w.tokens[principal] = await w.suite.login(user.removeprefix("users/"))
            _logged_in_at[w.tokens[principal]] = now


def expiry(entry: dp.LogonData) -> dt.datetime:
    return entry.expire_time.ToDatetime(dt.timezone.utc)


async def test_warned_at_the_exact_instants_once_each(world):
    w = await customer(world)
    clock, depot = w.suite.clock, app(w.suite)
    watcher = await Watcher.open(w.depot.WatchEvents, dp.WatchEventsRequest(
        parent=f"customers/{w.customer}", types=[ep.EVENT_TYPE_LOGON_DATA_EXPIRING]), w.md("edit_all"))
    entry = await w.create("creator", expire_time=w.expire_in(days=8))
    clock.set(expiry(entry) - 7 * DAY - SECOND)
    await depot.warn_once()
    assert await warnings_of(w, entry.name) == []
    clock.set(expiry(entry) - 7 * DAY)
    await depot.warn_once()
    await depot.warn_once()  # the same instant again: nothing more
    [seven] = await warnings_of(w, entry.name)
    assert seven.actor == "services/depot" and "(the 7-day warning)" in seven.detail
    assert f"expires at {expiry(entry).isoformat()}, in 7 d 0 h" in seven.detail
    clock.set(expiry(entry) - DAY)
    await depot.warn_once()
    clock.advance(hours=1)
    await depot.warn_once()
    assert ["7-day" in e.detail or "1-day" in e.detail for e in await warnings_of(w, entry.name)] == [True, True]
    assert "(the 1-day warning)" in (await warnings_of(w, entry.name))[1].detail
    await watcher.close()  # (its token expired as the clock moved: it resumes from its first cursor)
    again = await Watcher.open(w.depot.WatchEvents, dp.WatchEventsRequest(
        parent=f"customers/{w.customer}", types=[ep.EVENT_TYPE_LOGON_DATA_EXPIRING], cursor=watcher.cursor),
        w.md("edit_all"))
    got = await again.wait_for(2)
    assert [e.resource for e in got] == [entry.name] * 2
    assert [e.log_sequence for e in got] == [e.sequence for e in await warnings_of(w, entry.name)]
    await again.close()


async def test_an_entry_stored_inside_a_warning_gets_only_the_closer_ones(world):
    w = await customer(world)
    clock, depot = w.suite.clock, app(w.suite)
    short = await w.create("creator", expire_time=w.expire_in(days=3))
    shorter = await w.create("creator", expire_time=w.expire_in(hours=12))
    await depot.warn_once()
    assert await warnings_of(w, short.name) == [] and await warnings_of(w, shorter.name) == []
    clock.set(expiry(short) - DAY)
    await depot.warn_once()
    assert ["1-day" in e.detail for e in await warnings_of(w, short.name)] == [True]
    assert await warnings_of(w, shorter.name) == []  # it expired before any warning's instant after its creation


async def test_an_extension_is_warned_again_for_its_new_date(world):
    w = await customer(world)
    clock, depot = w.suite.clock, app(w.suite)
    entry = await w.create("creator", expire_time=w.expire_in(days=2))
    clock.set(expiry(entry) - DAY)
    await depot.warn_once()
    await fresh_tokens(w)
    entry = await w.update("creator", entry, ["expire_time"], expire_time=w.expire_in(days=3))
    await depot.warn_once()  # the new date's 7-day instant came before the entry was stored: none
    clock.set(expiry(entry) - DAY - SECOND)
    await depot.warn_once()
    assert len(await warnings_of(w, entry.name)) == 1
    clock.set(expiry(entry) - DAY)
    await depot.warn_once()
    details = [e.detail for e in await warnings_of(w, entry.name)]
    assert len(details) == 2 and all("1-day" in d for d in details)
    assert expiry(entry).isoformat() in details[1] and expiry(entry).isoformat() not in details[0]


async def test_two_replicas_warn_each_entry_once(world):
    w = await customer(world)
    clock, running = w.suite.clock, app(w.suite)
    entries = [await w.create("creator", expire_time=w.expire_in(days=2)) for _ in range(20)]
    clock.set(expiry(entries[-1]) - DAY)
    other = Store.open(w.suite.db_url["depot"])  # a second replica: its own engine and connections
    try:
        replica = dataclasses.replace(running.depot, store=other)
        counts = await asyncio.gather(maintenance.warn_once(running.depot), maintenance.warn_once(replica))
    finally:
        await other.close()
    assert sum(counts) == 20
    for entry in entries:
        assert len(await warnings_of(w, entry.name)) == 1


async def test_the_setting():
    assert parse_leads("X", "7d,1d,30m") == (7 * DAY, DAY, dt.timedelta(minutes=30))
    assert parse_leads("X", "") == ()
    with pytest.raises(SystemExit, match="X must be a comma list like 7d,1d"):
        parse_leads("X", "7 days")
