"""Running a service: migrations, the authorizer, background tasks, serving and shutdown — the same for all."""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Protocol

import grpc

from services.kit import auth, clients, eventloop, logs, metrics, tls, tracing
from services.kit.clock import Clock, SystemClock
from services.kit.config import DEFAULT_PORTS, KIT_VARIABLES, ServiceConfig, env
from services.kit.healthmirror import HealthMirror
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

    # Optional: `async def drain(self)`, run when the server stops taking calls, before in-flight calls get
    # their grace (a service with long-lived streams ends them there).


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    app: App
    health: object
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    metrics_port: int = 0  # the bound /metrics port, 0 when off
    mirror: HealthMirror | None = None  # the health of services served on another server's behalf

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 0.5) -> None:
        if self.mirror is not None:
            await self.mirror.stop()  # before the app closes the channels it watches
        drain = getattr(self.app, "drain", None)
        if drain is not None:
            await drain()
        await self.server.stop(grace)
        await self.app.stop()
        for close in self.closers:
            await close()


def remote_authorizer(config: ServiceConfig, token: Callable[[], str]) -> tuple[auth.RemoteAuthorizer, grpc.aio.Channel]:
    channel = clients.channel(config.authz_addr, identity=tls.identity_for(config))
    return auth.RemoteAuthorizer(channel, token, config.authz_deadline_s, config.authz_coalesce_us / 1e6), channel


async def start(deps: Deps, build: Callable[[Deps], Awaitable[App]]) -> Running:
    """Build and start a service (the process entry point and in-process tests both use this).
    Channels the service makes while it is built and started present its own TLS identity (RS_TLS=1)."""
    identity = tls.identity_for(deps.config)
    with tls.using(identity):
        app = await build(deps)
        closers: list[Callable[[], Awaitable[None]]] = []
        authorizer = app.authorizer
        if authorizer is None:
            authorizer, channel = remote_authorizer(deps.config, deps.service_token)
            closers.append(lambda: channel.close())
        server, port, health = await create_server(deps.config, app.spec, authorizer)
        await app.start()
    await server.start()
    metrics_port = 0
    if deps.config.metrics_port:
        metrics_port, stop_metrics = metrics.serve(deps.config.metrics_port, deps.config.metrics_host)
        closers.append(lambda: asyncio.to_thread(stop_metrics))
    await mark_serving(health, app.spec.own_health_names)
    mirror = None
    if app.spec.mirrored_health:
        mirror = HealthMirror(health, app.spec.mirrored_health)
        await mirror.start()
    return Running(server, port, app, health, closers, metrics_port, mirror)


_PACKAGES = {"gateway": "gateway", "relay": "services/connections/relay"}
_MODULES = {"gateway": "gateway.server", "relay": "services.connections.relay"}
_VARIABLE = re.compile(r"\b(RS_[A-Z0-9_]+[A-Z0-9])\b")


def service_variables(service: str) -> list[str]:
    """The RS_* variables a service's own modules read (found in its source, so the list stays true)."""
    package = Path(__file__).resolve().parents[2] / _PACKAGES.get(service, f"services/{service}")
    found: set[str] = set()
    for source in sorted(package.rglob("*.py")):
        if "migrations" not in source.parts:
            found.update(_VARIABLE.findall(source.read_text(errors="replace")))
    kit = {n.strip() for names, _, _ in KIT_VARIABLES for n in names.replace("{SVC}", service.upper()).split("/")}
    return sorted(found - kit)


def help_text(service: str) -> str:
    up = service.upper()
    lines = ["configuration (environment variables only; defaults run on a laptop, none is secret):"]
    for name, default, meaning in KIT_VARIABLES:
        if (name.startswith("RS_GATEWAY_") and service != "gateway") or (
                name.startswith("RS_RELAY_") and service != "relay"):
            continue
        lines.append(f"  {name.replace('{SVC}', up):<56} {meaning} [default: {default}]")
    own = service_variables(service)
    if own:
        lines.append(f"\n{service}'s own settings (see docs/PRODUCTION.md):")
        lines.extend(f"  {name}" for name in own)
    lines.append(f"\nServes gRPC (with grpc.health.v1.Health and reflection) on port {DEFAULT_PORTS[service]} "
                 "by default; stops cleanly on SIGTERM/SIGINT. Logs are JSON lines on stderr.")
    return "\n".join(lines)


def parse_args(service: str, argv: list[str] | None = None) -> argparse.Namespace:
    module = _MODULES.get(service, f"services.{service}.server")
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=f"The Remote Support Suite's {service} service.",
        epilog=help_text(service), formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.parse_args(sys.argv[1:] if argv is None else argv)


def main(service: str, build: Callable[[Deps], Awaitable[App]]) -> None:
    """Process entry point: configuration from the environment, JSON logs, serve until signalled.
    `--help` lists the environment variables and exits."""
    parse_args(service)
    config = ServiceConfig.from_env(service)
    eventloop.choice()  # an unknown RS_EVENT_LOOP stops the process before anything starts
    logs.setup(service, env("RS_LOG_LEVEL", "INFO").upper())
    metrics.set_service(service)
    traced = tracing.configure(service)  # OTEL_* variables; off unless they name an exporter or endpoint
    tls.set_process_identity(tls.identity_for(config))
    deps = Deps(config, SystemClock(), clients.TokenFile(config.service_token_file))

    async def serve() -> None:
        with tracing.background(f"{service} start"):  # migrations and set-up: one trace, not one per statement
            running = await start(deps, build)
        logger.info("%s serving on %s:%d%s%s", service, config.host, running.port,
                    " (mutual TLS)" if config.tls else "", " (tracing on)" if traced else "")
        await run_until_signalled(running.server, running.health, running.app.spec.own_health_names,
                                  config.grace_s, running.app.stop, running.mirror,
                                  getattr(running.app, "drain", None))
        for close in running.closers:
            await close()

    try:
        eventloop.run(serve())
    except KeyboardInterrupt:
        pass
    finally:
        tracing.shutdown()  # the spans still buffered are exported before the process ends
