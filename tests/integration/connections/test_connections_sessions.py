"""ConnectionsService's relay sessions, read and terminated through gRPC against real authz (SQLite and
PostgreSQL): ListSessions (newest first, filters, pages; a customer user sees every session of the system, a
support engineer only its own, filtered in the query), GetSession (an engineer never learns whether another's
session exists), TerminateSession (OPEN_REMOTE_CONNECTIONS; an ACTIVE session gets terminated_by once, atomically),
and the gateway overview's live sessions.

The relay (services/connections/relay) is what writes relay_sessions rows; it does not run in these tests, so the
rows are inserted (and, where a test plays the relay ending a session, updated) through the connections service's
own store - the read and terminate side needs nothing else from it."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

import grpc
import pytest
import pytest_asyncio

import gateway.server
from remotesupport.connections.v1 import connections_pb2 as cp
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.connections.tables import SessionRow
from services.kit import names
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER
from services.kit.validate import to_timestamp
from tests.helpers import expect_error, status_details
from tests.integration.connections.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
MINUTE = dt.timedelta(minutes=1)


def _store(world: World):
    return world.suite.running["connections"].app.store


async def add_session(world: World, window: str, principal: str, *, state: str = "ACTIVE",
                      start: dt.timedelta = -MINUTE, session_id: str | None = None, **values) -> str:
    """Insert a session of `window` as the relay would record it (see the module docstring); its name."""
    parts = names.parse("connection", window, "window")
    now = world.suite.clock.now()
    kind = SUPPORT_ENGINEER if principal in (world.users["engineer"], world.users["unassigned"]) else CUSTOMER_USER
    row = SessionRow(
        id=session_id or uuid.uuid4().hex, customer=parts["customer"], system_number=parts["system"],
        window_id=parts["connection"], type_code=values.pop("type_code", "SSH"), principal=principal,
        principal_kind=kind, incident=values.pop("incident", ""),
        target=values.pop("target", "sapprd01.example.com:22"),
        relay_id=values.pop("relay_id", "relay-a"), state=state, start_time=now + start,
        end_time=now + start + MINUTE if state != "ACTIVE" else None,
        bytes_to_target=values.pop("bytes_to_target", 0), bytes_from_target=values.pop("bytes_from_target", 0),
        end_reason=values.pop("end_reason", "CLIENT_CLOSED" if state == "ENDED" else ""),
        refusal_reason=values.pop("refusal_reason", "WINDOW_NOT_OPEN" if state == "REFUSED" else ""),
        detail=values.pop("detail", ""), terminated_by=values.pop("terminated_by", ""))
    assert not values, values
    async with _store(world).write() as uow:
        uow.add(row)
    return f"{names.parent_system(parts)}/sessions/{row.id}"


async def relay_ends(world: World, session: str, end_reason: str) -> None:
    """What the relay records when it has cut a session (played here through the store)."""
    parts = names.parse("session", session, "session")
    async with _store(world).write() as uow:
        row = await uow.session(parts["customer"], parts["system"], parts["session"], lock=True)
        row.state, row.end_reason, row.end_time = "ENDED", end_reason, world.suite.clock.now()


async def fresh(world: World) -> tuple[str, str]:
    """A new system of the customer with SSH set up and a window open now: (system, window)."""
    system = await world.new_system()
    await world.set_up(system)
    return system, (await world.open(system, start=dt.timedelta(0))).name


async def listed(world: World, principal: str, **request) -> list[str]:
    """The names ListSessions gives `principal`, every page."""
    out, token = [], ""
    while True:
        page = await world.call("ListSessions", cp.ListSessionsRequest(page_token=token, **request), principal)
        out.extend(s.name for s in page.sessions)
        token = page.next_page_token
        if not token:
            return out


async def get(world: World, name: str, principal: str = "member") -> cp.Session:
    return (await world.call("GetSession", cp.GetSessionRequest(name=name), principal)).session


async def terminate(world: World, name: str, principal: str = "opener") -> cp.Session:
    return (await world.call("TerminateSession", cp.TerminateSessionRequest(name=name), principal)).session


# --- ListSessions and GetSession for the customer ----------------------------------------------------------------

async def test_a_customer_user_sees_every_session_of_the_system_newest_first_with_its_fields(world):
    system, window = await fresh(world)
    engineer, opener = world.users["engineer"], world.users["opener"]
    live = await add_session(world, window, engineer, start=-10 * MINUTE, bytes_to_target=120,
                             bytes_from_target=4096, incident=world.incident, relay_id="relay-b")
    ended = await add_session(world, window, opener, state="ENDED", start=-30 * MINUTE, end_reason="WINDOW_CLOSED",
                              detail="the customer closed the window")
    refused = await add_session(world, window, world.users["unassigned"], state="REFUSED", start=-5 * MINUTE,
                                detail="no support assignment", refusal_reason="NO_SUPPORT_ASSIGNMENT")
    await add_session(world, world.window, engineer)  # another system's: never listed here

    assert await listed(world, "member", parent=system) == [refused, live, ended]

    now = world.suite.clock.now()
    session = await get(world, live)
    assert session == cp.Session(
        name=live, connection=window, connection_type="connectionTypes/SSH", principal=engineer,
        incident=world.incident, target="sapprd01.example.com:22", state=cp.SESSION_STATE_ACTIVE,
        start_time=to_timestamp(now - 10 * MINUTE), bytes_to_target=120, bytes_from_target=4096, relay="relay-b")
    assert not session.HasField("end_time") and session.end_reason == cp.SESSION_END_REASON_UNSPECIFIED
    closed = await get(world, ended, "opener")
    assert closed.state == cp.SESSION_STATE_ENDED and closed.end_reason == cp.SESSION_END_REASON_WINDOW_CLOSED
    assert closed.end_time == to_timestamp(now - 29 * MINUTE) and closed.detail == "the customer closed the window"
    turned_away = await get(world, refused, "maintainer")
    assert turned_away.state == cp.SESSION_STATE_REFUSED and turned_away.refusal_reason == "NO_SUPPORT_ASSIGNMENT"
    page = await world.call("ListSessions", cp.ListSessionsRequest(parent=system), "reporter")
    assert list(page.sessions) == [turned_away, session, closed] and not page.next_page_token


async def test_filters_by_state_and_by_window(world):
    system, window = await fresh(world)
    await world.set_up(system, "GOTOASSIST")
    other_window = (await world.open(system, start=dt.timedelta(0), code="GOTOASSIST")).name
    engineer = world.users["engineer"]
    a = await add_session(world, window, engineer, start=-1 * MINUTE)
    b = await add_session(world, window, engineer, state="ENDED", start=-2 * MINUTE)
    c = await add_session(world, other_window, engineer, start=-3 * MINUTE, type_code="GOTOASSIST")
    d = await add_session(world, other_window, engineer, state="REFUSED", start=-4 * MINUTE, type_code="GOTOASSIST")

    assert await listed(world, "member", parent=system, state=cp.SESSION_STATE_ACTIVE) == [a, c]
    assert await listed(world, "member", parent=system, state=cp.SESSION_STATE_ENDED) == [b]
    assert await listed(world, "member", parent=system, state=cp.SESSION_STATE_REFUSED) == [d]
    assert await listed(world, "member", parent=system, connection=other_window) == [c, d]
    assert await listed(world, "member", parent=system, connection=window, state=cp.SESSION_STATE_ENDED) == [b]
    assert await listed(world, "member", parent=system, connection=f"{system}/connections/nosuchwindow") == []
    assert (await get(world, c)).connection_type == "connectionTypes/GOTOASSIST"


async def test_invalid_list_requests_name_the_field(world):
    system, window = await fresh(world)
    for request, field in (
        (cp.ListSessionsRequest(parent=system, state=42), "state"),
        (cp.ListSessionsRequest(parent=system, connection=world.window), "connection"),  # another system's window
        (cp.ListSessionsRequest(parent=system, connection=f"{system}/sessions/x"), "connection"),
        (cp.ListSessionsRequest(parent=system, page_size=-1), "page_size"),
        (cp.ListSessionsRequest(parent=system, page_size=1001), "page_size"),
        (cp.ListSessionsRequest(parent=system, page_token="%%%"), "page_token"),
        (cp.ListSessionsRequest(parent=f"customers/{world.customer}"), "parent"),
        (cp.ListSessionsRequest(), "parent"),
    ):
        await expect_error(world.call("ListSessions", request, "member"), INVALID, "INVALID_ARGUMENT", field)


async def test_pages_run_newest_first_with_ties_by_id_and_a_token_serves_only_its_request(world):
    system, window = await fresh(world)
    engineer = world.users["engineer"]
    made = [await add_session(world, window, engineer, start=-i * MINUTE) for i in range(1, 4)]
    tied = [await add_session(world, window, engineer, start=-5 * MINUTE, session_id=f"{n}{uuid.uuid4().hex[1:]}")
            for n in "29"]
    expected = made + sorted(tied, reverse=True)
    assert await listed(world, "member", parent=system) == expected
    pages = []
    token = ""
    while True:
        page = await world.call("ListSessions", cp.ListSessionsRequest(parent=system, page_size=2, page_token=token),
                                "member")
        pages.append([s.name for s in page.sessions])
        token = page.next_page_token
        if not token:
            break
    assert pages == [expected[:2], expected[2:4], expected[4:]]

    first = await world.call("ListSessions", cp.ListSessionsRequest(parent=system, page_size=1), "member")
    for other in (cp.ListSessionsRequest(parent=system, page_size=1, state=cp.SESSION_STATE_ACTIVE),
                  cp.ListSessionsRequest(parent=system, page_size=1, connection=window),
                  cp.ListSessionsRequest(parent=world.system, page_size=1)):
        other.page_token = first.next_page_token
        await expect_error(world.call("ListSessions", other, "member"), INVALID, "INVALID_ARGUMENT", "page_token")


async def test_a_member_gets_not_found_for_what_does_not_exist(world):
    system, _ = await fresh(world)
    missing_system = f"customers/{world.customer}/systems/424242"
    await expect_error(world.call("ListSessions", cp.ListSessionsRequest(parent=missing_system), "member"),
                       NOT_FOUND, "NOT_FOUND")
    await expect_error(world.call("GetSession", cp.GetSessionRequest(name=f"{system}/sessions/abc"), "member"),
                       NOT_FOUND, "NOT_FOUND", message="does not exist")
    await expect_error(world.call("GetSession", cp.GetSessionRequest(name=f"{missing_system}/sessions/abc"),
                                  "member"), NOT_FOUND, "NOT_FOUND")
    assert await listed(world, "member", parent=system) == []


# --- a support engineer: its own sessions only -------------------------------------------------------------------

async def test_an_engineer_lists_only_its_own_sessions_filtered_before_paging(world):
    system, window = await fresh(world)
    engineer, other = world.users["engineer"], world.users["unassigned"]
    first = await add_session(world, window, engineer, start=-1 * MINUTE)
    theirs = [await add_session(world, window, p, start=-i * MINUTE)
              for i, p in ((2, other), (3, world.users["opener"]), (4, other))]
    second = await add_session(world, window, engineer, state="ENDED", start=-5 * MINUTE)

    page = await world.call("ListSessions", cp.ListSessionsRequest(parent=system, page_size=1), "engineer")
    assert [s.name for s in page.sessions] == [first] and page.next_page_token
    page = await world.call("ListSessions", cp.ListSessionsRequest(
        parent=system, page_size=1, page_token=page.next_page_token), "engineer")
    assert [s.name for s in page.sessions] == [second] and not page.next_page_token, "full pages: filtered in the query"
    assert await listed(world, "unassigned", parent=system) == [theirs[0], theirs[2]]
    assert await listed(world, "member", parent=system) == [first, *theirs, second]
    assert await listed(world, "engineer", parent=system, state=cp.SESSION_STATE_ACTIVE) == [first]


async def test_an_engineer_never_learns_whether_a_system_or_another_session_exists(world):
    system, window = await fresh(world)
    mine = await add_session(world, window, world.users["engineer"])
    theirs = await add_session(world, window, world.users["opener"])
    missing_system = f"customers/{world.customer}/systems/434343"
    assert await listed(world, "unassigned", parent=system) == []
    assert await listed(world, "unassigned", parent=missing_system) == [], "the same answer as a system it has none of"
    assert await listed(world, "unassigned", parent=f"customers/{world.other_customer}/systems/1") == []

    assert (await get(world, mine, "engineer")).principal == world.users["engineer"]
    denials = []
    for name in (theirs, f"{system}/sessions/nosuchsession", f"{missing_system}/sessions/x"):
        err = await expect_error(world.call("GetSession", cp.GetSessionRequest(name=name), "engineer"), DENIED,
                                 "PERMISSION_DENIED", message="reads only the sessions it opened itself")
        denials.append(err.details().replace(name, "NAME"))
    assert len(set(denials)) == 1, "another's session and a missing one are refused alike"
    await expect_error(world.call("GetSession", cp.GetSessionRequest(name=mine), "unassigned"), DENIED,
                       "PERMISSION_DENIED")


# --- who may call them at all ------------------------------------------------------------------------------------

async def test_who_may_read_and_who_may_terminate(world):
    system, window = await fresh(world)
    session = await add_session(world, window, world.users["engineer"])
    reads = [("ListSessions", cp.ListSessionsRequest(parent=system)),
             ("GetSession", cp.GetSessionRequest(name=session))]
    stop = ("TerminateSession", cp.TerminateSessionRequest(name=session))
    for principal in ("other", "admin"):
        for method, request in reads + [stop]:
            err = await expect_error(world.call(method, request, principal), DENIED, "PERMISSION_DENIED")
            assert world.tokens[principal] not in err.details()
    for principal in ("member", "maintainer", "reporter", "engineer", "unassigned"):
        err = await expect_error(world.call(*stop, principal), DENIED, "PERMISSION_DENIED")
        if principal in ("member", "maintainer", "reporter"):
            assert status_details(err)[2]["required_authorizations"] == "OPEN_REMOTE_CONNECTIONS"
    assert (await get(world, session)).terminated_by == "", "nothing was terminated by the refused calls"
    for method, request in reads + [stop]:
        await expect_error(getattr(world.conn, method)(request), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
        await expect_error(getattr(world.conn, method)(request, metadata=world.suite.md("rs_" + "x" * 43)),
                           grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_malformed_session_names_are_invalid_argument(world):
    for method, request_type in (("GetSession", cp.GetSessionRequest),
                                 ("TerminateSession", cp.TerminateSessionRequest)):
        principal = "opener" if method == "TerminateSession" else "member"
        for bad in ("", world.system, f"{world.system}/sessions/UPPER", f"{world.system}/connections/abc",
                    "customers/x/systems/1/sessions/abc"):
            await expect_error(world.call(method, request_type(name=bad), principal), INVALID, "INVALID_ARGUMENT",
                               "name")


# --- TerminateSession ---------------------------------------------------------------------------------------------

async def test_terminate_records_the_caller_once_and_logs_one_line(world, caplog):
    system, window = await fresh(world)
    session = await add_session(world, window, world.users["engineer"], bytes_to_target=7)
    with caplog.at_level(logging.INFO, logger="services.connections.sessions"):
        terminated = await terminate(world, session)
    assert terminated.terminated_by == world.users["opener"] and terminated.state == cp.SESSION_STATE_ACTIVE
    assert terminated.name == session and terminated.bytes_to_target == 7
    assert await get(world, session) == terminated, "stored: the relay carrying it cuts it"
    lines = [r for r in caplog.records if r.name == "services.connections.sessions"]
    assert [(r.getMessage(), r.fields) for r in lines] == [
        ("session termination requested", {"session": session, "by": world.users["opener"]})]
    assert world.tokens["opener"] not in caplog.text

    err = await expect_error(terminate(world, session), PRECONDITION, "FAILED_PRECONDITION",
                             message=f"termination of session {session} already requested by {world.users['opener']}")
    assert status_details(err)[2]["terminated_by"] == world.users["opener"]

    await relay_ends(world, session, "TERMINATED")  # the relay cut it
    ended = await get(world, session)
    assert ended.state == cp.SESSION_STATE_ENDED and ended.end_reason == cp.SESSION_END_REASON_TERMINATED
    assert ended.terminated_by == world.users["opener"] and ended.HasField("end_time")
    await expect_error(terminate(world, session), PRECONDITION, "FAILED_PRECONDITION",
                       message=f"session {session} is ENDED (TERMINATED)")


async def test_terminate_refuses_a_session_that_is_not_active(world):
    system, window = await fresh(world)
    for state, why in (("ENDED", "WINDOW_ENDED"), ("REFUSED", "WINDOW_NOT_OPEN")):
        extra = {"end_reason": why} if state == "ENDED" else {"refusal_reason": why}
        session = await add_session(world, window, world.users["engineer"], state=state, **extra)
        err = await expect_error(terminate(world, session), PRECONDITION, "FAILED_PRECONDITION",
                                 message=f"session {session} is {state} ({why}); only an ACTIVE session")
        assert status_details(err)[2]["state"] == state
        assert (await get(world, session)).terminated_by == ""
    await expect_error(terminate(world, f"{system}/sessions/nosuchsession"), NOT_FOUND, "NOT_FOUND")
    await expect_error(terminate(world, f"customers/{world.customer}/systems/454545/sessions/abc"), NOT_FOUND,
                       "NOT_FOUND")
    session = await add_session(world, window, world.users["engineer"])
    await expect_error(terminate(world, session.replace(system, world.system)), NOT_FOUND, "NOT_FOUND")


async def test_concurrent_terminations_record_exactly_one(world, suite):
    system, window = await fresh(world)
    second_user, second_token = await suite.new_user(world.customer, ["OPEN_REMOTE_CONNECTIONS"])
    world.users["opener2"], world.tokens["opener2"] = second_user, second_token
    session = await add_session(world, window, world.users["engineer"])
    outcomes = await asyncio.gather(*(terminate(world, session, p) for p in ("opener", "opener2") * 3),
                                    return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, cp.Session)]
    lost = [o for o in outcomes if not isinstance(o, cp.Session)]
    assert len(won) == 1 and len(lost) == 5
    assert all(isinstance(o, grpc.RpcError) and o.code() == PRECONDITION and "already requested by" in o.details()
               for o in lost), [getattr(o, "details", lambda: o)() for o in lost]
    assert (await get(world, session)).terminated_by == won[0].terminated_by


# --- the gateway: pass-through and the overview's live sessions ----------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway_channel(suite):
    if "gateway" not in suite.running:
        await suite.start_service("gateway", build=gateway.server.build)
    return suite.channels["gateway"]


async def test_the_overview_shows_the_live_sessions_the_caller_may_see(world, gateway_channel):
    overview_of = gateway_pb2_grpc.RemoteSupportServiceStub(gateway_channel).GetSystemOverview
    system, window = await fresh(world)
    mine_live = await add_session(world, window, world.users["engineer"], start=-2 * MINUTE)
    await add_session(world, window, world.users["engineer"], state="ENDED", start=-1 * MINUTE)
    theirs_live = await add_session(world, window, world.users["opener"], start=-3 * MINUTE)
    await add_session(world, window, world.users["unassigned"], state="REFUSED")

    overview = await overview_of(gpb.GetSystemOverviewRequest(system=system), metadata=world.md("member"))
    assert [s.name for s in overview.live_sessions] == [mine_live, theirs_live]
    assert "live_sessions" not in overview.omitted
    assert overview.live_sessions[0] == await get(world, mine_live)

    incident = await world.new_incident(system)
    await world.call("AssignProcessor", cp.AssignProcessorRequest(name=incident.name), "engineer")
    overview = await overview_of(gpb.GetSystemOverviewRequest(system=system), metadata=world.md("engineer"))
    assert [s.name for s in overview.live_sessions] == [mine_live], "an engineer's own only"
    await expect_error(overview_of(gpb.GetSystemOverviewRequest(system=system), metadata=world.md("unassigned")),
                       DENIED, "PERMISSION_DENIED")

    through = connections_pb2_grpc.ConnectionsServiceStub(gateway_channel)
    listed_there = await through.ListSessions(cp.ListSessionsRequest(parent=system, state=cp.SESSION_STATE_ACTIVE),
                                              metadata=world.md("engineer"))
    assert [s.name for s in listed_there.sessions] == [mine_live]
    terminated = await through.TerminateSession(cp.TerminateSessionRequest(name=theirs_live),
                                                metadata=world.md("opener"))
    assert terminated.session.terminated_by == world.users["opener"]
    await expect_error(through.GetSession(cp.GetSessionRequest(name=theirs_live), metadata=world.md("engineer")),
                       DENIED, "PERMISSION_DENIED")
