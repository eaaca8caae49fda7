"""validate_only (AIP-163) on SetUpConnection, OpenConnection and CloseConnection: every check the call makes -
authorization, fields, the system's state - and no change. The gateway's composite calls ask these first, so
that they refuse before their first effect."""
from __future__ import annotations

import datetime as dt

import grpc
import pytest

from remotesupport.connections.v1 import connections_pb2 as cp
from tests.helpers import expect_error
from tests.integration.connections.world import HOUR, World

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def windows_of(world: World, system: str) -> list[cp.Connection]:
    return list((await world.call("ListConnections", cp.ListConnectionsRequest(parent=system), "member")).connections)


async def test_a_validated_set_up_answers_as_the_call_would_and_stores_nothing(world):
    system = await world.new_system()
    request = cp.SetUpConnectionRequest(parent=system, connection_type="connectionTypes/SSH",
                                        parameters={"host": "prd01.example.com"}, validate_only=True)
    answer = await world.call("SetUpConnection", request, "opener")
    assert answer.created and answer.connection_setup.name == f"{system}/connectionSetups/SSH"
    listed = await world.call("ListConnectionSetups", cp.ListConnectionSetupsRequest(parent=system), "member")
    assert list(listed.connection_setups) == []
    request.parameters["bogus"] = "x"
    await expect_error(world.call("SetUpConnection", request, "opener"), grpc.StatusCode.INVALID_ARGUMENT,
                       "INVALID_ARGUMENT", "parameters.bogus")
    del request.parameters["bogus"]
    await expect_error(world.call("SetUpConnection", request, "member"), grpc.StatusCode.PERMISSION_DENIED,
                       "PERMISSION_DENIED")


async def test_a_validated_open_checks_the_state_and_opens_nothing(world):
    system = await world.new_system()
    request = cp.OpenConnectionRequest(parent=system, connection_type="connectionTypes/SSH",
                                       end_time=world.at(HOUR), reason="check", validate_only=True)
    await expect_error(world.call("OpenConnection", request, "opener"), grpc.StatusCode.FAILED_PRECONDITION,
                       "FAILED_PRECONDITION")  # not set up
    await world.set_up(system)
    answer = await world.call("OpenConnection", request, "opener")
    assert answer.connection.name.startswith(f"{system}/connections/") and answer.connection.reason == "check"
    assert await windows_of(world, system) == []
    opened = await world.open(system, start=dt.timedelta(0))
    await expect_error(world.call("OpenConnection", request, "opener"), grpc.StatusCode.FAILED_PRECONDITION,
                       "CONFLICT")  # overlaps the window just opened
    await expect_error(world.call("OpenConnection", request, "member"), grpc.StatusCode.PERMISSION_DENIED,
                       "PERMISSION_DENIED")
    assert [w.name for w in await windows_of(world, system)] == [opened.name]


async def test_a_validated_close_leaves_the_window_open(world):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0))
    request = cp.CloseConnectionRequest(name=window.name, validate_only=True)
    answer = await world.call("CloseConnection", request, "opener")
    assert answer.connection.state == cp.CONNECTION_STATE_CLOSED
    still = await world.call("GetConnection", cp.GetConnectionRequest(name=window.name), "member")
    assert still.connection.state == cp.CONNECTION_STATE_OPEN
    await expect_error(world.call("CloseConnection", request, "member"), grpc.StatusCode.PERMISSION_DENIED,
                       "PERMISSION_DENIED")
    await world.call("CloseConnection", cp.CloseConnectionRequest(name=window.name), "opener")
    await expect_error(world.call("CloseConnection", request, "opener"), grpc.StatusCode.FAILED_PRECONDITION,
                       "FAILED_PRECONDITION")  # already closed
