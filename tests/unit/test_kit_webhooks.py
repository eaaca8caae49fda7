"""The kit's webhook deliveries: a signature verifies only for its body, secret and time; an endpoint URL is https
(http to loopback outside production); the backoff stays within its bounds; and the worker, against a real HTTP
receiver on loopback, retries a failing endpoint with the same delivery id and a fresh signature, gives up on a
silent one after the timeout, parks what the retry time did not deliver, follows no redirect and logs nothing of
a secret, a body or an answer."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import logging
import random
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.kit import feed
from services.kit.clock import ManualClock
from services.kit.webhooks import (DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, DeliveryWorker, Due, Outcome,
                                   Sender, WebhookSettings, next_delay, url_problem)
from tests.webhook_signature import TOLERANCE_S, SignatureInvalid, sign, verify


def new_secret() -> str:
    """A secret of the depot's shape ("whsec_" and 43 base64url characters); the depot derives its own."""
    return "whsec_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")

T0 = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
SECRET = new_secret()
BODY = b'{"id":"depot/customers/1234/events/17","type":"LOGON_DATA_REVEALED","detail":"BODY-MARKER"}'
ANSWER = b"ANSWER-BODY-MARKER"
NOW = 1_900_000_000


# --- signatures -------------------------------------------------------------------------------------------------

def test_a_signature_verifies_for_its_secret_body_and_time():
    header = sign(SECRET, NOW, BODY)
    assert header.startswith(f"t={NOW},v1=") and len(header.split("v1=")[1]) == 64
    verify(SECRET, header, BODY, now=NOW)
    verify(SECRET, header, BODY, now=NOW + TOLERANCE_S)  # the tolerance's edges are inside it
    verify(SECRET, header, BODY, now=NOW - TOLERANCE_S)


def _flip(header: str) -> str:
    last = header[-1]
    return header[:-1] + ("0" if last != "0" else "1")


@pytest.mark.parametrize("secret,header,body,now,problem", [
    (SECRET, sign(SECRET, NOW, BODY), BODY + b" ", NOW, "no v1 signature matches"),
    (SECRET, _flip(sign(SECRET, NOW, BODY)), BODY, NOW, "no v1 signature matches"),
    (new_secret(), sign(SECRET, NOW, BODY), BODY, NOW, "no v1 signature matches"),
    (SECRET, sign(SECRET, NOW, BODY), BODY, NOW + TOLERANCE_S + 1, "older than the 300s tolerance"),
    (SECRET, sign(SECRET, NOW, BODY), BODY, NOW - TOLERANCE_S - 1, "ahead"),
    (SECRET, "garbage", BODY, NOW, "malformed"),
    (SECRET, "", BODY, NOW, "malformed"),
    (SECRET, sign(SECRET, NOW, BODY).replace(f"t={NOW},", ""), BODY, NOW, "exactly one timestamp"),
    (SECRET, sign(SECRET, NOW, BODY).replace(f"t={NOW}", "t=soon"), BODY, NOW, "exactly one timestamp"),
    (SECRET, f"t={NOW},t={NOW}," + sign(SECRET, NOW, BODY).split(",")[1], BODY, NOW, "exactly one timestamp"),
    (SECRET, f"t={NOW}", BODY, NOW, "no v1 signature"),
    (SECRET, f"t={NOW},v0=abc", BODY, NOW, "no v1 signature"),
    (SECRET, f"t={NOW},v1=ünïcode", BODY, NOW, "no v1 signature matches"),
], ids=["tampered body", "tampered signature", "another secret", "replayed", "from the future", "malformed",
        "empty", "no timestamp", "timestamp not a number", "two timestamps", "no v1", "only another scheme",
        "non-ascii signature"])
def test_a_signature_is_refused_with_a_clear_problem(secret, header, body, now, problem):
    with pytest.raises(SignatureInvalid) as caught:
        verify(secret, header, body, now=now)
    assert problem in caught.value.problem and problem in str(caught.value)
    assert SECRET not in caught.value.problem and secret not in caught.value.problem


def test_several_v1_signatures_are_accepted_while_a_secret_rotates():
    old, new = new_secret(), new_secret()
    header = sign(old, NOW, BODY) + ",v1=" + sign(new, NOW, BODY).split("v1=")[1]
    verify(old, header, BODY, now=NOW)
    verify(new, header, BODY, now=NOW)
    verify(new, f"t={NOW}, v1=00, v0=ignored, v1={sign(new, NOW, BODY).split('v1=')[1]}", BODY, now=NOW)
    with pytest.raises(SignatureInvalid):
        verify(new_secret(), header, BODY, now=NOW)


def test_the_receiver_example_of_the_guide_checks_what_the_kit_signs():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "WEBHOOKS.md").read_text()
    example = guide.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(example, "docs/WEBHOOKS.md", "exec"), scope)  # noqa: S102 - the guide's own example
    check, header = scope["check"], sign(SECRET, NOW, BODY)
    assert check(SECRET, header, BODY, now=NOW) and check(SECRET, header, BODY, now=NOW + TOLERANCE_S)
    assert not check(SECRET, header, BODY + b" ", now=NOW)
    assert not check(new_secret(), header, BODY, now=NOW)
    assert not check(SECRET, header, BODY, now=NOW + TOLERANCE_S + 1)
    assert not check(SECRET, "garbage", BODY, now=NOW)
    assert not check(SECRET, f"t={NOW},v1=ünïcode", BODY, now=NOW)
    assert check(SECRET, header + ",v1=" + "0" * 64, BODY, now=NOW)


# --- endpoint URLs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url,production,problem", [
    ("https://hooks.example.com/remote-support?x=1", False, None),
    ("https://hooks.example.com:8443/in", True, None),
    ("HTTPS://hooks.example.com/", True, None),
    ("http://127.0.0.1:8080/hook", False, None),
    ("http://127.5.6.7/hook", False, None),
    ("http://[::1]:8080/hook", False, None),
    ("http://localhost:8080/hook", False, None),
    ("http://127.0.0.1:8080/hook", True, "production profile delivers over https only"),
    ("http://localhost/hook", True, "production profile"),
    ("http://example.com/hook", False, "http only to a loopback host"),
    ("http://10.0.0.1/hook", False, "http only to a loopback host"),
    ("ftp://example.com/hook", False, "must be an https URL"),
    ("hooks.example.com/hook", False, "must be an https URL"),
    ("https://user:pw@hooks.example.com/hook", False, "user name or password"),
    ("https://token@hooks.example.com/hook", False, "user name or password"),
    ("https:///hook", False, "must name a host"),
    ("https://", False, "must name a host"),
    ("https://hooks.example.com/hook#part", False, "fragment"),
    ("https://hooks.example.com/" + "a" * 1974, False, None),  # 2000 characters
    ("https://hooks.example.com/" + "a" * 1975, False, "2001 characters; at most 2000"),
    ("https://hooks.example.com:99999/hook", False, "not a valid URL"),
    ("https://hooks.example.com/a b", False, "spaces or control characters"),
    ("https://hooks.example.com/\n", False, "spaces or control characters"),
    ("", False, "is required"),
])
def test_url_problem(url, production, problem):
    found = url_problem(url, production=production)
    if problem is None:
        assert found is None, found
    else:
        assert found is not None and problem in found


# --- settings and backoff ---------------------------------------------------------------------------------------

def test_next_delay_grows_with_jitter_and_stays_within_its_bounds():
    settings = WebhookSettings(backoff_s=10.0, backoff_max_s=3600.0)
    for seed in range(40):
        rng = random.Random(seed)
        for attempts in range(1, 80):
            mean = min(3600.0, 10.0 * 2 ** (attempts - 1))
            delay = next_delay(attempts, settings, rng)
            assert 0.5 * mean <= delay < 1.5 * mean and delay <= 3600.0
    firsts = {round(next_delay(1, settings, random.Random(seed)), 6) for seed in range(40)}
    assert len(firsts) > 30  # jittered: replicas' retries do not come in step
    assert next_delay(10_000, settings, random.Random(1)) <= 3600.0
    with pytest.raises(ValueError):
        next_delay(0, settings, random.Random(1))


def test_settings_from_the_environment(monkeypatch):
    assert WebhookSettings.from_env() == WebhookSettings()
    for name, value in {"RS_WEBHOOK_RETRY_FOR_S": "600", "RS_WEBHOOK_TIMEOUT_S": "2.5", "RS_WEBHOOK_BACKOFF_S": "1",
                        "RS_WEBHOOK_BACKOFF_MAX_S": "60", "RS_WEBHOOK_INTERVAL_S": "0.5",
                        "RS_WEBHOOK_BATCH": "500"}.items():
        monkeypatch.setenv(name, value)
    assert WebhookSettings.from_env() == WebhookSettings(600.0, 2.5, 1.0, 60.0, 0.5, 500)


@pytest.mark.parametrize("env,problem", [
    ({"RS_WEBHOOK_TIMEOUT_S": "0"}, "RS_WEBHOOK_TIMEOUT_S must be a positive"),
    ({"RS_WEBHOOK_RETRY_FOR_S": "-1"}, "RS_WEBHOOK_RETRY_FOR_S must be a positive"),
    ({"RS_WEBHOOK_INTERVAL_S": "nan"}, "RS_WEBHOOK_INTERVAL_S must be a positive"),
    ({"RS_WEBHOOK_BACKOFF_MAX_S": "inf"}, "RS_WEBHOOK_BACKOFF_MAX_S must be a positive"),
    ({"RS_WEBHOOK_BACKOFF_S": "ten"}, "RS_WEBHOOK_BACKOFF_S must be a number"),
    ({"RS_WEBHOOK_BACKOFF_S": "120", "RS_WEBHOOK_BACKOFF_MAX_S": "60"}, "must not exceed RS_WEBHOOK_BACKOFF_MAX_S"),
    ({"RS_WEBHOOK_BATCH": "0"}, "RS_WEBHOOK_BATCH must be 1 to 500"),
    ({"RS_WEBHOOK_BATCH": "501"}, "RS_WEBHOOK_BATCH must be 1 to 500"),
    ({"RS_WEBHOOK_BATCH": "1.5"}, "RS_WEBHOOK_BATCH must be an integer"),
])
def test_settings_that_cannot_work_stop_the_service_naming_them(monkeypatch, env, problem):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        WebhookSettings.from_env()
    assert str(caught.value).startswith("configuration error: ") and problem in str(caught.value)


# --- a real receiver on loopback --------------------------------------------------------------------------------

@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    time: float


class Receiver:
    """A tiny HTTP/1.1 server on 127.0.0.1 answering each request with the next of `script`: a status, "hang"
    (read the request, never answer) or "stream" (200 with a body that never ends); `plain`: whatever comes (a TLS
    ClientHello) is answered in plain HTTP."""

    def __init__(self, script: list, delay_s: float = 0.0, *, plain: bool = False) -> None:
        self.script, self.delay_s, self.plain = list(script), delay_s, plain
        self.received: list[Received] = []
        self.in_flight = self.most_in_flight = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task] = []
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def __aenter__(self) -> "Receiver":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self._tasks.append(asyncio.current_task())
        try:
            if self.plain:  # whatever comes (a TLS ClientHello), answered in plain HTTP
                await reader.read(1)
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines if l)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(request_line.split()[1], headers, body, time.monotonic()))
            action = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.in_flight -= 1
            if action == "hang":
                await asyncio.sleep(3600)
            elif action == "stream":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
                while True:
                    writer.write(ANSWER * 1000)
                    await writer.drain()
                    await asyncio.sleep(0.01)
            else:
                extra = f"Location: {self.url}/elsewhere\r\n" if 300 <= action < 400 else ""
                writer.write(f"HTTP/1.1 {action} Scripted\r\n{extra}Content-Length: {len(ANSWER)}\r\n"
                             "Connection: close\r\n\r\n".encode() + ANSWER)
                await writer.drain()
                writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:  # closed by __aexit__ (a task ending cancelled trips asyncio 3.11's streams)
            pass


@dataclass
class Record:
    due: Due
    state: str = "PENDING"
    next_time: dt.datetime = T0
    last_error: str = ""
    attempts: int = 0
    calls: list = field(default_factory=list)


class MemoryDeliveries:
    """The Deliveries protocol over a dict, recording every call."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}

    def add(self, url: str, delivery_id: str = "d1", *, create_time: dt.datetime = T0) -> Record:
        due = Due(delivery_id, url, functools.partial(sign, SECRET), "LOGON_DATA_REVEALED", BODY, 0, create_time)
        self.records[delivery_id] = record = Record(due, next_time=create_time)
        return record

    async def due(self, now: dt.datetime, limit: int) -> list[Due]:
        ready = [r for r in self.records.values() if r.state == "PENDING" and r.next_time <= now][:limit]
        return [Due(r.due.delivery_id, r.due.url, r.due.sign, r.due.event_type, r.due.body, r.attempts,
                    r.due.create_time) for r in ready]

    async def delivered(self, delivery_id: str, now: dt.datetime, attempts: int) -> None:
        record = self.records[delivery_id]
        record.state, record.attempts = "DELIVERED", attempts
        record.calls.append(("delivered", now, attempts))

    async def retry(self, delivery_id: str, now: dt.datetime, next_time: dt.datetime, error: str,
                    attempts: int) -> None:
        record = self.records[delivery_id]
        record.next_time, record.last_error, record.attempts = next_time, error, attempts
        record.calls.append(("retry", now, next_time, error, attempts))

    async def park(self, delivery_id: str, now: dt.datetime, error: str, attempts: int) -> None:
        record = self.records[delivery_id]
        record.state, record.last_error, record.attempts = "FAILED", error, attempts
        record.calls.append(("park", now, error, attempts))


SETTINGS = WebhookSettings(retry_for_s=600.0, timeout_s=5.0, backoff_s=10.0, backoff_max_s=60.0, interval_s=0.05)


@pytest.fixture
async def worker_of():
    made: list[Sender] = []

    def make(deliveries, clock, settings=SETTINGS, notifier=None):
        sender = Sender(settings.timeout_s)
        made.append(sender)
        return DeliveryWorker(deliveries, sender, settings, clock, notifier or feed.Notifier(), random.Random(7))

    yield make
    for sender in made:
        await sender.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_failing_endpoint_is_retried_with_the_same_delivery_id_until_it_answers_2xx(worker_of):
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    async with Receiver([500, 500, 200]) as receiver:
        record = deliveries.add(receiver.url)
        worker = worker_of(deliveries, clock)
        assert await worker.deliver_once() == 0
        assert record.calls[-1][0] == "retry" and record.last_error == "HTTP 500" and record.attempts == 1
        first_wait = record.next_time - clock.now()
        assert dt.timedelta(seconds=5) <= first_wait < dt.timedelta(seconds=15)
        assert await worker.deliver_once() == 0  # not due yet: nothing sent
        assert len(receiver.received) == 1
        clock.set(record.next_time)
        assert await worker.deliver_once() == 0
        assert record.last_error == "HTTP 500" and record.attempts == 2
        assert dt.timedelta(seconds=10) <= record.next_time - clock.now() < dt.timedelta(seconds=30)
        clock.set(record.next_time + dt.timedelta(seconds=1))
        assert await worker.deliver_once() == 1
    assert record.state == "DELIVERED" and record.calls[-1] == ("delivered", clock.now(), 3)
    assert len(receiver.received) == 3
    for request in receiver.received:
        assert request.path == "/hook" and request.body == BODY
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "remotesupport-webhooks/1"
        assert request.headers[DELIVERY_HEADER.lower()] == "d1"
        assert request.headers[EVENT_HEADER.lower()] == "LOGON_DATA_REVEALED"
    signatures = [r.headers[SIGNATURE_HEADER.lower()] for r in receiver.received]
    for signature, at in zip(signatures, [T0, *(c[2] for c in record.calls if c[0] == "retry")]):
        verify(SECRET, signature, BODY, now=int(at.timestamp()))  # signed at the try's own time
    assert len(set(signatures)) == 3  # each try signed afresh
    with pytest.raises(SignatureInvalid):  # the first try's header, replayed at the last try's time
        verify(SECRET, signatures[0], BODY, now=int(clock.now().timestamp()) + TOLERANCE_S)


async def test_an_endpoint_that_never_answers_times_out_and_is_parked_after_the_retry_time(worker_of):
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    settings = WebhookSettings(retry_for_s=600.0, timeout_s=0.3, backoff_s=10.0, backoff_max_s=60.0)
    async with Receiver(["hang"]) as receiver:
        record = deliveries.add(receiver.url)
        worker = worker_of(deliveries, clock, settings)
        started = time.monotonic()
        assert await worker.deliver_once() == 0
        assert time.monotonic() - started < 3
        assert record.state == "PENDING" and record.last_error == "timed out" and record.attempts == 1
        clock.advance(seconds=600)
        assert await worker.deliver_once() == 0
    assert record.state == "FAILED" and record.calls[-1] == ("park", clock.now(), "timed out", 2)
    assert len(receiver.received) == 2


async def test_a_closed_port_is_connection_refused(worker_of):
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    record = deliveries.add(f"http://127.0.0.1:{closed_port()}/hook")
    assert await worker_of(deliveries, clock).deliver_once() == 0
    assert record.last_error == "connection refused" and record.state == "PENDING"
    sender = Sender(2.0)
    try:
        assert await sender.post(f"http://[::1]:{closed_port()}/", b"{}", {}) in (
            Outcome(False, "connection refused"), Outcome(False, "connection failed"))  # no IPv6: still an Outcome
        assert await sender.post("https://nowhere.invalid/", b"{}", {}) == Outcome(False, "host not found")
    finally:
        await sender.close()


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(worker_of):
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    async with Receiver([302, 200]) as receiver:
        record = deliveries.add(receiver.url)
        assert await worker_of(deliveries, clock).deliver_once() == 0
    assert record.last_error == "redirect (HTTP 302) not followed" and record.state == "PENDING"
    assert [r.path for r in receiver.received] == ["/hook"]


async def test_a_https_endpoint_that_speaks_no_tls_is_a_tls_error():
    async with Receiver([200], plain=True) as receiver:
        sender = Sender(2.0)
        try:
            outcome = await sender.post(receiver.url.replace("http:", "https:"), BODY, {})
        finally:
            await sender.close()
    assert not outcome.ok and outcome.error.startswith("TLS error")


async def test_only_the_status_of_an_answer_is_read():
    async with Receiver(["stream"]) as receiver:
        sender = Sender(3.0)
        started = time.monotonic()
        try:
            assert await sender.post(receiver.url, BODY, {}) == Outcome(True)
        finally:
            await sender.close()
    assert time.monotonic() - started < 2


async def test_a_pass_sends_at_most_ten_at_once_and_the_batch_at_most(worker_of):
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    settings = WebhookSettings(batch=25)
    async with Receiver([204], delay_s=0.1) as receiver:
        for i in range(30):
            deliveries.add(receiver.url, f"d{i:02d}")
        worker = worker_of(deliveries, clock, settings)
        assert await worker.deliver_once() == 25
        assert receiver.most_in_flight == 10
        assert await worker.deliver_once() == 5
    assert {r.state for r in deliveries.records.values()} == {"DELIVERED"}
    assert sorted(r.headers[DELIVERY_HEADER.lower()] for r in receiver.received) == sorted(deliveries.records)


async def test_a_delivery_created_long_ago_is_parked_at_its_first_failure(worker_of):
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    record = deliveries.add(f"http://127.0.0.1:{closed_port()}/hook", create_time=T0 - dt.timedelta(seconds=600))
    await worker_of(deliveries, clock).deliver_once()
    assert record.state == "FAILED" and record.calls == [("park", T0, "connection refused", 1)]


async def test_nothing_of_a_secret_a_body_or_an_answer_is_logged(worker_of, caplog):
    caplog.set_level(logging.DEBUG)
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    settings = WebhookSettings(retry_for_s=60.0, timeout_s=0.3, backoff_s=1.0, backoff_max_s=5.0)
    async with Receiver([500, 302, "hang"]) as receiver:
        record = deliveries.add(receiver.url)
        worker = worker_of(deliveries, clock, settings)
        for _ in range(4):
            await worker.deliver_once()
            clock.advance(seconds=30)
    assert record.state == "FAILED"
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "d1" in text and "parked" in text  # what happened is logged ...
    sent = [r.headers[SIGNATURE_HEADER.lower()].split("v1=")[1] for r in receiver.received]
    for marker in (SECRET, SECRET[6:], "BODY-MARKER", "ANSWER-BODY-MARKER", *sent):
        assert marker not in text  # ... nothing of what was sent or answered
    assert all(marker not in r.last_error for r in [record] for marker in ("MARKER", SECRET))


async def test_the_loop_outlives_a_failed_pass_and_wakes_when_notified(worker_of, caplog):
    clock, deliveries = ManualClock(T0), MemoryDeliveries()
    failures = []

    async def broken(now, limit):
        failures.append(now)
        raise RuntimeError("database went away")

    deliveries.due, real = broken, deliveries.due
    notifier = feed.Notifier()
    worker = worker_of(deliveries, clock, WebhookSettings(interval_s=30.0), notifier)
    async with Receiver([200]) as receiver:
        record = deliveries.add(receiver.url)
        task = asyncio.create_task(worker.run_forever())
        try:
            while not failures:
                await asyncio.sleep(0.01)
            deliveries.due = real
            notifier.wake()  # long before the 30 s interval
            for _ in range(300):
                if record.state == "DELIVERED":
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert record.state == "DELIVERED"
    assert any(r.levelno == logging.ERROR and "pass failed" in r.getMessage() for r in caplog.records)
