"""Admission: a tunnel passes only when authz allows it (an engineer processing an in-process incident of the
system, or the customer's own user with OPEN_REMOTE_CONNECTIONS), the window is open, the system's set-up
has a target and the customer's connector is attached. Every refusal names its condition and is recorded for
the customer (not when the caller is another customer's user)."""
from __future__ import annotations

import datetime as dt

import grpc
import pytest

from remotesupport.connections.v1 import connections_pb2 as cp
from remotesupport.connections.v1 import relay_pb2 as rp
from remotesupport.connections.v1 import relay_pb2_grpc
from tests.helpers import expect_error
from tests.integration.relay.peers import TestConnector, Tunnel, send

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz", "connections", "relay")
DENIED, FAILED = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION


async def _refused(world, line, principal: str, code, reason: str, incident: str = "", **expected) -> None:
    await expect_error(world.tunnel(line, principal, incident).open(), code, reason, **expected)


async def _refusals(world, line) -> list[cp.Session]:
    return [s for s in await world.sessions(line) if s.state == cp.SESSION_STATE_REFUSED]


async def test_an_engineer_without_the_incident_is_refused_and_it_is_recorded(world):
    line = await world.new_line()
    await world.attached(line)
    await _refused(world, line, "unassigned", DENIED, "NO_SUPPORT_ASSIGNMENT")
    [refusal] = await _refusals(world, line)
    assert refusal.principal == world.users["unassigned"] and refusal.refusal_reason == "NO_SUPPORT_ASSIGNMENT"
    assert refusal.connection == line.window and refusal.bytes_to_target == 0


async def test_an_engineer_naming_another_incident_is_refused(world):
    line, other = await world.new_line(), await world.new_line()
    await world.attached(line)
    await _refused(world, line, "engineer", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT",
                   incident="customers/1/incidents/x")
    await _refused(world, line, "engineer", DENIED, "NO_SUPPORT_ASSIGNMENT", incident=other.incident)


async def test_customer_users_need_open_remote_connections(world):
    line = await world.new_line()
    await world.attached(line)
    await _refused(world, line, "member", DENIED, "PERMISSION_DENIED")
    await _refused(world, line, "admin", DENIED, "PERMISSION_DENIED")
    await _refused(world, line, "other", DENIED, "PERMISSION_DENIED")  # another customer's user
    principals = {s.principal for s in await _refusals(world, line)}
    assert principals == {world.users["member"]}  # the platform admin and the other customer are not recorded
    admitted = await world.tunnel(line, "opener").open()  # the customer tests its own line
    session = await world.session(admitted.session)
    assert session.principal == world.users["opener"] and session.incident == ""


async def test_no_token_is_unauthenticated(world):
    line = await world.new_line()
    call = relay_pb2_grpc.RelayServiceStub(world.relay_channel).OpenTunnel()
    await send(call, rp.OpenTunnelRequest(start=rp.OpenTunnelStart(connection=line.window)))
    await expect_error(call.read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_the_window_must_be_open(world):
    line = await world.new_line()
    await world.attached(line)
    later = (await world.call("OpenConnection", cp.OpenConnectionRequest(
        parent=line.system, connection_type="connectionTypes/SSH",
        start_time=world.at(dt.timedelta(hours=5)), end_time=world.at(dt.timedelta(hours=6)), reason="later"),
        "opener")).connection.name
    await expect_error(Tunnel(world.relay_channel, world.tokens["engineer"], later).open(), FAILED,
                       "WINDOW_NOT_OPEN", message="scheduled")
    await world.call("CloseConnection", cp.CloseConnectionRequest(name=line.window), "opener")
    await _refused(world, line, "engineer", FAILED, "WINDOW_NOT_OPEN", message="closed early")
    refusals = await _refusals(world, line)
    assert sorted((s.connection, s.refusal_reason) for s in refusals) == sorted(
        [(later, "WINDOW_NOT_OPEN"), (line.window, "WINDOW_NOT_OPEN")])


async def test_the_connector_must_be_attached(world):
    line = await world.new_line()
    await _refused(world, line, "engineer", FAILED, "CONNECTOR_NOT_ATTACHED", message="rsctl connector run")


async def test_a_type_without_a_target_is_refused(world):
    line = await world.new_line(code="GOTOASSIST", parameters={})
    await _refused(world, line, "engineer", FAILED, "FAILED_PRECONDITION", message="no network target")


async def test_a_connector_that_cannot_connect_ends_the_session_unreachable(world):
    line = await world.new_line()
    connector = TestConnector(world.relay_channel, line.content, refuse=True)
    await connector.attach()
    world.connectors.append(connector)
    await _refused(world, line, "engineer", grpc.StatusCode.UNAVAILABLE, "TARGET_UNREACHABLE",
                   message="refused by the test")
    [session] = await world.sessions(line)
    assert session.state == cp.SESSION_STATE_ENDED
    assert session.end_reason == cp.SESSION_END_REASON_TARGET_UNREACHABLE
    assert [d.target for d in connector.dials] == [f"127.0.0.1:{world.echo_port}"]


async def test_malformed_starts_are_invalid(world):
    line = await world.new_line()
    await expect_error(Tunnel(world.relay_channel, world.tokens["engineer"], "systems/1").open(),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="start.connection")
    call = relay_pb2_grpc.RelayServiceStub(world.relay_channel).OpenTunnel(
        metadata=world.suite.md(world.tokens["engineer"]))
    await send(call, rp.OpenTunnelRequest(data=b"hello"))
    await expect_error(call.read(), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="start")
    assert world.echo.accepted >= 0 and line.window
