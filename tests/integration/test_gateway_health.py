"""The gateway's health: its own service and the server as a whole are SERVING while it serves; each service
it forwards is as healthy as the service that owns it (NOT_SERVING while the owner is down, SERVING again
when it is back)."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

import gateway.server

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FORWARDED = {
    "authz": "remotesupport.authz.v1.AuthzService",
    "depot": "remotesupport.depot.v1.LogonDepotService",
    "connections": "remotesupport.connections.v1.ConnectionsService",
}
OWN = ("", "remotesupport.gateway.v1.RemoteSupportService")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(suite):
    await suite.start_service("gateway", build=gateway.server.build)
    return health_pb2_grpc.HealthStub(suite.channels["gateway"])


async def status(stub, name: str):
    return (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)).status


async def becomes(stub, name: str, expected, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (current := await status(stub, name)) != expected:
        assert asyncio.get_running_loop().time() < deadline, \
            f"{name!r} stayed {health_pb2.HealthCheckResponse.ServingStatus.Name(current)}"
        await asyncio.sleep(0.05)


async def test_every_name_is_serving_while_every_owner_serves(gw):
    for name in OWN:
        assert await status(gw, name) == SERVING
    for name in FORWARDED.values():
        await becomes(gw, name, SERVING)


async def test_a_forwarded_service_follows_its_owner_down_and_back_up(gw, suite):
    for name in FORWARDED.values():
        await becomes(gw, name, SERVING)
    port = int(suite.addr["depot"].rsplit(":", 1)[1])
    await suite.stop_service("depot")
    try:
        await becomes(gw, FORWARDED["depot"], NOT_SERVING)
        for name in (*OWN, FORWARDED["authz"], FORWARDED["connections"]):  # the rest is unaffected
            assert await status(gw, name) == SERVING
    finally:
        config = suite.config  # the depot back on the address the gateway forwards to
        suite.config = lambda service: dataclasses.replace(config(service), port=port) \
            if service == "depot" else config(service)
        try:
            await suite.start_service("depot")
        finally:
            suite.config = config
    await becomes(gw, FORWARDED["depot"], SERVING)
