"""authz not answering ends live tunnels (fail closed): the relay's re-check gets no decision, so it cuts
within 2 s and records why; no new tunnel is admitted while authz is down. (Its own module: it stops authz.)"""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from services.connections.tables import SessionRow
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz", "connections", "relay")


async def test_authz_down_cuts_live_tunnels_and_admits_none(world, suite):
    line = await world.new_line()
    await world.attached(line)
    tunnel = world.tunnel(line)
    admitted = await tunnel.open()
    await tunnel.send(b"ping")
    assert await tunnel.receive(4) == b"ping"
    await suite.stop_service("authz")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as cut:
        while (await asyncio.wait_for(tunnel.call.read(), 5)) is not grpc.aio.EOF:
            pass
    assert time.monotonic() - started < 2.0
    assert cut.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "AUTHZ_UNAVAILABLE" in cut.value.details()
    await expect_error(world.tunnel(line).open(), grpc.StatusCode.UNAVAILABLE, "AUTHZ_UNAVAILABLE")
    store = suite.running["relay"].app.store
    session_id = admitted.session.rsplit("/", 1)[1]
    for _ in range(50):
        async with store.db.unit_of_work() as session:
            row = await session.get(SessionRow, session_id)
            if row.state == "ENDED":
                break
        await asyncio.sleep(0.05)
    assert (row.state, row.end_reason) == ("ENDED", "AUTHZ_UNAVAILABLE")
