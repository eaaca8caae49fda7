"""The depot service process: `python -m services.depot.server`."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import grpc

from remotesupport.depot.v1 import depot_pb2, depot_pb2_grpc
from services.depot import denials, events, maintenance, masterkeyfile
from services.depot import notices as depot_notices
from services.depot.barrier import LogSealer, WebhookSecrets
from services.depot.connections_client import Connections
from services.depot.deps import Depot
from services.depot.keyring import KeyService
from services.depot.policies import SERVICE, build_policies
from services.depot.servicer import DepotServicer
from services.depot.settings import DepotSettings
from services.depot.store import Store
from services.depot.webhook_delivery import WebhookWork
from services.kit import app, clients, feed, metrics, notices, siem, tracing
from services.kit.db import migrate
from services.kit.server import ServerSpec
from services.kit.webhooks import WebhookSettings

MIGRATIONS = Path(__file__).parent / "migrations"
logger = logging.getLogger(__name__)


class DepotApp:
    """The depot server plus its background work: the expiry sweep, the expiry warnings and the logging of
    counted refusals (denials.py) every `sweep_interval_s`, and re-wrapping after a rotation (started at once by
    RotateKey). Tests drive them with `sweep_once()`, `warn_once()`, `log_denial_counts_once()` and
    `rewrap_once()`."""

    authorizer = None  # ask the authz service

    def __init__(self, spec: ServerSpec, depot: Depot, channel: grpc.aio.Channel, wake: asyncio.Event,
                 exporter: siem.Exporter | None = None, mails: notices.EventMailer | None = None,
                 authz_channel: grpc.aio.Channel | None = None, webhooks: WebhookWork | None = None) -> None:
        self.spec = spec
        self.depot = depot
        self._channel = channel
        self._wake = wake
        self._task: asyncio.Task | None = None
        self.exporter = exporter  # the SIEM export, when configured
        self._export_task: asyncio.Task | None = None
        self.mails = mails  # the event mails, when configured (over a channel to authz of their own)
        self._mail_task: asyncio.Task | None = None
        self._authz_channel = authz_channel
        self.webhooks = webhooks  # fan-out, connections follower and delivery worker (webhook_delivery.py)

    @property
    def settings(self) -> DepotSettings:
        return self.depot.settings

    async def start(self) -> None:
        if self.settings.background:
            self._task = asyncio.create_task(self._run(), name="depot-background")
        if self.exporter is not None:
            self._export_task = asyncio.create_task(self.exporter.run_forever(), name="depot-siem-export")
        if self.mails is not None:
            self._mail_task = asyncio.create_task(self.mails.run_forever(), name="depot-event-mails")
        if self.webhooks is not None:
            self.webhooks.start()

    async def stop(self) -> None:
        for task in (self._task, self._export_task, self._mail_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._export_task = self._mail_task = None
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.exporter is not None:
            await self.exporter.stop()
        await self._channel.close()
        if self._authz_channel is not None:
            await self._authz_channel.close()
        await self.depot.store.close()

    async def sweep_once(self) -> int:
        with tracing.span("depot expiry sweep") as span:
            purged = await maintenance.sweep_once(self.depot)
            tracing.annotate(span, {"remotesupport.handled": purged})
        metrics.sweep_done("expiry", purged, service="depot")
        return purged

    async def warn_once(self) -> int:
        with tracing.span("depot expiry warnings") as span:
            warned = await maintenance.warn_once(self.depot)
            tracing.annotate(span, {"remotesupport.handled": warned})
        metrics.sweep_done("expiry_warning", warned, service="depot")
        return warned

    async def log_denial_counts_once(self) -> int:
        with tracing.span("depot refused-reveal counts") as span:
            counts = await denials.log_counts(self.depot)
            tracing.annotate(span, {"remotesupport.handled": counts})
        return counts

    async def rewrap_once(self) -> int:
        with tracing.span("depot re-wrap batch") as span:
            moved = await maintenance.rewrap_once(self.depot)
            tracing.annotate(span, {"remotesupport.handled": moved})
        metrics.sweep_done("rewrap", moved, service="depot")
        return moved

    async def _run(self) -> None:
        while True:
            try:
                with tracing.background("depot background pass"):  # one trace per pass, its steps as children
                    purged = await self.sweep_once()
                    if purged:
                        logger.info("expiry sweep deleted %d expired entries", purged)
                    warned = await self.warn_once()
                    if warned:
                        logger.info("logged %d warnings of near expirations", warned)
                    counts = await self.log_denial_counts_once()
                    if counts:
                        logger.info("logged %d counts of refused reveals by callers outside the customer", counts)
                    while await self.rewrap_once():
                        await asyncio.sleep(0)  # let calls in between batches
            except Exception:  # noqa: BLE001 - the loop must outlive a failed pass; the next one retries
                logger.exception("depot background pass failed; retrying in %.0fs", self.settings.sweep_interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.sweep_interval_s)
            self._wake.clear()


async def build(deps: app.Deps, *, settings: DepotSettings | None = None,
                siem_settings: siem.SiemSettings | None = None) -> DepotApp:
    """Load the master key first (no key, no service), migrate, open the ring, wire the service."""
    settings = settings or DepotSettings.from_env(deps.config)
    settings.check()
    siem_settings = siem_settings or siem.SiemSettings.from_env()
    siem_settings.check(deps.config.profile)
    master = masterkeyfile.load_at_start(settings.master_key_file, settings.profile)
    url = deps.config.database_url
    sealer = LogSealer(master)
    migrate(url, MIGRATIONS, {"log_sealer": sealer})
    store = Store.open(url)
    keys = KeyService(master, settings)
    try:
        await keys.load(store, deps.clock.now())
    except BaseException:
        await store.close()
        raise
    channel = clients.channel(deps.config.connections_addr)
    depot = Depot(store, keys, sealer, deps.clock, settings, Connections(channel, deps.config.call_deadline_s),
                  webhook_secrets=WebhookSecrets(master))
    wake = asyncio.Event()
    notifier = feed.Notifier()
    store.committed = notifier.wake
    outbox = events.DepotEvents(store)
    watch = feed.Feed(events.SOURCE, outbox, events.RULES, notifier, depot_pb2.WatchEventsResponse,
                      heartbeat_s=deps.config.events_heartbeat_s,
                      max_watches=deps.config.events_max_watches,
                      max_per_user=deps.config.events_max_watches_per_user)
    exporter = siem.Exporter(events.SOURCE, outbox, siem_settings, notifier) if siem_settings.address else None
    mail_settings = notices.MailSettings.from_env()
    authz_channel = clients.channel(deps.config.authz_addr) if mail_settings.enabled else None  # for the mails only
    mails = notices.build(mail_settings, events.SOURCE, events.DepotEvents(store, "mail"),
                          depot_notices.recipients_of(store), authz_channel, deps.service_token,
                          deps.config.authz_deadline_s, notifier, deps.clock)
    webhook_work = WebhookWork(depot, events.DepotEvents(store, "webhook"), channel, deps.service_token,
                               WebhookSettings.from_env(), notifier)
    servicer = DepotServicer(depot, on_rotated=wake.set, events=watch, on_delivery=webhook_work.due.wake)
    spec = ServerSpec(register=lambda server: depot_pb2_grpc.add_LogonDepotServiceServicer_to_server(servicer, server),
                      service_names=[SERVICE], policies=build_policies(depot))
    return DepotApp(spec, depot, channel, wake, exporter, mails, authz_channel, webhook_work)


if __name__ == "__main__":
    app.main("depot", build)
