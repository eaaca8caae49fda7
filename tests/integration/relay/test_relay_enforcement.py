"""Enforcement while a tunnel runs: it is cut within 2 s of the window's end, CloseConnection, the incident
leaving IN_PROCESS_AT_VENDOR or getting another processor, the engineer's logout or disabling, a revoked
authorization of a customer user, and the customer's TerminateSession; the connector is detached when the
window is over. After a cut no byte reaches the customer's system."""
from __future__ import annotations

import asyncio
import datetime as dt
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import delete, select

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cp
from services.connections.tables import RelayRow
from tests.helpers import status_details

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz", "connections", "relay")
BOUND_S = 2.0


async def _running(world, line, principal: str = "engineer"):
    """An admitted tunnel that has carried bytes both ways."""
    tunnel = world.tunnel(line, principal)
    admitted = await tunnel.open()
    await tunnel.send(b"ping")
    assert await tunnel.receive(4) == b"ping"
    return tunnel, admitted.session


async def _cut_after(world, tunnel, trigger) -> tuple[float, str]:
    """Run `trigger`, then wait for the relay to end the tunnel: (seconds it took, the ErrorInfo reason).
    Afterwards nothing sent into the tunnel reaches the echo server."""
    await trigger()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as ended:
        while True:
            message = await asyncio.wait_for(tunnel.call.read(), 5)
            assert message is not grpc.aio.EOF, "the tunnel ended OK instead of being cut"
    elapsed = time.monotonic() - started
    received = world.echo.received
    with pytest.raises(Exception):  # the call is over: nothing can be written into it
        for _ in range(3):
            await tunnel.send(b"after the cut")
    await asyncio.sleep(0.2)
    assert world.echo.received == received
    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION, ended.value.details()
    return elapsed, status_details(ended.value)[0]


async def _ended(world, name: str, reason) -> cp.Session:
    for _ in range(50):
        session = await world.session(name)
        if session.state == cp.SESSION_STATE_ENDED:
            assert session.end_reason == reason, session
            return session
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {name} was not recorded as ended")


async def test_the_window_s_end_cuts_the_tunnel_and_detaches_the_connector(world):
    line = await world.new_line(length=dt.timedelta(minutes=1))
    connector = await world.attached(line)
    tunnel, name = await _running(world, line)

    async def end_of_window():
        world.suite.clock.advance(seconds=61)

    elapsed, reason = await _cut_after(world, tunnel, end_of_window)
    assert reason == "SESSION_ENDED" and elapsed < BOUND_S
    session = await _ended(world, name, cp.SESSION_END_REASON_WINDOW_ENDED)
    assert session.bytes_to_target == 4 == session.bytes_from_target
    detached = await connector.wait_detached()
    assert detached is not None and detached.final and detached.reason == "WINDOW_NOT_OPEN"


async def test_closing_the_window_cuts_the_tunnel(world):
    line = await world.new_line()
    connector = await world.attached(line)
    tunnel, name = await _running(world, line)
    elapsed, _ = await _cut_after(world, tunnel, lambda: world.call(
        "CloseConnection", cp.CloseConnectionRequest(name=line.window), "opener"))
    assert elapsed < BOUND_S
    await _ended(world, name, cp.SESSION_END_REASON_WINDOW_CLOSED)
    assert (await connector.wait_detached()).final


async def test_the_incident_leaving_the_vendor_cuts_the_tunnel(world):
    line = await world.new_line()
    await world.attached(line)
    tunnel, name = await _running(world, line)
    elapsed, _ = await _cut_after(world, tunnel, lambda: world.call("UpdateIncidentStatus", cp.UpdateIncidentStatusRequest(
        name=line.incident, status=cp.INCIDENT_STATUS_CUSTOMER_ACTION), "engineer"))
    assert elapsed < BOUND_S
    await _ended(world, name, cp.SESSION_END_REASON_NOT_AUTHORIZED)


async def test_another_processor_cuts_the_tunnel(world):
    line = await world.new_line()
    await world.attached(line)
    tunnel, name = await _running(world, line)
    elapsed, _ = await _cut_after(world, tunnel, lambda: world.call(
        "AssignProcessor", cp.AssignProcessorRequest(name=line.incident), "colleague"))
    assert elapsed < BOUND_S
    await _ended(world, name, cp.SESSION_END_REASON_NOT_AUTHORIZED)
    admitted = await world.tunnel(line, "colleague").open()  # the new processor may connect
    assert admitted.session


async def test_the_engineer_logging_out_cuts_the_tunnel(world):
    line = await world.new_line()
    await world.attached(line)
    user_id = world.users["engineer"].removeprefix("users/")
    world.tokens["engineer2"] = await world.suite.login(user_id)
    tunnel, name = await _running(world, line, "engineer2")
    elapsed, _ = await _cut_after(world, tunnel, lambda: world.suite.stub("authz").Logout(
        az.LogoutRequest(), metadata=world.suite.md(world.tokens["engineer2"])))
    assert elapsed < BOUND_S
    await _ended(world, name, cp.SESSION_END_REASON_NOT_AUTHORIZED)


async def test_disabling_the_engineer_cuts_the_tunnel(world):
    user, token = await world.suite.new_engineer()
    world.tokens["doomed"] = token
    line = await world.new_line(engineer="doomed")
    await world.attached(line)
    tunnel, name = await _running(world, line, "doomed")
    elapsed, _ = await _cut_after(world, tunnel, lambda: world.suite.stub("authz").UpdateUser(
        az.UpdateUserRequest(user=az.User(name=user, disabled=True),
                             update_mask=field_mask_pb2.FieldMask(paths=["disabled"])),
        metadata=world.suite.md(world.suite.admin_token)))
    assert elapsed < BOUND_S
    await _ended(world, name, cp.SESSION_END_REASON_NOT_AUTHORIZED)


async def test_the_customer_terminating_the_session_cuts_it(world):
    line = await world.new_line()
    await world.attached(line)
    tunnel, name = await _running(world, line)
    elapsed, _ = await _cut_after(world, tunnel, lambda: world.call(
        "TerminateSession", cp.TerminateSessionRequest(name=name), "opener"))
    assert elapsed < BOUND_S
    session = await _ended(world, name, cp.SESSION_END_REASON_TERMINATED)
    assert session.terminated_by == world.users["opener"]


async def test_live_sessions_are_listed_while_they_run(world):
    line = await world.new_line()
    await world.attached(line)
    tunnel, name = await _running(world, line)
    live = (await world.call("ListSessions", cp.ListSessionsRequest(
        parent=line.system, state=cp.SESSION_STATE_ACTIVE), "member")).sessions
    assert [s.name for s in live] == [name]
    await tunnel.close_write()
    assert await tunnel.status() == grpc.StatusCode.OK
    await _ended(world, name, cp.SESSION_END_REASON_CLIENT_CLOSED)


async def test_a_replica_taken_for_gone_comes_back_at_its_next_check(world, suite):
    """If another replica ended this one's row (it stalled past the TTL), its next check registers it again."""
    app = suite.running["relay"].app
    async with app.store.db.unit_of_work() as session:
        await session.execute(delete(RelayRow).where(RelayRow.id == app.settings.relay_id))
    await app.enforcer.check_once()
    async with app.store.db.unit_of_work() as session:
        assert await session.scalar(select(RelayRow.id).where(RelayRow.id == app.settings.relay_id))
