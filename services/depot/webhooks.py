"""Webhooks: a customer's endpoints that receive its events of the chosen types as signed POSTs, at least once
(docs/WEBHOOKS.md). A user administrator of the customer registers them; the signing secret is shown once, in
CreateWebhook's answer, and never stored (barrier.WebhookSecrets derives it from the master key and a nonce).
Deliveries are made from the depot's log and from the connections service's feed (webhook_delivery.py) and sent
by the kit's DeliveryWorker; a parked one is listed as FAILED until redelivered."""
from __future__ import annotations

import logging
import uuid
from urllib.parse import urlsplit

from sqlalchemy import delete, select

from remotesupport.common.v1 import events_pb2
from services.depot.barrier import WebhookSecrets
from services.depot.deps import Depot
from services.depot.settings import PROFILE_PRODUCTION
from services.depot.tables import WebhookDeliveryRow, WebhookRow, WebhookSourceRow
from services.kit import feed
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from services.kit.logs import log
from services.kit.paging import INT32, STR, TIME, PageTokens
from services.kit.validate import Violations
from services.kit.webhooks import url_problem

logger = logging.getLogger(__name__)

MAX_WEBHOOKS = 20  # per customer
MAX_DESCRIPTION = 500
PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"
NEVER_DELIVERED = frozenset({"WEBHOOK_DELIVERY_FAILED"})  # a failing endpoint's news would loop back to it
WEBHOOK_PAGES = PageTokens(TIME, STR)  # ListWebhooks: oldest first, by (create_time, id)
DELIVERY_PAGES = PageTokens(INT32)  # ListWebhookDeliveries: newest first, by pk (an Integer column)


def webhook_name(row: WebhookRow) -> str:
    return f"customers/{row.customer}/webhooks/{row.id}"


def delivery_name(row: WebhookDeliveryRow) -> str:
    return f"customers/{row.customer}/webhooks/{row.webhook_id}/deliveries/{row.id}"


def types_of(row: WebhookRow) -> list[str]:
    return [t for t in row.event_types.split(",") if t]


def _types(numbers, field: str) -> list[str]:
    """The event types asked for, as names without prefix; INVALID_ARGUMENT naming the field otherwise."""
    v = Violations()
    if not numbers:
        v.add(field, "needs at least one event type")
    names = v.enum_names(field, numbers, events_pb2.EventType)
    for i, name in enumerate(names):
        if name in NEVER_DELIVERED:
            v.add(f"{field}[{i}]", f"{name} is never delivered to a webhook (it is mailed to the creator)")
    v.raise_if_any()
    return names


def _check(depot: Depot, url: str, description: str) -> None:
    v = Violations()
    problem = url_problem(url, production=depot.settings.profile == PROFILE_PRODUCTION)
    if problem:
        v.add("webhook.url", problem)
    if len(description) > MAX_DESCRIPTION:
        v.add("webhook.description", f"is {len(description)} characters; at most {MAX_DESCRIPTION}")
    elif any(ord(c) < 32 and c not in "\t" for c in description):
        v.add("webhook.description", "must not hold control characters")
    v.raise_if_any()


async def create(depot: Depot, customer: str, url: str, type_numbers, description: str, creator: str
                 ) -> tuple[WebhookRow, str]:
    """Register an endpoint; returns it with its signing secret (the only time the secret leaves the depot)."""
    types = _types(type_numbers, "webhook.event_types")
    _check(depot, url, description)
    row = WebhookRow(id=uuid.uuid4().hex, customer=customer, url=url, event_types=",".join(types),
                     description=description, secret_nonce=WebhookSecrets.new_nonce(), creator=creator,
                     create_time=depot.clock.now())

    async def work(tx) -> None:
        others = list((await tx.session.scalars(select(WebhookRow).where(WebhookRow.customer == customer))).all())
        if len(others) >= MAX_WEBHOOKS:
            raise ResourceExhausted(f"customers/{customer} has {MAX_WEBHOOKS} webhooks, the most a customer may; "
                                    "delete one first")
        # an endpoint receives what commits from now on: the first of a customer's starts the log's fan-out at
        # the log's end, and the first for connections events the connections feed at its end
        if not others:
            head = await tx.log_head(customer, lock=False)
            await tx.outbox_handled("webhook", customer, head.last_sequence if head is not None else 0)
        if not any(t not in feed.DEPOT_TYPES for other in others for t in types_of(other)):
            await tx.session.execute(delete(WebhookSourceRow).where(WebhookSourceRow.customer == customer))
        tx.session.add(row)

    await depot.store.write_on_engine(work)
    log(logger, logging.INFO, "webhook registered", webhook=webhook_name(row), host=urlsplit(url).hostname or "",
        by=creator, types=row.event_types)
    return row, secret_of(depot, row)


def secret_of(depot: Depot, row: WebhookRow) -> str:
    return depot.webhook_secrets.secret(row.customer, row.id, row.secret_nonce)


async def get(depot: Depot, customer: str, webhook_id: str) -> WebhookRow:
    async with depot.store.read() as tx:
        row = await _webhook(tx, customer, webhook_id)
    return row


async def _webhook(tx, customer: str, webhook_id: str) -> WebhookRow:
    row = await tx.session.scalar(select(WebhookRow).where(WebhookRow.customer == customer,
                                                           WebhookRow.id == webhook_id))
    if row is None:
        raise NotFound(f"webhook customers/{customer}/webhooks/{webhook_id} does not exist")
    return row


async def list_webhooks(depot: Depot, customer: str, size: int, token: str) -> tuple[list[WebhookRow], str]:
    scope = {"parent": f"customers/{customer}", "order": "create_time, id"}
    after = WEBHOOK_PAGES.read(token, scope)
    statement = select(WebhookRow).where(WebhookRow.customer == customer)
    if after is not None:
        at, last_id = after
        statement = statement.where((WebhookRow.create_time > at)
                                    | ((WebhookRow.create_time == at) & (WebhookRow.id > last_id)))
    async with depot.store.read() as tx:
        rows = list((await tx.session.scalars(statement.order_by(WebhookRow.create_time, WebhookRow.id)
                                              .limit(size + 1))).all())
    more = len(rows) > size
    rows = rows[:size]
    return rows, WEBHOOK_PAGES.issue([rows[-1].create_time, rows[-1].id], scope) if more else ""


async def delete_webhook(depot: Depot, customer: str, webhook_id: str, by: str) -> None:
    """Remove the endpoint and its deliveries (none is sent after this commits)."""
    async def work(tx) -> None:
        row = await _webhook(tx, customer, webhook_id)
        await tx.session.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == row.id))
        await tx.session.execute(delete(WebhookRow).where(WebhookRow.id == row.id))

    await depot.store.write_on_engine(work)
    log(logger, logging.INFO, "webhook deleted", webhook=f"customers/{customer}/webhooks/{webhook_id}", by=by)


async def list_deliveries(depot: Depot, customer: str, webhook_id: str, state: str, size: int, token: str
                          ) -> tuple[list[WebhookDeliveryRow], str]:
    scope = {"parent": f"customers/{customer}/webhooks/{webhook_id}", "state": state, "order": "newest first"}
    after = DELIVERY_PAGES.read(token, scope)
    statement = select(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id,
                                                 WebhookDeliveryRow.customer == customer)
    if state:
        statement = statement.where(WebhookDeliveryRow.state == state)
    if after is not None:
        statement = statement.where(WebhookDeliveryRow.pk < after[0])
    async with depot.store.read() as tx:
        await _webhook(tx, customer, webhook_id)
        rows = list((await tx.session.scalars(statement.order_by(WebhookDeliveryRow.pk.desc())
                                              .limit(size + 1))).all())
    more = len(rows) > size
    rows = rows[:size]
    return rows, DELIVERY_PAGES.issue([rows[-1].pk], scope) if more else ""


async def redeliver(depot: Depot, customer: str, webhook_id: str, delivery_id: str, by: str
                    ) -> WebhookDeliveryRow:
    """Send a failed or delivered delivery again, from its first try (its retry time counts from now)."""
    now = depot.clock.now()

    async def work(tx) -> WebhookDeliveryRow:
        await _webhook(tx, customer, webhook_id)
        row = await tx.session.scalar(select(WebhookDeliveryRow).where(
            WebhookDeliveryRow.webhook_id == webhook_id, WebhookDeliveryRow.id == delivery_id).with_for_update())
        if row is None:
            raise NotFound(f"delivery customers/{customer}/webhooks/{webhook_id}/deliveries/{delivery_id} does not "
                           "exist")
        if row.state == PENDING:
            raise FailedPrecondition(f"delivery {delivery_name(row)} is pending: it is being sent already")
        row.state, row.attempts, row.create_time, row.next_attempt_time = PENDING, 0, now, now
        row.delivered_time = None
        return row

    row = await depot.store.write_on_engine(work)
    log(logger, logging.INFO, "webhook delivery redelivered", delivery=delivery_name(row), by=by)
    return row
