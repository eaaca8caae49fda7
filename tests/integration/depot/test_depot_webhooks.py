"""Webhooks on a running depot (SQLite and PostgreSQL, real connections and authz, a real HTTP receiver on
loopback): a user administrator registers an endpoint and sees its secret once; the customer's events of the
chosen types - the depot's log and the connections service's feed - arrive as signed POSTs, each with its
delivery id; a receiver that fails the first tries gets the delivery after retries, one that never answers sees
it parked as FAILED (a log event, a mail to the registrant) and redelivered on request. Every refusal names its
problem; the secret is never stored."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time

import grpc
import pytest
import pytest_asyncio

from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.connections.v1 import connections_pb2 as cp
from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import notices as depot_notices
from services.depot.events import DepotEvents
from services.kit import webhooks
from services.kit.validate import to_timestamp
from tests.harness import email_of
from tests.helpers import expect_error
from tests.integration.depot.world import World, app, fresh_customer, restart_depot, sql
from tests.mails import body_of, event_mailer
from tests.webhook_receiver import Receiver
from tests.webhook_signature import SignatureInvalid, verify

pytestmark = pytest.mark.asyncio(loop_scope="module")
T = ep.EventType
SECRET = "Webhook-Never-Sees-This-7"
SETTINGS = {"RS_WEBHOOK_BACKOFF_S": "1", "RS_WEBHOOK_BACKOFF_MAX_S": "2", "RS_WEBHOOK_RETRY_FOR_S": "600",
            "RS_WEBHOOK_TIMEOUT_S": "0.5", "RS_WEBHOOK_INTERVAL_S": "0.05"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hooks(world):
    """The depot restarted with short retry settings (the suite's clock moves the retries)."""
    before = {k: os.environ.get(k) for k in SETTINGS}
    os.environ.update(SETTINGS)
    await restart_depot(world.suite)
    yield world
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    await restart_depot(world.suite)


@pytest_asyncio.fixture
async def receiver():
    running = Receiver().start()
    yield running
    running.stop()


async def customer(world: World) -> World:
    w = await fresh_customer(world)
    w.users["admin"], w.tokens["admin"] = w.suite.customer_admin(w.customer)
    return w


async def register(w: World, url: str, types, principal: str = "admin") -> dp.CreateWebhookResponse:
    return await w.depot.CreateWebhook(dp.CreateWebhookRequest(parent=f"customers/{w.customer}", webhook=dp.Webhook(
        url=url, event_types=types, description="SIEM intake")), metadata=w.md(principal))


async def deliveries(w: World, webhook: str, state=0) -> list[dp.WebhookDelivery]:
    return list((await w.depot.ListWebhookDeliveries(dp.ListWebhookDeliveriesRequest(parent=webhook, state=state),
                                                      metadata=w.md("admin"))).deliveries)


async def until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


def wake(w: World) -> None:
    app(w.suite).webhooks.due.wake()


async def test_events_arrive_signed_once_each_and_the_secret_is_shown_once(hooks, receiver):
    w = await customer(hooks)
    created = await register(w, receiver.url, [T.EVENT_TYPE_LOGON_DATA_CREATED, T.EVENT_TYPE_LOGON_DATA_REVEALED])
    secret, hook = created.secret, created.webhook
    assert secret.startswith("whsec_") and len(secret) == 49
    assert hook.name.startswith(f"customers/{w.customer}/webhooks/") and hook.creator == w.users["admin"]
    got = (await w.depot.GetWebhook(dp.GetWebhookRequest(name=hook.name), metadata=w.md("admin"))).webhook
    assert got == hook and "secret" not in dp.Webhook.DESCRIPTOR.fields_by_name
    entry = await w.create("creator", secret=SECRET)
    await w.reveal("edit_all", entry.name, reason="ticket 4711")
    await receiver.wait_for(lambda got: len(got) >= 2)
    first, second = sorted(receiver.answered()[:2], key=lambda r: json.loads(r.body)["position"])  # sent at once
    now = int(time.time())
    for request in (first, second):
        verify(secret, request.headers[webhooks.SIGNATURE_HEADER], request.body, now=now)
        assert SECRET not in request.body.decode()
    assert [json.loads(r.body)["type"] for r in (first, second)] == ["EVENT_TYPE_LOGON_DATA_CREATED",
                                                                    "EVENT_TYPE_LOGON_DATA_REVEALED"]
    event = json.loads(second.body)
    assert event["resource"] == entry.name and event["actor"] == w.users["edit_all"] and event["chain_hash"]
    assert second.headers[webhooks.EVENT_HEADER] == "LOGON_DATA_REVEALED"
    assert first.headers[webhooks.DELIVERY_HEADER] != second.headers[webhooks.DELIVERY_HEADER]
    listed = await until(lambda: _all_delivered(w, hook.name, 2))
    assert {d.name.rsplit("/", 1)[1] for d in listed} == {r.headers[webhooks.DELIVERY_HEADER] for r in (first, second)}
    with pytest.raises(SignatureInvalid):  # an altered body does not verify
        verify(secret, first.headers[webhooks.SIGNATURE_HEADER], first.body.replace(b"CREATED", b"DELETED"),
                        now=now)
    rows = sql(w.suite, "SELECT * FROM webhooks WHERE id = :id", id=hook.name.rsplit("/", 1)[1])
    assert rows and secret not in repr(rows)  # only a nonce: the secret is derived with the master key
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 2  # the entry's update-free life: nothing else of these types


async def _all_delivered(w: World, webhook: str, count: int):
    listed = await deliveries(w, webhook)
    return listed if len(listed) == count and all(d.state == dp.WEBHOOK_DELIVERY_STATE_DELIVERED
                                                  for d in listed) else None


async def test_connections_events_come_from_the_connections_feed(hooks, receiver):
    w = await customer(hooks)
    _, opener = await w.suite.new_user(w.customer, ["OPEN_REMOTE_CONNECTIONS"])
    created = await register(w, receiver.url, [T.EVENT_TYPE_WINDOW_OPENED])
    await app(w.suite).webhooks.follower.refresh()
    conn = w.suite.stub("connections")
    await conn.SetUpConnection(cp.SetUpConnectionRequest(parent=w.system, connection_type="connectionTypes/SSH",
                                                         parameters={"host": "prd01"}), metadata=w.suite.md(opener))
    await until(lambda: _follower_ready(w))
    window = (await conn.OpenConnection(cp.OpenConnectionRequest(
        parent=w.system, connection_type="connectionTypes/SSH", reason="webhook test",
        end_time=to_timestamp(w.suite.clock.now() + dt.timedelta(hours=1))), metadata=w.suite.md(opener))).connection
    await receiver.wait_for(lambda got: len(got) >= 1)
    request, = receiver.received
    verify(created.secret, request.headers[webhooks.SIGNATURE_HEADER], request.body, now=int(time.time()))
    body = json.loads(request.body)
    assert (body["type"], body["resource"], body["source"]) == ("EVENT_TYPE_WINDOW_OPENED", window.name,
                                                                "connections")


async def _follower_ready(w: World) -> bool:
    rows = sql(w.suite, "SELECT cursor FROM webhook_sources WHERE customer = :c", c=w.customer)
    return bool(rows)


async def test_a_receiver_that_fails_first_gets_it_after_retries(hooks, receiver):
    w = await customer(hooks)
    created = await register(w, receiver.url, [T.EVENT_TYPE_LOGON_DATA_CREATED])
    receiver.fail_first = 2
    await w.create("creator", secret=SECRET)
    for tries in (1, 2):
        await receiver.wait_for(lambda got, n=tries: len(got) >= n)
        pending, = await until(lambda: _with_attempts(w, created.webhook.name, tries))
        assert pending.state == dp.WEBHOOK_DELIVERY_STATE_PENDING and pending.last_error == "HTTP 500"
        w.suite.clock.advance(seconds=3)  # past the backoff (at most 2 s here)
        wake(w)
    await receiver.wait_for(lambda got: len(got) >= 3)
    delivered, = await until(lambda: _all_delivered(w, created.webhook.name, 1))
    assert delivered.attempts == 3 and delivered.last_error == ""
    ids = {r.headers[webhooks.DELIVERY_HEADER] for r in receiver.received}
    assert ids == {delivered.name.rsplit("/", 1)[1]}  # the same idempotency id on every try
    for request in receiver.received:
        verify(created.secret, request.headers[webhooks.SIGNATURE_HEADER], request.body,
                        now=int(time.time()))


async def _with_attempts(w: World, webhook: str, attempts: int):
    listed = await deliveries(w, webhook)
    return listed if listed and listed[0].attempts == attempts else None


async def test_a_receiver_that_never_answers_sees_it_parked_then_redelivered(hooks, receiver):
    w = await customer(hooks)
    created = await register(w, receiver.url, [T.EVENT_TYPE_LOGON_DATA_CREATED])
    receiver.hang = True
    await w.create("creator", secret=SECRET)
    first, = await until(lambda: _with_attempts(w, created.webhook.name, 1))
    assert first.last_error == "timed out"
    await expect_error(w.depot.RedeliverWebhookDelivery(dp.RedeliverWebhookDeliveryRequest(name=first.name),
                                                        metadata=w.md("admin")),
                       grpc.StatusCode.FAILED_PRECONDITION, message="pending")  # its next try is not due yet
    w.suite.clock.advance(seconds=601)  # past RS_WEBHOOK_RETRY_FOR_S
    wake(w)
    parked, = await until(lambda: _in_state(w, created.webhook.name, dp.WEBHOOK_DELIVERY_STATE_FAILED))
    assert parked.attempts == 2 and parked.last_error == "timed out"
    log = await w.events()
    failed = [e for e in log if e.action == dp.LOG_ACTION_WEBHOOK_DELIVERY_FAILED]
    assert [e.logon_data for e in failed] == [parked.name] and "not delivered after 2 tries" in failed[0].detail
    await expect_error(w.depot.RedeliverWebhookDelivery(dp.RedeliverWebhookDeliveryRequest(
        name=f"{created.webhook.name}/deliveries/nosuch"), metadata=w.md("admin")), grpc.StatusCode.NOT_FOUND)
    receiver.hang = False
    again = (await w.depot.RedeliverWebhookDelivery(dp.RedeliverWebhookDeliveryRequest(name=parked.name),
                                                    metadata=w.md("admin"))).delivery
    assert again.state == dp.WEBHOOK_DELIVERY_STATE_PENDING and again.attempts == 0
    delivered, = await until(lambda: _all_delivered(w, created.webhook.name, 1))
    assert delivered.attempts == 1


async def _in_state(w: World, webhook: str, state):
    listed = await deliveries(w, webhook, state)
    return listed or None


async def test_the_registrant_is_mailed_when_a_delivery_is_parked(hooks, receiver):
    w = await customer(hooks)
    created = await register(w, receiver.url, [T.EVENT_TYPE_LOGON_DATA_CREATED])
    store = app(w.suite).depot.store
    mailer = event_mailer(w.suite, "depot", DepotEvents(store, "mail"), depot_notices.recipients_of(store))
    await mailer.mail_once()
    receiver.fail_first = 100
    await w.create("creator", secret=SECRET)
    await until(lambda: _with_attempts(w, created.webhook.name, 1))
    w.suite.clock.advance(seconds=601)
    wake(w)
    parked, = await until(lambda: _in_state(w, created.webhook.name, dp.WEBHOOK_DELIVERY_STATE_FAILED))
    await mailer.mail_once()
    mail = [m for m in w.suite.mail.messages(email_of(w.users["admin"].removeprefix("users/")))
            if m["Subject"] == "Remote Support: a webhook delivery failed"]
    assert len(mail) == 1 and parked.name in body_of(mail[0]) and "HTTP 500" in body_of(mail[0])
    assert f"rsctl webhooks redeliver {parked.name}" in body_of(mail[0])


async def test_refusals_name_their_problem(hooks, receiver):
    w = await customer(hooks)
    INVALID = grpc.StatusCode.INVALID_ARGUMENT
    for url, problem in (("http://example.com/hook", "https"), ("ftp://127.0.0.1/x", "https"),
                         ("https://user:pw@example.com/h", "password")):
        await expect_error(register(w, url, [T.EVENT_TYPE_WINDOW_OPENED]), INVALID, field="webhook.url",
                           message=problem)
    await expect_error(register(w, receiver.url, []), INVALID, field="webhook.event_types")
    await expect_error(register(w, receiver.url, [T.EVENT_TYPE_WEBHOOK_DELIVERY_FAILED]), INVALID,
                       field="webhook.event_types[0]", message="never delivered")
    await expect_error(register(w, receiver.url, [T.EVENT_TYPE_WINDOW_OPENED] * 2), INVALID,
                       field="webhook.event_types[1]", message="repeats")
    await expect_error(register(w, receiver.url, [99]), INVALID, field="webhook.event_types[0]")
    for principal in ("edit_all", "creator"):  # the customer's user administrators only
        await expect_error(register(w, receiver.url, [T.EVENT_TYPE_WINDOW_OPENED], principal),
                           grpc.StatusCode.PERMISSION_DENIED)
    other = await customer(hooks)
    hook = (await register(w, receiver.url, [T.EVENT_TYPE_WINDOW_OPENED])).webhook
    await expect_error(other.depot.GetWebhook(dp.GetWebhookRequest(name=hook.name), metadata=other.md("admin")),
                       grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(w.depot.GetWebhook(dp.GetWebhookRequest(name=f"customers/{w.customer}/webhooks/nosuch"),
                                          metadata=w.md("admin")), grpc.StatusCode.NOT_FOUND)
    await expect_error(w.depot.GetWebhook(dp.GetWebhookRequest(name="webhooks/x"), metadata=w.md("admin")),
                       INVALID, field="name")
    await expect_error(w.depot.ListWebhookDeliveries(dp.ListWebhookDeliveriesRequest(parent=hook.name, state=9),
                                                     metadata=w.md("admin")), INVALID, field="state")
    listed = (await w.depot.ListWebhooks(dp.ListWebhooksRequest(parent=f"customers/{w.customer}"),
                                         metadata=w.md("admin"))).webhooks
    assert [h.name for h in listed] == [hook.name]
    for _ in range(19):
        await register(w, receiver.url, [T.EVENT_TYPE_WINDOW_OPENED])
    await expect_error(register(w, receiver.url, [T.EVENT_TYPE_WINDOW_OPENED]), grpc.StatusCode.RESOURCE_EXHAUSTED,
                       message="20 webhooks")
    await w.depot.DeleteWebhook(dp.DeleteWebhookRequest(name=hook.name), metadata=w.md("admin"))
    await expect_error(w.depot.GetWebhook(dp.GetWebhookRequest(name=hook.name), metadata=w.md("admin")),
                       grpc.StatusCode.NOT_FOUND)
