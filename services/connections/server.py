"""The connections service: build it (migrations, store, catalog, signing key, authz channel) and run its
sweep. Run as `python -m services.connections.server`."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from remotesupport.connections.v1 import connections_pb2, connections_pb2_grpc
from services.connections import events, windows
from services.connections import notices as connection_notices
from services.connections.assignment_client import AuthzAssignments
from services.connections.connection_types import ConnectionTypes
from services.connections.connector_file import ConnectorSigner, load_or_create_signing_key
from services.connections.incidents import IncidentWorkflow
from services.connections.policies import SERVICE, build_policies
from services.connections.servicer import ConnectionsServicer
from services.connections.settings import ConnectionsSettings
from services.connections.store import Store
from services.kit import clients, feed, metrics, notices, siem, tracing
from services.kit.app import Deps, main
from services.kit.db import Database, migrate
from services.kit.server import ServerSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: the windows whose automatic close it recorded, the assignments it reconciled, and the
    windows it warned of their end."""

    expired: list[str] = field(default_factory=list)
    reconciled: int = 0
    closing: list[str] = field(default_factory=list)


class ConnectionsApp:
    """The running service: its server spec and its background sweep."""

    authorizer = None  # ask the authz service

    def __init__(self, spec: ServerSpec, store: Store, deps: Deps, settings: ConnectionsSettings,
                 workflow: IncidentWorkflow, signer: ConnectorSigner, authz_channel: grpc.aio.Channel,
                 exporter: siem.Exporter | None = None, mails: notices.EventMailer | None = None) -> None:
        self.spec = spec
        self.store = store
        self.clock = deps.clock
        self.settings = settings
        self.workflow = workflow
        self.signer = signer
        self._authz_channel = authz_channel
        self._sweep_task: asyncio.Task | None = None
        self._sweep_lock = asyncio.Lock()
        self.exporter = exporter  # the SIEM export, when configured
        self._export_task: asyncio.Task | None = None
        self.mails = mails  # the event mails, when configured
        self._mail_task: asyncio.Task | None = None

    async def start(self) -> None:
        self._sweep_task = asyncio.create_task(self._sweep_forever(), name="connections-sweep")
        if self.exporter is not None:
            self._export_task = asyncio.create_task(self.exporter.run_forever(), name="connections-siem-export")
        if self.mails is not None:
            self._mail_task = asyncio.create_task(self.mails.run_forever(), name="connections-event-mails")

    async def stop(self) -> None:
        for task in (self._sweep_task, self._export_task, self._mail_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweep_task = self._export_task = self._mail_task = None
        if self.exporter is not None:
            await self.exporter.stop()
        await self._authz_channel.close()
        await self.store.close()

    async def sweep_once(self) -> SweepResult:
        """Record expired windows once each and reconcile support assignments left unsure."""
        async with self._sweep_lock:
            with tracing.background("connections sweep") as span:
                expired = await windows.record_expired(self.store, self.clock)
                closing = await windows.warn_closing(self.store, self.clock, self.settings.closing_warning)
                reconciled = await self.workflow.reconcile_assignments(self.settings.assignment_grace)
                tracing.annotate(span, {"remotesupport.windows_expired": len(expired),
                                        "remotesupport.assignments_reconciled": reconciled})
        metrics.sweep_done("auto_close", len(expired), service="connections")
        metrics.sweep_done("reconcile", reconciled, service="connections")
        metrics.sweep_done("closing_warning", len(closing), service="connections")
        return SweepResult(expired, reconciled, closing)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep_once()
            except Exception:  # noqa: BLE001 - a failed sweep is logged and retried at the next interval
                logger.exception("connections sweep failed; retrying in %.0fs", self.settings.sweep_interval_s)


async def build(deps: Deps, *, siem_settings: siem.SiemSettings | None = None) -> ConnectionsApp:
    settings = ConnectionsSettings.from_env(deps.config)
    siem_settings = siem_settings or siem.SiemSettings.from_env()
    siem_settings.check(deps.config.profile)
    migrate(deps.config.database_url, Path(__file__).parent / "migrations")
    store = Store(Database(deps.config.database_url))
    connection_types = ConnectionTypes(await store.connection_types())
    signer = load_or_create_signing_key(settings.signing_key_file)
    authz_channel = clients.channel(deps.config.authz_addr)
    assignments = AuthzAssignments(authz_channel, deps.service_token, deps.config.authz_deadline_s)
    workflow = IncidentWorkflow(store, deps.clock, assignments)
    notifier = feed.Notifier()
    store.committed = notifier.wake
    outbox = events.ConnectionsEvents(store)
    watch = feed.Feed(events.SOURCE, outbox, events.RULES, notifier, connections_pb2.WatchEventsResponse,
                      heartbeat_s=deps.config.events_heartbeat_s,
                      max_watches=deps.config.events_max_watches,
                      max_per_user=deps.config.events_max_watches_per_user)
    exporter = siem.Exporter(events.SOURCE, outbox, siem_settings, notifier) if siem_settings.address else None
    mails = notices.build(notices.MailSettings.from_env(), events.SOURCE, events.ConnectionsEvents(store, "mail"),
                          connection_notices.recipients_of(store), authz_channel, deps.service_token,
                          deps.config.authz_deadline_s, notifier, deps.clock)
    servicer = ConnectionsServicer(store, deps.clock, connection_types, signer, workflow, settings.relay_addresses,
                                   watch)
    spec = ServerSpec(
        register=lambda server: connections_pb2_grpc.add_ConnectionsServiceServicer_to_server(servicer, server),
        service_names=[SERVICE],
        policies=build_policies(store),
    )
    return ConnectionsApp(spec, store, deps, settings, workflow, signer, authz_channel, exporter, mails)


if __name__ == "__main__":
    main("connections", build)
