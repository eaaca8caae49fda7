"""Expiry: unreadable from the exact instant (NOT_FOUND, and EXPIRE in the log), then deleted with its data key
by the sweep (PURGE), which also runs on its own."""
from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.helpers import expect_error
from tests.integration.depot.world import SAPROUTER, World, app, entry_id, fresh_customer, restart_depot, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOT_FOUND = grpc.StatusCode.NOT_FOUND
MICROSECOND = dt.timedelta(microseconds=1)


async def actions(world: World, name: str) -> list[tuple[int, str]]:
    return [(e.action, e.actor) for e in await world.events(logon_data=name)]


def rows_holding(world: World, name: str) -> list:
    return sql(world.suite, "SELECT entry_id FROM logon_data WHERE entry_id = :id", id=entry_id(name))


async def test_an_entry_is_unreadable_from_the_exact_instant_it_expires(world):
    clock = world.suite.clock
    entry = await world.create("creator", expire_time=world.expire_in(seconds=30), secret="short-lived")
    expires = entry.expire_time.ToDatetime(dt.timezone.utc)
    clock.set(expires - MICROSECOND)
    assert (await world.reveal("creator", entry.name)).secret == "short-lived"
    assert entry.name in {e.name for e in await world.list("creator")}

    clock.set(expires)
    for principal in ("creator", "edit_all", "assigned_engineer"):
        await expect_error(world.get(principal, entry.name), NOT_FOUND, "NOT_FOUND")
        await expect_error(world.reveal(principal, entry.name), NOT_FOUND, "NOT_FOUND")
    await expect_error(world.update("creator", entry, ["notes"], notes="late"), NOT_FOUND, "NOT_FOUND")
    await expect_error(world.update("creator", entry, ["expire_time"], expire_time=world.expire_in(days=1)),
                       NOT_FOUND, "NOT_FOUND")
    await expect_error(world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name),
                                                   metadata=world.md("creator")), NOT_FOUND, "NOT_FOUND")
    assert entry.name not in {e.name for e in await world.list("edit_all")}
    # only the log says it expired, once, however often it was asked for
    events = [e for e in await world.events(logon_data=entry.name) if e.action == dp.LOG_ACTION_EXPIRE]
    assert [(e.actor, e.outcome) for e in events] == [("services/depot", dp.LOG_OUTCOME_SUCCESS)]
    assert "expired at" in events[0].detail


async def test_the_sweep_deletes_the_row_and_its_data_key_and_logs_it(world):
    clock = world.suite.clock
    read_late = await world.create("creator", expire_time=world.expire_in(seconds=20))
    never_read = await world.create("creator", kind=SAPROUTER, expire_time=world.expire_in(seconds=20))
    lasting = await world.create("creator", expire_time=world.expire_in(days=1))
    [(wrapped,)] = sql(world.suite, "SELECT wrapped_data_key FROM logon_data WHERE entry_id = :id",
                       id=entry_id(never_read.name))
    clock.advance(seconds=20)
    await expect_error(world.get("creator", read_late.name), NOT_FOUND)  # logs its EXPIRE now

    assert await app(world.suite).sweep_once() >= 2
    assert not rows_holding(world, read_late.name) and not rows_holding(world, never_read.name)
    assert rows_holding(world, lasting.name)
    depot = "services/depot"
    assert await actions(world, read_late.name) == [(dp.LOG_ACTION_CREATE, world.users["creator"]),
                                                    (dp.LOG_ACTION_EXPIRE, depot), (dp.LOG_ACTION_PURGE, depot)]
    assert await actions(world, never_read.name) == [(dp.LOG_ACTION_CREATE, world.users["creator"]),
                                                     (dp.LOG_ACTION_EXPIRE, depot), (dp.LOG_ACTION_PURGE, depot)]
    assert await app(world.suite).sweep_once() == 0
    assert (await world.get("creator", lasting.name)).name == lasting.name
    if world.suite.backend == "sqlite":  # the data key is gone from the file, not just from the table
        sql(world.suite, "PRAGMA wal_checkpoint(TRUNCATE)")
        path = world.suite.db_url["depot"].removeprefix("sqlite:///")
        assert wrapped not in open(path, "rb").read()
    verdict = await world.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{world.customer}"),
                                          metadata=world.md("edit_all"))
    assert verdict.valid


async def test_the_sweep_works_in_batches_each_logged_before_it_is_deleted(world, monkeypatch):
    from services.depot import maintenance
    monkeypatch.setattr(maintenance, "SWEEP_BATCH", 3)
    clock = world.suite.clock
    doomed = [await world.create("creator", expire_time=world.expire_in(seconds=10)) for _ in range(7)]
    clock.advance(seconds=10)
    await expect_error(world.get("creator", doomed[2].name), NOT_FOUND)  # its EXPIRE is logged already

    assert await app(world.suite).sweep_once() == 7  # three batches: 3 + 3 + 1
    depot = "services/depot"
    for entry in doomed:
        assert not rows_holding(world, entry.name)
        assert await actions(world, entry.name) == [(dp.LOG_ACTION_CREATE, world.users["creator"]),
                                                    (dp.LOG_ACTION_EXPIRE, depot), (dp.LOG_ACTION_PURGE, depot)]
    sequences = [e.sequence for e in await world.events()]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    verdict = await world.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{world.customer}"),
                                          metadata=world.md("edit_all"))
    assert verdict.valid and verdict.events_checked >= len(sequences)


async def test_extending_the_expiry_keeps_an_entry_alive(world):
    entry = await world.create("creator", expire_time=world.expire_in(seconds=10))
    entry = await world.update("creator", entry, ["expire_time"], expire_time=world.expire_in(days=2))
    world.suite.clock.advance(seconds=11)
    await app(world.suite).sweep_once()
    assert (await world.get("creator", entry.name)).name == entry.name


async def test_the_maximum_is_configurable(world):
    settings = app(world.suite).settings
    default = settings.max_expiry
    settings.max_expiry = dt.timedelta(days=7)
    try:
        await expect_error(world.create("creator", expire_time=world.expire_in(days=7, seconds=1)),
                           grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="logon_data.expire_time",
                           message="at most 7 days")
        assert (await world.create("creator", expire_time=world.expire_in(days=7))).has_secret
    finally:
        settings.max_expiry = default


async def test_an_expired_entry_cannot_join_a_restricted_view(world):
    entry = await world.create("edit_all", expire_time=world.expire_in(seconds=5))
    world.suite.clock.advance(seconds=5)
    await expect_error(world.set_view("edit_all", world.view_incident, [entry.name]),
                       grpc.StatusCode.INVALID_ARGUMENT, field="restricted_view.logon_data[0]")


async def test_the_sweep_runs_on_its_own(world):
    entry = await world.create("creator", expire_time=world.expire_in(seconds=10))
    await restart_depot(world.suite, background=True, sweep_interval_s=0.05)
    try:
        world.suite.clock.advance(seconds=10)
        for _ in range(200):
            if not rows_holding(world, entry.name):
                break
            await asyncio.sleep(0.02)
        assert not rows_holding(world, entry.name)
    finally:
        await restart_depot(world.suite)
    assert (dp.LOG_ACTION_PURGE, "services/depot") in await actions(world, entry.name)


async def test_a_customer_whose_log_was_changed_outside_the_depot_does_not_stop_the_sweep(world):
    """Its entries wait (nothing of it can be logged), every other customer's are swept."""
    tampered, other = await fresh_customer(world), await fresh_customer(world)
    kept = await tampered.create("creator", expire_time=tampered.expire_in(seconds=10))
    swept = await other.create("creator", expire_time=other.expire_in(seconds=10))
    [[seal]] = sql(world.suite, "SELECT seal FROM log_heads WHERE customer = :c", c=tampered.customer)
    sql(world.suite, "UPDATE log_heads SET seal = :s WHERE customer = :c", s="0" * 64, c=tampered.customer)
    world.suite.clock.advance(seconds=11)
    try:
        assert await app(world.suite).sweep_once() >= 1
        assert rows_holding(other, swept.name) == [] and len(rows_holding(tampered, kept.name)) == 1
    finally:
        sql(world.suite, "UPDATE log_heads SET seal = :s WHERE customer = :c", s=seal, c=tampered.customer)
    assert await app(world.suite).sweep_once() >= 1  # the log restored: swept at the next pass
    assert rows_holding(tampered, kept.name) == []
    assert [a for a, _ in await actions(tampered, kept.name)][-2:] == [dp.LOG_ACTION_EXPIRE, dp.LOG_ACTION_PURGE]
