"""Health of services a server serves on another server's behalf (the gateway's pass-through): each name's
status on this server is the owning server's status for it, watched with grpc.health.v1.Health/Watch.

NOT_SERVING until the owner first answers, and again as soon as the watch breaks (the owner stopped, or cannot
be reached); the watch is then re-opened and waits for the owner (wait_for_ready), so the status follows the
owner back up. Give it channels with connections of their own (services.kit.clients.channel, own_connection):
a watch that waits for an owner not yet started must not put the connection that forwards calls into its
reconnect backoff, where calls fail at once with UNAVAILABLE."""
from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 5.0


class HealthMirror:
    """Mirrors `channels` (service name -> channel to the server that owns it) into `health` (this server's
    grpc_health.v1 aio HealthServicer) until stopped."""

    def __init__(self, health, channels: dict[str, grpc.aio.Channel]) -> None:
        self.health = health
        self.channels = dict(channels)
        self._tasks: list[asyncio.Task] = []

    @property
    def names(self) -> list[str]:
        return list(self.channels)

    async def start(self) -> None:
        for name, channel in self.channels.items():
            await self.health.set(name, NOT_SERVING)
            self._tasks.append(asyncio.get_running_loop().create_task(self._follow(name, channel),
                                                                      name=f"health mirror {name}"))

    async def stop(self) -> None:
        """Stop following (idempotent); the statuses stay as they were last set."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, name: str, channel: grpc.aio.Channel) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        delay = FIRST_RETRY_S
        while True:
            status = None
            try:
                async for answer in stub.Watch(health_pb2.HealthCheckRequest(service=name), wait_for_ready=True):
                    if answer.status != status:
                        status = answer.status
                        await self.health.set(name, status)
                    delay = FIRST_RETRY_S  # the owner answered: the next break retries quickly
            except grpc.RpcError as err:
                logger.info("health of %s: the owning server did not answer (%s); NOT_SERVING", name,
                            err.code().name if err.code() is not None else "error")
            except Exception:  # noqa: BLE001 - whatever breaks the watch, the name must not stay SERVING
                logger.warning("health of %s: watching the owning server failed; NOT_SERVING", name, exc_info=True)
            await self.health.set(name, NOT_SERVING)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)
