"""Webhook deliveries: made from the depot's log (`Fanout`, an outbox reader: the deliveries of a batch of events
and the mark past them in one transaction) and from the connections service's feed (`ConnectionsFollower`: one
watch per customer with an endpoint for its types, as the depot's service account; the deliveries of a response
and its cursor in one transaction), so every committed event becomes each matching endpoint's delivery exactly
once. `DepotDeliveries` is the kit DeliveryWorker's store: it leases due deliveries (a claim moves their next
try past the send, so two replicas never send one at once) and parks a delivery with a WEBHOOK_DELIVERY_FAILED
log event in the same transaction (mailed to the endpoint's creator)."""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import math
import uuid
from typing import Callable, Sequence

import grpc
from google.protobuf import json_format
from sqlalchemy import select, update

from remotesupport.common.v1 import events_pb2
from remotesupport.connections.v1 import connections_pb2, connections_pb2_grpc
from services.depot import audit
from services.depot.deps import Depot
from services.depot.tables import WebhookDeliveryRow, WebhookRow, WebhookSourceRow
from services.depot.webhooks import DELIVERED, FAILED, NEVER_DELIVERED, PENDING, delivery_name, types_of
from services.kit import feed
from services.kit.clock import as_utc
from services.kit.db import upsert
from services.kit.errors import DataLoss
from services.kit.outbox import OutboxReader
from services.kit.webhooks import DeliveryWorker, Due, Sender, WebhookSettings

logger = logging.getLogger(__name__)
DEPOT_SOURCE = "depot"
CONNECTIONS_SOURCE = "connections"


def body_of(source: str, customer: str, event: feed.FeedEvent) -> str:
    return _event_body(feed.to_proto(source, customer, event))


def _deliveries(hooks: Sequence[WebhookRow], customer: str, events, now: dt.datetime,
                body: Callable[[object], str], event_id: Callable[[object], str], type_of: Callable[[object], str]
                ) -> list[dict]:
    rows = []
    for event in events:
        kind = type_of(event)
        if kind in NEVER_DELIVERED:
            continue
        for hook in hooks:
            if kind in types_of(hook):
                rows.append(dict(id=uuid.uuid4().hex, webhook_id=hook.id, customer=customer, event_id=event_id(event),
                                 event_type=kind, body=body(event), state=PENDING, attempts=0, create_time=now,
                                 next_attempt_time=now, last_error=""))
    return rows


async def _insert(session, rows: list[dict]) -> None:
    """Insert deliveries, skipping any an earlier pass made (one per endpoint and event)."""
    for row in rows:
        keys = {"webhook_id": row["webhook_id"], "event_id": row["event_id"]}
        values = {k: v for k, v in row.items() if k not in keys}
        await session.execute(upsert(session, WebhookDeliveryRow.__table__, keys, values,
                                     on_conflict={"webhook_id": row["webhook_id"]}))


async def _hooks(session, customer: str) -> list[WebhookRow]:
    return list((await session.scalars(select(WebhookRow).where(WebhookRow.customer == customer))).all())


class Fanout(OutboxReader):
    """The depot log's events to its customers' endpoints."""

    what = "webhook fan-out of the depot log"

    def __init__(self, depot: Depot, outbox, notifier: feed.Notifier, wake: Callable[[], None],
                 interval_s: float = 1.0, batch: int = 200) -> None:
        super().__init__(outbox, notifier, interval_s, batch)
        self.depot, self.wake = depot, wake

    async def handle(self, customer: str, events: Sequence[feed.FeedEvent]) -> int:
        now = self.depot.clock.now()

        async def work(tx) -> int:
            rows = _deliveries(await _hooks(tx.session, customer), customer, events, now,
                               lambda e: body_of(DEPOT_SOURCE, customer, e),
                               lambda e: feed.to_proto(DEPOT_SOURCE, customer, e).id, lambda e: e.type)
            await _insert(tx.session, rows)
            await tx.outbox_handled("webhook", customer, events[-1].position)
            return len(rows)

        made = await self.depot.store.write_on_engine(work)
        if made:
            self.wake()
        return made


class ConnectionsFollower:
    """Keeps one watch of the connections feed open per customer that has an endpoint for a connections event
    type, resuming from the cursor stored with the last deliveries it made."""

    def __init__(self, depot: Depot, channel: grpc.aio.Channel, service_token: Callable[[], str],
                 wake: Callable[[], None], refresh_s: float = 2.0) -> None:
        self.depot, self.wake, self.refresh_s = depot, wake, refresh_s
        self._stub = connections_pb2_grpc.ConnectionsServiceStub(channel)
        self._token = service_token
        self._watches: dict[str, asyncio.Task] = {}

    async def run_forever(self) -> None:
        try:
            while True:
                try:
                    await self.refresh()
                except Exception:  # noqa: BLE001 - the loop must outlive a failed refresh
                    logger.exception("webhook follower refresh failed; retrying in %.1fs", self.refresh_s)
                await asyncio.sleep(self.refresh_s)
        finally:
            for task in self._watches.values():
                task.cancel()
            await asyncio.gather(*self._watches.values(), return_exceptions=True)
            self._watches.clear()

    async def refresh(self) -> None:
        """Start a watch for each customer that needs one, stop those no endpoint needs any more."""
        async with self.depot.store.read() as tx:
            hooks = list((await tx.session.scalars(select(WebhookRow))).all())
        wanted = {h.customer for h in hooks if any(t not in feed.DEPOT_TYPES for t in types_of(h))}
        for customer in set(self._watches) - wanted:
            self._watches.pop(customer).cancel()
        for customer in wanted:
            task = self._watches.get(customer)
            if task is None or task.done():
                self._watches[customer] = asyncio.create_task(self._follow(customer),
                                                              name=f"webhook-follow-{customer}")

    async def _follow(self, customer: str) -> None:
        """One customer's watch, reopened from the stored cursor whenever it ends."""
        while True:
            try:
                await self._watch(customer)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                logger.warning("webhook follower of customers/%s: the connections feed ended (%s); reopening",
                               customer, error.code().name)
            except Exception:  # noqa: BLE001 - a failed batch is read again from the stored cursor
                logger.exception("webhook follower of customers/%s failed; reopening", customer)
            await asyncio.sleep(self.refresh_s)

    async def _watch(self, customer: str) -> None:
        async with self.depot.store.read() as tx:
            cursor = await tx.session.scalar(select(WebhookSourceRow.cursor).where(
                WebhookSourceRow.customer == customer)) or ""
        call = self._stub.WatchEvents(connections_pb2.WatchEventsRequest(
            parent=f"customers/{customer}", cursor=cursor),
            metadata=(("authorization", f"Bearer {self._token()}"),))
        try:
            async for response in call:
                if response.events or not cursor:
                    await self._record(customer, response.events, response.cursor)
                    cursor = response.cursor
        finally:
            call.cancel()

    async def _record(self, customer: str, events, cursor: str) -> None:
        now = self.depot.clock.now()

        async def work(tx) -> int:
            rows = _deliveries(await _hooks(tx.session, customer), customer, events, now, _event_body,
                               lambda e: e.id, lambda e: events_pb2.EventType.Name(e.type).removeprefix("EVENT_TYPE_"))
            await _insert(tx.session, rows)
            await tx.session.execute(upsert(tx.session, WebhookSourceRow.__table__, {"customer": customer},
                                            {"cursor": cursor}, on_conflict={"cursor": cursor}))
            return len(rows)

        if await self.depot.store.write_on_engine(work):
            self.wake()


def _event_body(event) -> str:
    return json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True), ensure_ascii=False,
                      separators=(",", ":"), sort_keys=True)


class DepotDeliveries:
    """The kit DeliveryWorker's Deliveries over the depot's webhook_deliveries."""

    def __init__(self, depot: Depot, lease_s: float) -> None:
        self.depot, self.lease_s = depot, lease_s

    async def due(self, now: dt.datetime, limit: int) -> list[Due]:
        lease = now + dt.timedelta(seconds=self.lease_s)
        async with self.depot.store.read() as tx:  # mostly nothing is due: no write then
            ids = list((await tx.session.scalars(select(WebhookDeliveryRow.pk).where(
                WebhookDeliveryRow.state == PENDING, WebhookDeliveryRow.next_attempt_time <= now)
                .order_by(WebhookDeliveryRow.next_attempt_time, WebhookDeliveryRow.pk).limit(limit))).all())
        if not ids:
            return []

        async def work(tx) -> list[tuple[WebhookDeliveryRow, WebhookRow]]:
            claimed = list((await tx.session.scalars(
                update(WebhookDeliveryRow).where(WebhookDeliveryRow.pk.in_(ids), WebhookDeliveryRow.state == PENDING,
                                                 WebhookDeliveryRow.next_attempt_time <= now)
                .values(next_attempt_time=lease).returning(WebhookDeliveryRow))).all())
            hooks = {h.id: h for h in (await tx.session.scalars(select(WebhookRow).where(
                WebhookRow.id.in_({c.webhook_id for c in claimed})))).all()}
            return [(c, hooks[c.webhook_id]) for c in claimed if c.webhook_id in hooks]

        claimed = await self.depot.store.write_on_engine(work)
        signer = self.depot.webhook_secrets.signature
        return [Due(delivery_id=row.id, url=hook.url, sign=functools.partial(signer, hook.customer, hook.id,
                                                                             hook.secret_nonce),
                    event_type=row.event_type,
                    body=row.body.encode(), attempts=row.attempts, create_time=as_utc(row.create_time))
                for row, hook in claimed]

    async def _set(self, delivery_id: str, **values) -> WebhookDeliveryRow | None:
        async def work(tx) -> WebhookDeliveryRow | None:
            return (await tx.session.scalars(update(WebhookDeliveryRow).where(
                WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.state == PENDING)
                .values(**values).returning(WebhookDeliveryRow))).first()

        return await self.depot.store.write_on_engine(work)

    async def delivered(self, delivery_id: str, now: dt.datetime, attempts: int) -> None:
        await self._set(delivery_id, state=DELIVERED, attempts=attempts, last_attempt_time=now, delivered_time=now,
                        next_attempt_time=None, last_error="")

    async def retry(self, delivery_id: str, now: dt.datetime, next_time: dt.datetime, error: str,
                    attempts: int) -> None:
        await self._set(delivery_id, attempts=attempts, last_attempt_time=now, next_attempt_time=next_time,
                        last_error=error[:200])

    async def park(self, delivery_id: str, now: dt.datetime, error: str, attempts: int) -> None:
        """FAILED, with a WEBHOOK_DELIVERY_FAILED log event in the same transaction (the log cannot take it:
        parked without it, and said so)."""
        async def work(tx) -> WebhookDeliveryRow | None:
            row = (await tx.session.scalars(update(WebhookDeliveryRow).where(
                WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.state == PENDING)
                .values(state=FAILED, attempts=attempts, last_attempt_time=now, next_attempt_time=None,
                        last_error=error[:200]).returning(WebhookDeliveryRow))).first()
            if row is not None:
                try:
                    await audit.append(tx, self.depot.sealer, row.customer, audit.Event(
                        action=audit.WEBHOOK_DELIVERY_FAILED, actor=audit.DEPOT_ACTOR, outcome=audit.FAILED,
                        logon_data=delivery_name(row), detail=f"{row.event_type} {row.event_id} not delivered "
                                                              f"after {attempts} tries ({error[:200]})"), now)
                except DataLoss:
                    logger.error("webhook delivery %s parked; its log event could not be written",
                                 delivery_name(row))
            return row

        row = await self.depot.store.write_on_engine(work)
        if row is not None:
            logger.warning("webhook delivery %s parked as failed after %d tries (%s)", delivery_name(row), attempts,
                           error[:200])


class WebhookWork:
    """The depot's webhook work in the background: the log's fan-out, the connections follower and the kit's
    delivery worker (woken whenever a delivery becomes due). Tests drive the parts by hand."""

    def __init__(self, depot: Depot, outbox, connections_channel: grpc.aio.Channel,
                 service_token: Callable[[], str], settings: WebhookSettings, notifier: feed.Notifier) -> None:
        self.due = feed.Notifier()
        self.fanout = Fanout(depot, outbox, notifier, self.due.wake, settings.interval_s)
        self.follower = ConnectionsFollower(depot, connections_channel, service_token, self.due.wake)
        self.sender = Sender(settings.timeout_s)
        # a pass sends its batch 10 at a time: the lease outlasts the slowest of them
        lease_s = (math.ceil(settings.batch / 10) + 1) * settings.timeout_s
        self.worker = DeliveryWorker(DepotDeliveries(depot, lease_s=lease_s), self.sender, settings, depot.clock,
                                     self.due)
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self.fanout.run_forever(), name="depot-webhook-fanout"),
                       asyncio.create_task(self.follower.run_forever(), name="depot-webhook-follower"),
                       asyncio.create_task(self.worker.run_forever(), name="depot-webhook-worker")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.sender.close()
