"""The in-process suite (tests/harness.Suite: real authz, connections, depot and gateway servers on fresh
databases, one ManualClock) running on an event loop of its own in a background thread, so that proof tests
can be plain functions: hypothesis drives them, blocking stubs call the servers, and `run(coro)` executes a
coroutine (a concurrent load, a sweep) on the servers' loop.

Each service keeps the port it got first, so a restarted service (e.g. the depot with other settings) is
found again by the other services, the gateway and the tests' channels."""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Awaitable, TypeVar

import grpc
import pytest

from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2_grpc
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.depot.settings import DepotSettings
from services.kit.config import ServiceConfig
from tests.harness import Suite

T = TypeVar("T")
SYNC_STUBS = {
    "authz": authz_pb2_grpc.AuthzServiceStub,
    "connections": connections_pb2_grpc.ConnectionsServiceStub,
    "depot": depot_pb2_grpc.LogonDepotServiceStub,
    "gateway": gateway_pb2_grpc.RemoteSupportServiceStub,
}
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024)]


class StickySuite(Suite):
    """The harness's suite, each service on the port it was first given."""

    def __init__(self, backend: str, tmp: Path) -> None:
        super().__init__(backend, tmp)
        self.ports: dict[str, int] = {}

    def config(self, service: str) -> ServiceConfig:
        return dataclasses.replace(super().config(service), port=self.ports.get(service, 0))

    async def start_service(self, service: str, build=None, **build_kwargs):
        running = await super().start_service(service, build, **build_kwargs)
        self.ports[service] = running.port
        return running


class Live:
    """The suite on a background loop, with blocking stubs for the tests."""

    def __init__(self, backend: str, tmp: Path, services=("authz", "connections", "depot", "gateway")) -> None:
        self.backend = backend
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"proof-suite-{backend}", daemon=True)
        self.thread.start()
        self.suite = StickySuite(backend, tmp)
        self._channels: dict[str, grpc.Channel] = {}
        self.customer_admins: dict = {}  # customer number -> its user administrators (tests.proof.world.Actors)
        # the tests drive connections' sweep by hand (row 12 proves what one sweep records): no background pass
        # of its own may get there first (procs.py sets the same for the process-based rows)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RS_CONNECTIONS_SWEEP_INTERVAL_S", "3600")
            self.run(self.suite.start(services), timeout=180)

    # --- running coroutines on the servers' loop ---------------------------------------------------------
    def submit(self, coro: Awaitable[T]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Awaitable[T], timeout: float | None = 600) -> T:
        return self.submit(coro).result(timeout)

    # --- calling -----------------------------------------------------------------------------------------
    @property
    def clock(self):
        return self.suite.clock

    @property
    def admin_token(self) -> str:
        return self.suite.admin_token

    @property
    def mail_dir(self) -> Path:
        """Where the suite's mail sink (tests.harness.Suite.mail) writes every message authz sends."""
        return self.suite.mail.folder

    def address(self, service: str) -> str:
        return self.suite.addr[service]

    def channel(self, service: str) -> grpc.Channel:
        address = self.address(service)
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        return channel

    def stub(self, service: str, via: str | None = None):
        """A blocking stub of `service`, on its own server or on `via` (the gateway's pass-through)."""
        return SYNC_STUBS[service](self.channel(via or service))

    def service_token(self, service: str) -> str:
        return (self.suite.var / "secrets" / f"{service}.token").read_text().strip()

    # --- the depot's settings and background work ---------------------------------------------------------
    def depot_app(self):
        return self.suite.running["depot"].app

    def depot_settings(self) -> DepotSettings:
        return DepotSettings.from_env(self.suite.config("depot"))

    def restart_depot(self, **settings) -> None:
        """Restart the depot on the same database, port and master key; background work off unless asked."""
        base = self.depot_settings()
        merged = dataclasses.replace(base, **{"background": False, **settings})

        async def restart() -> None:
            await self.suite.stop_service("depot")
            await self.suite.start_service("depot", settings=merged)
        self.run(restart(), timeout=120)

    def sweep(self) -> int:
        return self.run(self.depot_app().sweep_once())

    def rewrap_all(self) -> int:
        async def rewrap() -> int:
            total = 0
            while moved := await self.depot_app().rewrap_once():
                total += moved
            return total
        return self.run(rewrap())

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        try:
            self.run(self.suite.stop(), timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
