"""The depot's log ("Show Log"): an event for every action, filters and paging, a hash chain per customer that
VerifyLog checks, and a database that refuses to change it (and VerifyLog for whoever gets past that)."""
from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
import sqlalchemy.exc

from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import audit, chain
from services.kit.validate import to_timestamp
from tests.helpers import expect_error
from tests.integration.depot.world import SAPROUTER, World, attacker, fresh_customer, relink, sql, stored_event

pytestmark = pytest.mark.asyncio(loop_scope="module")

A = dp.LogAction


async def verify(world: World) -> dp.VerifyLogResponse:
    return await world.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{world.customer}"),
                                       metadata=world.md("edit_all"))


async def test_every_action_is_an_event_with_who_what_when_which_and_outcome(world):
    w = await fresh_customer(world)
    clock = w.suite.clock
    md = w.md("creator") + (("x-request-id", "req-create-1"),)
    entry = (await w.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=w.system, logon_data=dp.LogonData(
        kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT1", client="001", expire_time=w.expire_in(days=3)),
        secret="log-secret"), metadata=md)).logon_data
    entry = await w.update("creator", entry, ["notes"], notes="n")
    entry = await w.update("other_edit_my", entry, ["secret"], secret="log-secret-2")
    await w.reveal("creator", entry.name, reason="check")
    await expect_error(w.reveal("other_edit_my", entry.name), grpc.StatusCode.PERMISSION_DENIED)
    incident = await w.new_incident()
    await w.set_view("edit_all", incident, [entry.name])
    await w.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name), metadata=w.md("edit_all"))

    events = await w.events()
    assert [(e.action, e.outcome, e.actor) for e in events] == [
        (A.LOG_ACTION_CREATE, dp.LOG_OUTCOME_SUCCESS, w.users["creator"]),
        (A.LOG_ACTION_UPDATE, dp.LOG_OUTCOME_SUCCESS, w.users["creator"]),
        (A.LOG_ACTION_SECRET_OVERWRITE, dp.LOG_OUTCOME_SUCCESS, w.users["other_edit_my"]),
        (A.LOG_ACTION_REVEAL, dp.LOG_OUTCOME_SUCCESS, w.users["creator"]),
        (A.LOG_ACTION_REVEAL_DENIED, dp.LOG_OUTCOME_DENIED, w.users["other_edit_my"]),
        (A.LOG_ACTION_RESTRICTED_VIEW_CHANGE, dp.LOG_OUTCOME_SUCCESS, w.users["edit_all"]),
        (A.LOG_ACTION_DELETE, dp.LOG_OUTCOME_SUCCESS, w.users["edit_all"]),
    ]
    assert [e.sequence for e in events] == list(range(1, 8))
    assert [e.name for e in events] == [f"customers/{w.customer}/logEvents/{n}" for n in range(1, 8)]
    assert events[0].request_id == "req-create-1" and all(e.request_id for e in events)
    assert events[0].previous_hash == "" and all(b.previous_hash == a.hash for a, b in zip(events, events[1:]))
    assert all(e.event_time.ToDatetime(dt.timezone.utc) == clock.now() for e in events)
    assert all(e.system == w.system for e in events)
    assert all(e.logon_data == entry.name for e in events if e.action != A.LOG_ACTION_RESTRICTED_VIEW_CHANGE)
    assert events[5].incident == incident and entry.name.rsplit("/", 1)[1] in events[5].detail
    assert events[3].detail == "reason: check" and "log-secret" not in str(events)
    assert (await verify(w)).valid


async def test_filters_and_paging(world):
    w = await fresh_customer(world)
    first = await w.create("creator", secret="a")
    start = w.suite.clock.advance(seconds=10)
    second = await w.create("edit_all", kind=SAPROUTER, secret="b")
    await w.reveal("edit_all", first.name)
    end = w.suite.clock.advance(seconds=10)
    other_system = await w.suite.new_system(w.customer, w.ops, sid="QAS")
    third = await w.create("creator", system=other_system, secret="c")

    async def names(**filters) -> list[int]:
        return [e.sequence for e in await w.events(**filters)]

    assert await names() == [1, 2, 3, 4]
    assert await names(system=w.system) == [1, 2, 3]
    assert await names(system=other_system) == [4]
    assert await names(logon_data=first.name) == [1, 3]
    assert await names(logon_data=third.name) == [4]
    assert await names(actor=w.users["edit_all"]) == [2, 3]
    assert await names(start_time=to_timestamp(start)) == [2, 3, 4]
    assert await names(end_time=to_timestamp(end)) == [1, 2, 3]
    assert await names(start_time=to_timestamp(start), end_time=to_timestamp(end), actor=w.users["edit_all"],
                       logon_data=second.name) == [2]
    page, token, seen = None, "", []
    while page is None or token:
        page = await w.depot.ListLogEvents(dp.ListLogEventsRequest(parent=f"customers/{w.customer}", page_size=3,
                                                                   page_token=token), metadata=w.md("creator"))
        seen += [e.sequence for e in page.events]
        token = page.next_page_token
        if token:
            await expect_error(w.depot.ListLogEvents(dp.ListLogEventsRequest(
                parent=f"customers/{w.customer}", page_token=token, actor=w.users["creator"]),
                metadata=w.md("creator")), grpc.StatusCode.INVALID_ARGUMENT, field="page_token")
    assert seen == [1, 2, 3, 4]


async def test_newest_first_with_filters_and_paging(world):
    w = await fresh_customer(world)
    first = await w.create("creator", secret="a")
    for _ in range(3):
        await w.reveal("creator", first.name)
    other_system = await w.suite.new_system(w.customer, w.ops, sid="QAS")
    await w.create("creator", system=other_system, secret="b")
    parent, md = f"customers/{w.customer}", w.md("creator")

    async def pages(order_by: str, page_size: int, **filters) -> list[list[int]]:
        out, token = [], None
        while token != "":
            page = await w.depot.ListLogEvents(dp.ListLogEventsRequest(
                parent=parent, page_size=page_size, page_token=token or "", order_by=order_by, **filters),
                metadata=md)
            out.append([e.sequence for e in page.events])
            token = page.next_page_token
        return out

    assert await pages("sequence desc", 2) == [[5, 4], [3, 2], [1]]
    assert await pages("  SEQUENCE   Desc ", 4) == [[5, 4, 3, 2], [1]]  # AIP-132: case and spaces are free
    assert await pages("sequence desc", 3, system=w.system) == [[4, 3, 2], [1]]
    assert await pages("sequence desc", 10, logon_data=first.name) == [[4, 3, 2, 1]]
    assert await pages("sequence", 4) == await pages("", 4) == await pages("sequence asc", 4) == [[1, 2, 3, 4], [5]]

    desc = await w.depot.ListLogEvents(dp.ListLogEventsRequest(parent=parent, page_size=2, order_by="sequence desc"),
                                       metadata=md)
    asc = await w.depot.ListLogEvents(dp.ListLogEventsRequest(parent=parent, page_size=2), metadata=md)
    # a page token belongs to its order: the other order refuses it
    await expect_error(w.depot.ListLogEvents(dp.ListLogEventsRequest(
        parent=parent, page_size=2, page_token=desc.next_page_token), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, field="page_token")
    await expect_error(w.depot.ListLogEvents(dp.ListLogEventsRequest(
        parent=parent, page_size=2, page_token=asc.next_page_token, order_by="sequence desc"), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, field="page_token")


@pytest.mark.parametrize("filters, field", [
    ({"system": "customers/1/systems/2"}, "system"),
    ({"system": "systems/2"}, "system"),
    ({"logon_data": "customers/1/systems/2/logonData/abc"}, "logon_data"),
    ({"actor": "S0000000001"}, "actor"),
    ({"start_time": 20, "end_time": 10}, "end_time"),
    ({"page_size": -1}, "page_size"),
    ({"page_token": "not-a-token"}, "page_token"),
    ({"order_by": "event_time desc"}, "order_by"),
    ({"order_by": "sequence descending"}, "order_by"),
])
async def test_bad_log_filters_name_the_field(world, filters, field):
    filters = dict(filters)
    for key in ("start_time", "end_time"):
        if key in filters:
            filters[key] = to_timestamp(world.suite.clock.now() + dt.timedelta(seconds=filters[key]))
    await expect_error(world.depot.ListLogEvents(dp.ListLogEventsRequest(parent=f"customers/{world.customer}",
                                                                         **filters), metadata=world.md("edit_all")),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field=field)


@pytest.mark.parametrize("principal, ok", [("creator", True), ("other_edit_my", True), ("edit_all", True),
                                           ("no_logon_rights", False), ("other_customer", False),
                                           ("assigned_engineer", False), ("platform_admin", False)])
async def test_who_reads_and_verifies_the_log(world, principal, ok):
    parent = f"customers/{world.customer}"
    calls = [world.depot.ListLogEvents(dp.ListLogEventsRequest(parent=parent), metadata=world.md(principal)),
             world.depot.VerifyLog(dp.VerifyLogRequest(parent=parent), metadata=world.md(principal))]
    for call in calls:
        if ok:
            await call
        else:
            await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_concurrent_writers_never_fork_a_chain(world):
    w = await fresh_customer(world)
    created = await asyncio.gather(*[w.create("creator", secret=f"c{i}") for i in range(12)],
                                   *[w.create("edit_all", kind=SAPROUTER, secret=f"r{i}") for i in range(8)])
    await asyncio.gather(*[w.reveal("edit_all", e.name) for e in created])
    events = await w.events()
    assert [e.sequence for e in events] == list(range(1, 41))
    assert (await verify(w)) == dp.VerifyLogResponse(valid=True, events_checked=40,
                                                     head=dp.LogHead(sequence=40, hash=events[-1].hash))


# --- the chain under attack ---------------------------------------------------------------------------------
async def test_the_database_refuses_to_change_or_delete_an_event(world):
    await world.create("creator")
    for statement in ("UPDATE log_events SET detail = 'x'", "DELETE FROM log_events"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
            sql(world.suite, statement)


def rehash(run, customer: str, sequence: int) -> None:
    """Edit an event and give it the hash its new content deserves (the next event's link still breaks)."""
    [row] = run("SELECT * FROM log_events WHERE customer = :c AND sequence = :s", c=customer, s=sequence)
    event = stored_event(row, detail="nothing happened")
    run("UPDATE log_events SET detail = :d, hash = :h WHERE customer = :c AND sequence = :s", d=event.detail,
        h=chain.link(event.previous_hash, event), c=customer, s=sequence)


async def chain_of_five(world: World) -> World:
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="chain")
    for notes in ("a", "b", "c"):
        entry = await w.update("creator", entry, ["notes"], notes=notes)
    await w.reveal("creator", entry.name)
    assert (await verify(w)) == dp.VerifyLogResponse(valid=True, events_checked=5,
                                                     head=dp.LogHead(sequence=5, hash=(await w.events())[-1].hash))
    return w


TAMPERING = {
    "edited": ("UPDATE log_events SET detail = 'changed notes, server' WHERE customer = :c AND sequence = 3",
               3, "edited"),
    "edited_outcome": ("UPDATE log_events SET outcome = 'DENIED' WHERE customer = :c AND sequence = 5", 5, "edited"),
    "edited_and_rehashed": (None, 3, "previous_hash"),  # see rehash()
    "removed": ("DELETE FROM log_events WHERE customer = :c AND sequence = 2", 2, "missing"),
    "newest_removed": ("DELETE FROM log_events WHERE customer = :c AND sequence = 5", 5, "missing"),
    "reordered": (";".join(f"UPDATE log_events SET sequence = {b} WHERE customer = :c AND sequence = {a}"
                           for a, b in ((2, -2), (3, 2), (-2, 3))), 2, "previous_hash"),
}


@pytest.mark.parametrize("batch", [2, audit.VERIFY_BATCH], ids=["batches-of-2", "one-batch"])
@pytest.mark.parametrize("case", list(TAMPERING))
async def test_verify_log_finds_the_first_broken_position(world, case, batch, monkeypatch):
    monkeypatch.setattr(audit, "VERIFY_BATCH", batch)  # the walk goes on across batch boundaries
    w = await chain_of_five(world)
    statement, position, problem = TAMPERING[case]
    with attacker(w) as run:
        if statement:
            for step in statement.split(";"):
                run(step, c=w.customer)
        else:
            rehash(run, w.customer, 2)
    verdict = await verify(w)
    assert not verdict.valid and verdict.first_broken_sequence == position, verdict
    assert problem in verdict.problem
    other = await verify(world)  # other customers' chains are untouched
    assert other.valid


async def test_a_forged_event_appended_outside_the_depot_is_found(world):
    w = await chain_of_five(world)
    sql(w.suite, "INSERT INTO log_events (customer, sequence, action, outcome, actor, system, logon_data, incident, "
                 "detail, event_time, request_id, previous_hash, hash) SELECT customer, 6, action, outcome, actor, "
                 "system, logon_data, incident, detail, event_time, request_id, hash, hash FROM log_events "
                 "WHERE customer = :c AND sequence = 5", c=w.customer)
    verdict = await verify(w)
    assert not verdict.valid and verdict.first_broken_sequence == 6


async def assert_log_refused(w: World, entry: dp.LogonData) -> None:
    """Nothing can be logged for a customer whose log head lacks the depot's seal, so nothing is done."""
    [[before]] = sql(w.suite, "SELECT count(*) FROM log_events WHERE customer = :c", c=w.customer)
    for call in (w.reveal("creator", entry.name), w.create("creator", secret="not stored"),
                 w.update("creator", entry, ["notes"], notes="not changed")):
        error = await expect_error(call, grpc.StatusCode.DATA_LOSS, "DATA_LOSS", message="changed outside the depot")
        assert "not stored" not in str(error.details())
    assert sql(w.suite, "SELECT count(*) FROM log_events WHERE customer = :c", c=w.customer) == [(before,)]
    assert (await w.get("creator", entry.name)).notes != "not changed"


@pytest.mark.parametrize("first", [1, 3, 5])
async def test_a_log_rewritten_with_recomputed_hashes_is_found_by_the_seal(world, first):
    w = await chain_of_five(world)
    [entry] = (await w.depot.ListLogonData(dp.ListLogonDataRequest(parent=w.system), metadata=w.md("creator"))
               ).logon_data
    with attacker(w) as run:
        relink(run, w.customer, first, detail="nothing happened")
    verdict = await verify(w)
    assert not verdict.valid and verdict.events_checked == 5 and verdict.first_broken_sequence == 5, verdict
    assert "seal" in verdict.problem and "rewritten outside the depot" in verdict.problem
    await assert_log_refused(w, entry)
    other = await chain_of_five(world)  # other customers' logs are still written and verify
    assert (await verify(other)).valid


async def test_a_head_with_another_seal_is_found_and_stops_the_log(world):
    w, donor = await chain_of_five(world), await chain_of_five(world)
    [entry] = (await w.depot.ListLogonData(dp.ListLogonDataRequest(parent=w.system), metadata=w.md("creator"))
               ).logon_data
    [[seal]] = sql(w.suite, "SELECT seal FROM log_heads WHERE customer = :c", c=donor.customer)
    sql(w.suite, "UPDATE log_heads SET seal = :s WHERE customer = :c", s=seal, c=w.customer)  # a real seal, not its own
    verdict = await verify(w)
    assert not verdict.valid and "seal" in verdict.problem
    await assert_log_refused(w, entry)
