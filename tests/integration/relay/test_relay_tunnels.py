"""The relay carries an engineer's bytes to the customer's system and back, unchanged, and records the session."""
from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from remotesupport.connections.v1 import connections_pb2 as cp
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz", "connections", "relay")
ROOT = Path(__file__).resolve().parents[3]


async def test_bytes_pass_unchanged_and_the_session_is_recorded(world):
    line = await world.new_line()
    await world.attached(line)
    tunnel = world.tunnel(line)
    admitted = await tunnel.open()
    assert admitted.target == f"127.0.0.1:{world.echo_port}"
    payload = os.urandom(300_000)
    for start in range(0, len(payload), 60_000):
        await tunnel.send(payload[start:start + 60_000])
    assert await tunnel.receive(len(payload)) == payload
    await tunnel.close_write()
    assert await tunnel.status() == grpc.StatusCode.OK  # once both directions are closed
    session = await world.session(admitted.session)
    assert session.state == cp.SESSION_STATE_ENDED
    assert session.principal == world.users["engineer"] and session.incident == line.incident
    assert session.bytes_to_target == len(payload) == session.bytes_from_target
    assert session.end_reason == cp.SESSION_END_REASON_CLIENT_CLOSED


async def test_the_readme_s_python_example_fetches_through_a_tunnel(world):
    """The README's stubs example, run as written against this relay."""
    source = (ROOT / "README.md").read_text()
    block = source.split("From generated stubs", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block.replace("127.0.0.1:50055", world.suite.addr["relay"]), "README.md", "exec"), namespace)
    line = await world.new_line()
    await world.attached(line)
    assert await namespace["fetch"](world.tokens["engineer"], line.window, b"GET / HTTP/1.0\r\n\r\n") == \
        b"GET / HTTP/1.0\r\n\r\n"  # the echo server answers with the request
    [session] = await world.sessions(line)
    assert session.end_reason == cp.SESSION_END_REASON_CLIENT_CLOSED and session.bytes_from_target == 18


async def test_a_data_message_over_256_kib_ends_the_tunnel_invalid(world):
    line = await world.new_line()
    await world.attached(line)
    tunnel = world.tunnel(line)
    admitted = await tunnel.open()
    await tunnel.send(b"x" * (256 * 1024 + 1))
    await expect_error(tunnel.receive(1), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="data")
    assert (await world.session(admitted.session)).bytes_to_target == 0
