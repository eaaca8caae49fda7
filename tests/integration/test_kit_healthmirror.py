"""kit.healthmirror: a name's status on this server follows the owning server's status for it, through every
change, while the owner is unreachable (NOT_SERVING, never a stale SERVING) and after it comes back."""
from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.kit import clients, healthmirror
from services.kit.healthmirror import HealthMirror

NAME = "remotesupport.depot.v1.LogonDepotService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def owner(port: int) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A server owning NAME: grpc's own health servicer, as every service of the suite serves it."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    return server, servicer


async def status_becomes(mirrored: health.aio.HealthServicer, expected, timeout: float = 5.0) -> None:
    request = health_pb2.HealthCheckRequest(service=NAME)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = (await mirrored.Check(request, None)).status
        if status == expected:
            return
        assert asyncio.get_running_loop().time() < deadline, \
            f"status stayed {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"
        await asyncio.sleep(0.02)


@pytest.fixture
def fast_retry(monkeypatch):
    monkeypatch.setattr(healthmirror, "MAX_RETRY_S", 0.2)


async def test_the_status_follows_the_owner_down_and_back_up(fast_retry):
    port = free_port()
    server, servicer = await owner(port)
    await servicer.set(NAME, SERVING)
    mirrored = health.aio.HealthServicer()
    channel = clients.channel(f"127.0.0.1:{port}")
    mirror = HealthMirror(mirrored, {NAME: channel})
    try:
        await mirror.start()
        await status_becomes(mirrored, SERVING)
        await servicer.set(NAME, NOT_SERVING)  # the owner says so
        await status_becomes(mirrored, NOT_SERVING)
        await servicer.set(NAME, SERVING)
        await status_becomes(mirrored, SERVING)

        await server.stop(0)  # the owner is gone: not a stale SERVING
        await status_becomes(mirrored, NOT_SERVING)

        server, servicer = await owner(port)  # back on the same address: followed again
        await servicer.set(NAME, SERVING)
        await status_becomes(mirrored, SERVING)
    finally:
        await mirror.stop()
        await server.stop(0)
        await channel.close()


async def test_not_serving_until_the_owner_first_answers_and_stop_is_final(fast_retry):
    port = free_port()  # nothing listens yet
    mirrored = health.aio.HealthServicer()
    channel = clients.channel(f"127.0.0.1:{port}")
    mirror = HealthMirror(mirrored, {NAME: channel})
    server = None
    try:
        await mirror.start()
        assert mirror.names == [NAME]
        await status_becomes(mirrored, NOT_SERVING, timeout=0.1)
        await asyncio.sleep(0.5)  # several failed attempts later: still NOT_SERVING
        await status_becomes(mirrored, NOT_SERVING, timeout=0.1)
        server, servicer = await owner(port)
        await servicer.set(NAME, SERVING)
        await status_becomes(mirrored, SERVING)
        await mirror.stop()
        await mirror.stop()  # idempotent
        await servicer.set(NAME, NOT_SERVING)  # no longer followed once stopped
        await asyncio.sleep(0.3)
        await status_becomes(mirrored, SERVING, timeout=0.1)
    finally:
        await mirror.stop()
        if server is not None:
            await server.stop(0)
        await channel.close()


async def test_waiting_for_an_absent_owner_leaves_the_forwarding_connection_alone():
    """What the gateway relies on: its mirror waits for an owner that has not started yet, and calls forwarded
    on another channel to the same address must work the moment the owner is up (a shared connection would
    be in its reconnect backoff and fail them at once with UNAVAILABLE, as this call did when the two channels
    shared one)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    watched = clients.channel(address, own_connection=True)
    forwarding = clients.channel(address)
    mirror = HealthMirror(health.aio.HealthServicer(), {NAME: watched})
    server = None
    try:
        await mirror.start()
        await asyncio.sleep(1.5)  # the watch has tried to connect, and failed, more than once
        server, servicer = await owner(port)
        await servicer.set(NAME, SERVING)
        call = health_pb2_grpc.HealthStub(forwarding).Check(health_pb2.HealthCheckRequest(service=NAME), timeout=2)
        assert (await call).status == SERVING
    finally:
        await mirror.stop()
        if server is not None:
            await server.stop(0)
        await watched.close()
        await forwarding.close()
