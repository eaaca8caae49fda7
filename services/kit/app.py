"""Running a service: migrations, the authorizer, background tasks, serving and shutdown — the same for all."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Protocol

import grpc

from services.kit import auth, clients, logs
from services.kit.clock import Clock, SystemClock
from services.kit.config import ServiceConfig
from services.kit.server import ServerSpec, create_server, mark_serving, run_until_signalled

logger = logging.getLogger(__name__)


@dataclass
class Deps:
    """What a service is built from: its configuration, its clock and its own service token."""

    config: ServiceConfig
    clock: Clock
    service_token: Callable[[], str]


class App(Protocol):
    """A service: its server spec, its authorizer (None: ask the authz service), and what it runs
    beside serving (sweeps)."""

    spec: ServerSpec
    authorizer: auth.Authorizer | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    app: App
    health: object
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 0.5) -> None:
        await self.server.stop(grace)
        await self.app.stop()
        for close in self.closers:
            await close()


def remote_authorizer(config: ServiceConfig, token: Callable[[], str]) -> tuple[auth.RemoteAuthorizer, grpc.aio.Channel]:
    channel = clients.channel(config.authz_addr)
    return auth.RemoteAuthorizer(channel, token, config.authz_deadline_s), channel


async def start(deps: Deps, build: Callable[[Deps], Awaitable[App]]) -> Running:
    """Build and start a service (the process entry point and in-process tests both use this)."""
    app = await build(deps)
    closers: list[Callable[[], Awaitable[None]]] = []
    authorizer = app.authorizer
    if authorizer is None:
        authorizer, channel = remote_authorizer(deps.config, deps.service_token)
        closers.append(lambda: channel.close())
    server, port, health = await create_server(deps.config, app.spec, authorizer)
    await app.start()
    await server.start()
    await mark_serving(health, app.spec.service_names)
    return Running(server, port, app, health, closers)


def main(service: str, build: Callable[[Deps], Awaitable[App]]) -> None:
    """Process entry point: configuration from the environment, JSON logs, serve until signalled."""
    config = ServiceConfig.from_env(service)
    logs.setup(service)
    deps = Deps(config, SystemClock(), clients.TokenFile(config.service_token_file))

    async def serve() -> None:
        running = await start(deps, build)
        logger.info("%s serving on %s:%d", service, config.host, running.port)
        await run_until_signalled(running.server, running.health, running.app.spec.service_names,
                                  config.grace_s, running.app.stop)
        for close in running.closers:
            await close()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
