"""The relay (the connections service's data plane): build it (the connections database and catalog, the
connector signing key, the authz client, the registry, the enforcer) and run its checks. Run as
`python -m services.connections.relay` (port 50055 by default; several replicas may share one PostgreSQL
database: a connector attaches to every replica its file names)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from remotesupport.connections.v1 import relay_pb2_grpc
from services.connections.connection_types import ConnectionTypes
from services.connections.connector_file import ConnectorSigner, load_or_create_signing_key
from services.connections.relay import connectors
from services.connections.relay.enforcement import Enforcer
from services.connections.relay.model import EndReason
from services.connections.relay.policies import SERVICE, build_policies
from services.connections.relay.registry import Registry
from services.connections.relay.servicer import RelayServicer
from services.connections.relay.settings import RelaySettings
from services.connections.relay.store import RelayStore
from services.connections.relay.tunnels import Tunnels
from services.connections.store import Store
from services.kit.app import Deps, remote_authorizer
from services.kit.db import Database, migrate
from services.kit.server import ServerSpec

logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
# Connectors and tunnels ping every 2 s to notice a dead relay (or a dead peer) within seconds, also on an idle
# stream; grpc's default server policy (one ping per 5 minutes without data, then GOAWAY "too_many_pings")
# would cut them. At most one ping a second is taken.
KEEPALIVE = [("grpc.keepalive_permit_without_calls", 1),
             ("grpc.http2.min_ping_interval_without_data_ms", 1000),  # the server side: pings it accepts
             ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000)]


class RelayApp:
    """The running relay: its server spec, its authorizer (also used by the enforcer) and its checks."""

    def __init__(self, spec: ServerSpec, authorizer, channel, store: RelayStore, registry: Registry,
                 enforcer: Enforcer, deps: Deps, settings: RelaySettings) -> None:
        self.spec = spec
        self.authorizer = authorizer
        self._channel = channel
        self.store = store
        self.registry = registry
        self.enforcer = enforcer
        self.clock = deps.clock
        self.address = f"{deps.config.host}:{deps.config.port}"
        self.settings = settings
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.store.register(self.settings.relay_id, self.address, self.clock.now())
        self._task = asyncio.create_task(self.enforcer.run_forever(), name="relay-checks")
        logger.info("relay replica %s started", self.settings.relay_id)

    async def drain(self) -> None:
        """Stopping: cut every live session (RELAY_LOST) and detach every connector (not final: it re-attaches
        to the restarted replica or stays on the others)."""
        for live in list(self.registry.sessions.values()):
            live.cut(EndReason.RELAY_LOST, "the relay replica is stopping")
        for attachment in list(self.registry.attachments.values()):
            connectors.detach(self.registry, attachment, "CONNECTOR_NOT_ATTACHED", "the relay replica is stopping",
                              final=False)
        for _ in range(50):  # let the streams write their last message and record the sessions' ends
            if not self.registry.sessions:
                break
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.store.unregister(self.settings.relay_id)
        await self._channel.close()
        await self.store.close()


async def build(deps: Deps) -> RelayApp:
    settings = RelaySettings.from_env(deps.config)
    migrate(deps.config.database_url, MIGRATIONS)
    database = Database(deps.config.database_url)
    types = ConnectionTypes(await Store(database).connection_types())
    store = RelayStore(database)
    signer: ConnectorSigner = load_or_create_signing_key(settings.signing_key_file)
    authorizer, channel = remote_authorizer(deps.config, deps.service_token)
    registry = Registry()
    tunnels = Tunnels(registry, store, types, deps.clock, settings)
    servicer = RelayServicer(registry, store, signer, tunnels, deps.clock, settings)
    spec = ServerSpec(
        register=lambda server: relay_pb2_grpc.add_RelayServiceServicer_to_server(servicer, server),
        service_names=[SERVICE],
        policies=build_policies(),
        options=KEEPALIVE,
    )
    enforcer = Enforcer(registry, store, authorizer, deps.clock, settings)
    return RelayApp(spec, authorizer, channel, store, registry, enforcer, deps, settings)
