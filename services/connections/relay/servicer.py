"""RelayService: each stream's first message checked, then one use case (attach, tunnel, accept)."""
from __future__ import annotations

import asyncio
import contextlib

from remotesupport.connections.v1 import relay_pb2, relay_pb2_grpc
from services.connections.connector_file import ConnectorSigner
from services.connections.relay import connectors
from services.connections.relay.registry import Registry
from services.connections.relay.settings import RelaySettings
from services.connections.relay.store import RelayStore
from services.connections.relay.tunnels import Tunnels
from services.kit.clock import Clock
from services.kit.errors import InvalidArgument


async def _first(requests, kind: str):
    """The stream's first message, which must be `kind`."""
    async for message in requests:
        if message.WhichOneof("kind") != kind:
            raise InvalidArgument(kind, "must be the stream's first message")
        return getattr(message, kind)
    raise InvalidArgument(kind, "must be the stream's first message (the stream ended without one)")


class RelayServicer(relay_pb2_grpc.RelayServiceServicer):
    def __init__(self, registry: Registry, store: RelayStore, signer: ConnectorSigner, tunnels: Tunnels,
                 clock: Clock, settings: RelaySettings) -> None:
        self.registry = registry
        self.store = store
        self.signer = signer
        self.tunnels = tunnels
        self.clock = clock
        self.settings = settings

    async def AttachConnector(self, requests, context):
        hello = await _first(requests, "hello")
        attachment, attached = await connectors.attach(hello, self.registry, self.store, self.signer, self.clock,
                                                       self.settings)
        gone = asyncio.create_task(_drain(requests, attachment.outbox))
        try:
            await context.write(relay_pb2.AttachConnectorResponse(attached=attached))
            while True:
                item = await attachment.outbox.get()
                if item is _GONE:
                    return
                if isinstance(item, relay_pb2.ConnectorDetached):
                    await context.write(relay_pb2.AttachConnectorResponse(detached=item))
                    return
                await context.write(relay_pb2.AttachConnectorResponse(dial=item))
        finally:
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await gone
            await asyncio.shield(connectors.forget(self.registry, self.store, attachment, self.settings))

    async def OpenTunnel(self, requests, context):
        start = await _first(requests, "start")
        await self.tunnels.run(start, requests, context)

    async def AcceptTunnel(self, requests, context):
        start = await _first(requests, "start")
        await self.tunnels.accept(start, requests, context)


_GONE = object()


async def _drain(requests, outbox: asyncio.Queue) -> None:
    """Read the connector's attach stream to its end (it sends nothing after hello), then say it is gone."""
    try:
        async for _ in requests:
            pass
    finally:
        outbox.put_nowait(_GONE)
