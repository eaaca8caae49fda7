"""The server factory: grpc.aio with the interceptor chain, health checking, reflection and
graceful shutdown. `create_server(...) -> (server, port)`; tests bind port 0 and read the port back."""
from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.kit import auth, interceptors, tls
from services.kit.config import ServiceConfig

logger = logging.getLogger(__name__)


@dataclass
class ServerSpec:
    """What a service contributes: servicers to add, their full service names, and method policies."""

    register: Callable[[grpc.aio.Server], None]
    service_names: list[str]
    policies: dict[str, auth.MethodPolicy]
    generic_handlers: list = field(default_factory=list)
    # channel arguments of this server beyond the kit's (e.g. the relay's keepalive policy for long-lived streams)
    options: list[tuple[str, int]] = field(default_factory=list)
    # names among service_names whose health is another server's (kit.healthmirror): name -> channel to it
    mirrored_health: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @property
    def own_health_names(self) -> list[str]:
        """The service names whose health this server sets itself (SERVING while it serves)."""
        return [name for name in self.service_names if name not in self.mirrored_health]


def server_options(config: ServiceConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", 256),
        ("grpc.so_reuseport", 0),
    ]


async def create_server(config: ServiceConfig, spec: ServerSpec, authorizer: auth.Authorizer):
    """Build (not start) a server on config.host:config.port; returns (server, bound port, health servicer).
    With RS_TLS=1 the port asks every client for a certificate from the suite's CA (services.kit.tls)."""
    credentials = tls.server_credentials(config)
    server = grpc.aio.server(
        interceptors=interceptors.chain(spec.policies, authorizer, peer_check=tls.requires_service_peer(config)),
        options=server_options(config) + list(spec.options),
        maximum_concurrent_rpcs=config_max_rpcs(),
    )
    spec.register(server)
    if spec.generic_handlers:
        server.add_generic_rpc_handlers(tuple(spec.generic_handlers))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(spec.service_names) + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                        reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if credentials is not None:
        port = server.add_secure_port(config.address, credentials)
    else:
        port = server.add_insecure_port(config.address)
    if port == 0:
        raise SystemExit(f"cannot bind {config.address}")
    return server, port, health_servicer


def config_max_rpcs() -> int | None:
    return None


async def mark_serving(health_servicer, service_names: list[str]) -> None:
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


async def mark_not_serving(health_servicer, service_names: list[str]) -> None:
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


async def run_until_signalled(server: grpc.aio.Server, health_servicer, service_names: list[str], grace_s: float,
                              on_stop: Callable[[], Awaitable[None]] | None = None, mirror=None,
                              on_drain: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then stop taking calls and let in-flight ones finish within the grace.
    `service_names` are those whose health this server sets itself; a `mirror` (kit.healthmirror) stops
    following its names, which go NOT_SERVING with the rest. `on_drain` runs before the grace starts."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await mark_serving(health_servicer, service_names)
    await stop.wait()
    logger.info("shutting down: finishing in-flight calls (grace %.1fs)", grace_s)
    if mirror is not None:
        await mirror.stop()
    await mark_not_serving(health_servicer, [*service_names, *(mirror.names if mirror is not None else ())])
    if on_drain is not None:  # e.g. the relay ends its long-lived streams itself, saying why
        await on_drain()
    await server.stop(grace_s)
    if on_stop is not None:
        await on_stop()
    logger.info("stopped")
