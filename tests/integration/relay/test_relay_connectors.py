"""Attaching the customer's connector: only an intact file this service issued, for a window open now, with an
attach key the suite still holds; one connector process per window (a copy of the file is refused while the
original is attached); the same connector may come back."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt

import grpc
import pytest

from remotesupport.connections.v1 import connections_pb2 as cp
from remotesupport.connections.v1 import relay_pb2 as rp
from remotesupport.connections.v1 import relay_pb2_grpc
from tests.helpers import expect_error
from tests.integration.relay.peers import TestConnector, send

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz", "connections", "relay")
DENIED, FAILED = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION


def _connector(world, content: bytes, **kw) -> TestConnector:
    connector = TestConnector(world.relay_channel, content, **kw)
    world.connectors.append(connector)
    return connector


def _altered(content: bytes) -> bytes:
    magic, body, signature = content.split(b"\n")[:3]
    raw = bytearray(base64.b64decode(body))
    raw[-3] ^= 0x01  # inside the ticket: the signature no longer matches
    return b"\n".join([magic, base64.b64encode(bytes(raw)), signature, b""])


async def test_forged_altered_and_foreign_files_are_refused(world):
    line = await world.new_line()
    for content in (b"not a connector file", _altered(line.content), b"STFK1\n!!!\n!!!\n"):
        await expect_error(_connector(world, content).attach(), DENIED, "CONNECTOR_FILE_INVALID")
    await _connector(world, line.content).attach()  # the intact file attaches


async def test_a_file_of_a_window_not_yet_open_or_over_is_refused_saying_which(world):
    line = await world.new_line(length=dt.timedelta(minutes=1))
    later = (await world.call("OpenConnection", cp.OpenConnectionRequest(
        parent=line.system, connection_type="connectionTypes/SSH", start_time=world.at(dt.timedelta(hours=3)),
        end_time=world.at(dt.timedelta(hours=4)), reason="later"), "opener")).connection.name
    scheduled = (await world.call("GetServiceConnector", cp.GetServiceConnectorRequest(name=later),
                                  "opener")).service_connector.content
    await expect_error(_connector(world, scheduled).attach(), FAILED, "CONNECTOR_FILE_NOT_YET_VALID",
                       message="opens at")
    world.suite.clock.advance(seconds=61)
    await expect_error(_connector(world, line.content).attach(), FAILED, "CONNECTOR_FILE_EXPIRED",
                       message="ended at")


async def test_a_file_of_a_window_closed_early_is_refused(world):
    line = await world.new_line()
    await world.call("CloseConnection", cp.CloseConnectionRequest(name=line.window), "opener")
    await expect_error(_connector(world, line.content).attach(), FAILED, "WINDOW_NOT_OPEN", message="closed early")


async def test_a_copy_cannot_attach_while_the_original_is_attached(world):
    line = await world.new_line()
    original = _connector(world, line.content)
    await original.attach()
    await expect_error(_connector(world, line.content).attach(), grpc.StatusCode.ALREADY_EXISTS,
                       "CONNECTOR_ALREADY_ATTACHED")
    again = _connector(world, line.content, instance_id=original.instance_id)
    await again.attach()  # the same connector process coming back replaces its old stream
    assert (await original.wait_detached()).final is False
    await again.close()
    for _ in range(40):  # once it is gone, another connector may take the window over
        try:
            await _connector(world, line.content).attach()
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.ALREADY_EXISTS
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the window stayed attached after its connector went away")


async def test_a_tunnel_reaches_only_a_connector_attached_for_its_own_window(world):
    line, other = await world.new_line(), await world.new_line()
    connector = _connector(world, other.content)
    await connector.attach()
    await expect_error(world.tunnel(line).open(), FAILED, "CONNECTOR_NOT_ATTACHED")
    assert connector.dials == []


async def test_malformed_hellos_are_invalid(world):
    line = await world.new_line()
    await expect_error(_connector(world, line.content, instance_id="short").attach(), grpc.StatusCode.INVALID_ARGUMENT,
                       "INVALID_ARGUMENT", field="hello.instance_id")
    call = relay_pb2_grpc.RelayServiceStub(world.relay_channel).AcceptTunnel()
    await send(call, rp.AcceptTunnelRequest(start=rp.AcceptTunnelStart(session=f"{line.system}/sessions/x",
                                                                       dial_key="guess", connected=True)))
    await expect_error(call.read(), DENIED, "PERMISSION_DENIED", message="no dial")
