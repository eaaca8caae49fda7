"""Refused reveals by callers outside the customer (issue 15 point 6c): past RS_DEPOT_FOREIGN_DENIALS_PER_HOUR in
an hour they are counted, not each logged, and the count reaches the log (REVEAL_DENIALS_COUNTED) when the hour
has passed - at the caller's next refusal or by the background pass - also with two depot replicas on one
database; refusals inside the customer are all logged; and an outsider gets the same refusal whether or not the
entry exists (even when the customer's log cannot be written)."""
from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import pytest_asyncio

from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.depot.v1 import depot_pb2_grpc
from services.depot import server as depot_server
from services.depot.settings import DepotSettings
from services.kit import app as kit_app
from services.kit.clients import TokenFile
from tests.helpers import expect_error, status_details
from tests.integration.depot.world import World, app, fresh_customer, restart_depot, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOUND = 3
DENIED = grpc.StatusCode.PERMISSION_DENIED
A = dp.LogAction
OUTSIDERS = ("other_customer", "unassigned_engineer", "platform_admin")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bounded(world: World) -> World:
    """The depot restarted with a bound of BOUND logged refusals per outsider and hour."""
    await restart_depot(world.suite, foreign_denials_per_hour=BOUND)
    return world


async def customer_with_entry(world: World) -> tuple[World, dp.LogonData]:
    """A fresh customer (its own log, and its own hours of refusals) with one system-user entry; the outsiders
    and the engineers are the shared world's."""
    w = await fresh_customer(world)
    for principal in (*OUTSIDERS, "engineer_outside_view"):
        w.users[principal], w.tokens[principal] = world.users[principal], world.tokens[principal]
    return w, await w.create("creator", secret="foreign-secret")


async def refuse(w: World, principal: str, name: str, times: int) -> list[grpc.RpcError]:
    return [await expect_error(w.reveal(principal, name), DENIED, "PERMISSION_DENIED") for _ in range(times)]


async def by(w: World, principal: str, action: int) -> list[dp.LogEvent]:
    return [e for e in await w.events(actor=w.users[principal]) if e.action == action]


def counted(event: dp.LogEvent) -> int:
    assert event.outcome == dp.LOG_OUTCOME_DENIED and "refused reveals counted, not each logged" in event.detail
    return int(event.detail.split()[0])


def hours_in_database(w: World) -> int:
    return sql(w.suite, "SELECT count(*) FROM foreign_denials WHERE customer = :c", c=w.customer)[0][0]


def an_hour_passes(w: World) -> None:
    w.suite.clock.advance(hours=1, seconds=1)


@pytest.mark.parametrize("principal", OUTSIDERS)
async def test_outsider_refusals_past_the_bound_are_counted_and_the_count_reaches_the_log(bounded, principal):
    w, entry = await customer_with_entry(bounded)
    errors = await refuse(w, principal, entry.name, BOUND + 5)
    assert len({(e.code(), e.details()) for e in errors}) == 1  # the refusal never changes
    written = await by(w, principal, A.LOG_ACTION_REVEAL_DENIED)
    assert len(written) == BOUND and all(e.logon_data == entry.name for e in written)
    assert await by(w, principal, A.LOG_ACTION_REVEAL_DENIALS_COUNTED) == []  # the hour is still open

    assert await app(w.suite).log_denial_counts_once() == 0  # not yet passed: nothing to log
    an_hour_passes(w)
    assert await app(w.suite).log_denial_counts_once() >= 1
    [summary] = await by(w, principal, A.LOG_ACTION_REVEAL_DENIALS_COUNTED)
    assert counted(summary) == 5 and summary.actor == w.users[principal]
    assert hours_in_database(w) == 0 and await app(w.suite).log_denial_counts_once() == 0  # logged once
    verdict = await w.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{w.customer}"), metadata=w.md("edit_all"))
    assert verdict.valid, verdict


async def test_the_count_is_logged_before_the_first_refusal_of_the_next_hour(bounded):
    w, entry = await customer_with_entry(bounded)
    await refuse(w, "other_customer", entry.name, BOUND + 2)
    an_hour_passes(w)
    await refuse(w, "other_customer", entry.name, 1)
    events = [e for e in await w.events(actor=w.users["other_customer"])]
    assert [e.action for e in events] == [A.LOG_ACTION_REVEAL_DENIED] * BOUND + [
        A.LOG_ACTION_REVEAL_DENIALS_COUNTED, A.LOG_ACTION_REVEAL_DENIED]
    assert counted(events[BOUND]) == 2
    assert events[BOUND + 1].sequence == events[BOUND].sequence + 1
    an_hour_passes(w)
    await app(w.suite).log_denial_counts_once()  # the new hour holds one logged refusal and nothing counted
    assert await by(w, "other_customer", A.LOG_ACTION_REVEAL_DENIALS_COUNTED) == [events[BOUND]]
    assert hours_in_database(w) == 0


async def test_each_outsider_has_its_own_hour_per_customer(bounded):
    w, entry = await customer_with_entry(bounded)
    other, other_entry = await customer_with_entry(bounded)
    await refuse(w, "other_customer", entry.name, BOUND + 1)
    await refuse(w, "unassigned_engineer", entry.name, BOUND)
    await refuse(other, "other_customer", other_entry.name, BOUND)
    assert len(await by(w, "other_customer", A.LOG_ACTION_REVEAL_DENIED)) == BOUND
    assert len(await by(w, "unassigned_engineer", A.LOG_ACTION_REVEAL_DENIED)) == BOUND
    assert len(await by(other, "other_customer", A.LOG_ACTION_REVEAL_DENIED)) == BOUND
    assert hours_in_database(w) == 2 and hours_in_database(other) == 1


async def test_refusals_inside_the_customer_are_all_logged(bounded):
    w, entry = await customer_with_entry(bounded)
    w.users["no_rights"], w.tokens["no_rights"] = await w.suite.new_user(w.customer, ["CREATE_INCIDENTS"])
    times = BOUND + 4
    await refuse(w, "no_rights", entry.name, times)  # a member without logon-data rights: read refused
    await refuse(w, "other_edit_my", entry.name, times)  # a colleague: may read, may not reveal another's
    for principal in ("no_rights", "other_edit_my"):
        assert len(await by(w, principal, A.LOG_ACTION_REVEAL_DENIED)) == times
    shown = await bounded.create("edit_all", secret="in-the-view")  # an engineer assigned to the system, for
    await bounded.set_view("edit_all", bounded.view_incident, [shown.name])  # an incident whose view hides it
    hidden = await bounded.create("creator", secret="outside-the-view")
    before = len(await by(bounded, "engineer_outside_view", A.LOG_ACTION_REVEAL_DENIED))
    await refuse(bounded, "engineer_outside_view", hidden.name, times)
    assert len(await by(bounded, "engineer_outside_view", A.LOG_ACTION_REVEAL_DENIED)) == before + times
    assert hours_in_database(w) == 0


async def start_replica(suite) -> tuple[kit_app.Running, grpc.aio.Channel]:
    """A second depot replica on the same database and master key (its own engine, write lock and local SQLite
    connections), as a second process would be."""
    config = suite.config("depot")
    settings = DepotSettings.from_env(config)
    settings.background, settings.foreign_denials_per_hour = False, BOUND
    running = await kit_app.start(kit_app.Deps(config, suite.clock, TokenFile(config.service_token_file)),
                                  lambda deps: depot_server.build(deps, settings=settings))
    return running, grpc.aio.insecure_channel(running.address)


async def test_two_replicas_count_every_concurrent_refusal_once(bounded):
    w, entry = await customer_with_entry(bounded)
    running, channel = await start_replica(w.suite)
    try:
        replicas = [w.depot, depot_pb2_grpc.LogonDepotServiceStub(channel)]
        times = 24
        calls = [replicas[n % 2].RevealLogonData(dp.RevealLogonDataRequest(name=entry.name),
                                                 metadata=w.md("other_customer")) for n in range(times)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, grpc.RpcError) and r.code() == DENIED for r in results), results
        assert len(await by(w, "other_customer", A.LOG_ACTION_REVEAL_DENIED)) == BOUND
        [(logged, count)] = sql(w.suite, "SELECT logged, counted FROM foreign_denials WHERE customer = :c",
                                c=w.customer)
        assert (logged, count) == (BOUND, times - BOUND)
        an_hour_passes(w)
        assert await running.app.log_denial_counts_once() >= 1  # either replica closes the hour, once
        await app(w.suite).log_denial_counts_once()
        [summary] = await by(w, "other_customer", A.LOG_ACTION_REVEAL_DENIALS_COUNTED)
        assert counted(summary) == times - BOUND
    finally:
        await channel.close()
        await running.stop(0.2)


async def test_a_count_waits_while_the_customers_log_cannot_be_extended(bounded):
    w, entry = await customer_with_entry(bounded)
    await refuse(w, "other_customer", entry.name, BOUND + 2)
    [[seal]] = sql(w.suite, "SELECT seal FROM log_heads WHERE customer = :c", c=w.customer)
    sql(w.suite, "UPDATE log_heads SET seal = :s WHERE customer = :c", s="0" * 64, c=w.customer)
    an_hour_passes(w)
    await app(w.suite).log_denial_counts_once()
    assert hours_in_database(w) == 1  # kept, not lost
    sql(w.suite, "UPDATE log_heads SET seal = :s WHERE customer = :c", s=seal, c=w.customer)  # restored
    await app(w.suite).log_denial_counts_once()
    assert hours_in_database(w) == 0
    [summary] = await by(w, "other_customer", A.LOG_ACTION_REVEAL_DENIALS_COUNTED)
    assert counted(summary) == 2


# --- the refusal does not reveal whether the entry exists ----------------------------------------------------
def refusal(error: grpc.RpcError) -> tuple:
    """What a caller learns from a refusal: code, message, ErrorInfo reason and metadata (but the call's own
    request id), field violations."""
    reason, violations, metadata = status_details(error)
    assert metadata.pop("request_id")
    return error.code(), error.details(), reason, metadata, violations


async def answers(w: World, principal: str, name: str) -> list[tuple]:
    """The refusals of a reveal, a get, an update and a delete of `name` by `principal`."""
    md = w.md(principal)
    update = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=name, notes="x"))
    update.update_mask.paths.append("notes")
    calls = [w.depot.RevealLogonData(dp.RevealLogonDataRequest(name=name), metadata=md),
             w.depot.GetLogonData(dp.GetLogonDataRequest(name=name), metadata=md),
             w.depot.UpdateLogonData(update, metadata=md),
             w.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=name), metadata=md)]
    return [refusal(await expect_error(call, DENIED, "PERMISSION_DENIED")) for call in calls]


@pytest.mark.parametrize("principal", OUTSIDERS)
async def test_an_outsider_gets_the_same_refusal_for_an_existing_and_a_missing_entry(bounded, principal):
    w, entry = await customer_with_entry(bounded)
    missing = entry.name.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex
    unknown_system = f"customers/{w.customer}/systems/999999999/logonData/{uuid.uuid4().hex}"
    existing = await answers(w, principal, entry.name)
    assert existing == await answers(w, principal, missing) == await answers(w, principal, unknown_system)
    await refuse(w, principal, entry.name, BOUND + 1)  # past the bound: only counted, the same answer
    assert await answers(w, principal, entry.name) == existing
    assert "foreign-secret" not in str(existing)


async def test_an_outsider_gets_the_same_refusal_when_the_customers_log_cannot_be_written(bounded):
    w, entry = await customer_with_entry(bounded)
    missing = entry.name.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex
    expected = await answers(w, "other_customer", missing)
    sql(w.suite, "UPDATE log_heads SET seal = :s WHERE customer = :c", s="0" * 64, c=w.customer)
    assert await answers(w, "other_customer", entry.name) == expected  # not DATA_LOSS: nothing about this log
    await expect_error(w.reveal("creator", entry.name), grpc.StatusCode.DATA_LOSS, "DATA_LOSS")  # a member: told

