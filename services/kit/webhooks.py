"""Webhook deliveries: a customer's events POSTed to its endpoints, signed, at least once (docs/WEBHOOKS.md).

The depot keeps the endpoints and their deliveries (a `Deliveries` store); this module is what is the same for any
sender: the signature's headers (SIGNATURE_HEADER: HMAC-SHA256 over "<unix seconds>." and the body, computed by the
depot's barrier, which alone derives the secrets; a receiver's check is in docs/WEBHOOKS.md), the endpoint URL's rules (`url_problem`), the retry schedule (`next_delay`: exponential backoff with jitter, parked
after `retry_for_s`), one try over HTTP (`Sender`: no redirect followed, no proxy from the environment, never more
of an answer read than its status) and the loop that sends what is due (`DeliveryWorker`). A delivery's id is the
same on every try (DELIVERY_HEADER): a receiver drops one it has seen. Nothing of a secret, a body or an answer's
body reaches a log line or an error string."""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import math
import random
import socket
import ssl
from dataclasses import dataclass
from typing import Callable, Protocol
from urllib.parse import urlsplit

import httpx

from services.kit import feed, tracing
from services.kit.clock import Clock, as_utc
from services.kit.config import env_float, env_int

logger = logging.getLogger(__name__)
# httpx logs every request's URL at INFO; an endpoint's URL may carry the receiver's own token in its query.
logging.getLogger("httpx").setLevel(logging.WARNING)

SIGNATURE_HEADER = "RemoteSupport-Signature"  # "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, b"<t>." + body)>"
DELIVERY_HEADER = "RemoteSupport-Delivery"  # the delivery's id: the idempotency id, the same on every try
EVENT_HEADER = "RemoteSupport-Event"  # the event type name, e.g. LOGON_DATA_REVEALED
USER_AGENT = "remotesupport-webhooks/1"
MAX_URL = 2000
CONCURRENCY = 10  # tries in flight at once in one pass
_LOOPBACK_NAMES = ("localhost",)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, *, production: bool) -> str | None:
    """None when `url` may receive deliveries, else what is wrong with it (a sentence for a field violation): https
    (http only to a loopback host, never under the production profile), a host, no user name or password, no
    fragment, at most 2000 characters."""
    if not url:
        return "is required"
    if len(url) > MAX_URL:
        return f"is {len(url)} characters; at most {MAX_URL}"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not hold spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing it checks it
    except ValueError:
        return "is not a valid URL (check its host and port)"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return "must be an https URL"
    if not parts.hostname:
        return "must name a host"
    if "@" in parts.netloc:
        return "must not hold a user name or password (authenticate the deliveries by their signature)"
    if parts.fragment or "#" in url:
        return "must not have a fragment (#...)"
    if scheme == "http":
        if production:
            return "must be an https URL (the production profile delivers over https only)"
        if not _is_loopback(parts.hostname):
            return "must be an https URL (http only to a loopback host: 127.0.0.1, ::1 or localhost)"
    return None


@dataclass(frozen=True)
class WebhookSettings:
    retry_for_s: float = 86400.0  # RS_WEBHOOK_RETRY_FOR_S: how long a delivery is retried before it is parked
    timeout_s: float = 10.0  # RS_WEBHOOK_TIMEOUT_S: one try's whole time (connect + answer)
    backoff_s: float = 10.0  # RS_WEBHOOK_BACKOFF_S: the first retry's mean delay
    backoff_max_s: float = 3600.0  # RS_WEBHOOK_BACKOFF_MAX_S: the longest delay
    interval_s: float = 1.0  # RS_WEBHOOK_INTERVAL_S: how often the worker looks for due deliveries
    batch: int = 50  # RS_WEBHOOK_BATCH: due deliveries sent per pass (at most CONCURRENCY at once)

    @classmethod
    def from_env(cls) -> "WebhookSettings":
        """The RS_WEBHOOK_* variables; SystemExit naming the variable for one that cannot work."""
        seconds = {"RS_WEBHOOK_RETRY_FOR_S": cls.retry_for_s, "RS_WEBHOOK_TIMEOUT_S": cls.timeout_s,
                   "RS_WEBHOOK_BACKOFF_S": cls.backoff_s, "RS_WEBHOOK_BACKOFF_MAX_S": cls.backoff_max_s,
                   "RS_WEBHOOK_INTERVAL_S": cls.interval_s}
        values = {name: env_float(name, default) for name, default in seconds.items()}
        for name, value in values.items():
            if not (math.isfinite(value) and value > 0):
                raise SystemExit(f"configuration error: {name} must be a positive number of seconds, got {value}")
        if values["RS_WEBHOOK_BACKOFF_S"] > values["RS_WEBHOOK_BACKOFF_MAX_S"]:
            raise SystemExit("configuration error: RS_WEBHOOK_BACKOFF_S must not exceed RS_WEBHOOK_BACKOFF_MAX_S")
        batch = env_int("RS_WEBHOOK_BATCH", cls.batch)
        if not 1 <= batch <= 500:
            raise SystemExit(f"configuration error: RS_WEBHOOK_BATCH must be 1 to 500, got {batch}")
        return cls(retry_for_s=values["RS_WEBHOOK_RETRY_FOR_S"], timeout_s=values["RS_WEBHOOK_TIMEOUT_S"],
                   backoff_s=values["RS_WEBHOOK_BACKOFF_S"], backoff_max_s=values["RS_WEBHOOK_BACKOFF_MAX_S"],
                   interval_s=values["RS_WEBHOOK_INTERVAL_S"], batch=batch)


def next_delay(attempts: int, settings: WebhookSettings, rng: random.Random) -> float:
    """Seconds until the next try after `attempts` (>= 1) failed ones: backoff_s doubled per further failure up to
    backoff_max_s, times a uniform jitter factor in [0.5, 1.5), never above backoff_max_s."""
    if attempts < 1:
        raise ValueError("next_delay is for a delivery tried at least once")
    mean = min(settings.backoff_max_s, settings.backoff_s * 2.0 ** min(attempts - 1, 64))
    return min(settings.backoff_max_s, mean * (0.5 + rng.random()))


@dataclass(frozen=True)
class Outcome:
    ok: bool  # answered 2xx
    error: str = ""  # why not: "HTTP 503", "timed out", "connection refused", ...; never the answer's body


def _network_error(error: BaseException) -> str:
    """What went wrong below HTTP, from the exception and its causes (never their text: it may name the URL)."""
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, ConnectionRefusedError):
            return "connection refused"
        if isinstance(found, ssl.SSLCertVerificationError):
            return "TLS error (certificate not trusted)"
        if isinstance(found, ssl.SSLError):
            return "TLS error"
        if isinstance(found, socket.gaierror):
            return "host not found"
        if isinstance(found, ConnectionResetError):
            return "connection reset"
        found = found.__cause__ or found.__context__
    if isinstance(error, httpx.RemoteProtocolError):
        return "invalid or no HTTP answer"
    if isinstance(error, httpx.ConnectError):
        return "connection failed"
    return f"network error ({type(error).__name__})"


class Sender:
    """One try of a delivery: a POST, its whole time bounded by `timeout_s`; redirects are not followed and proxies
    or certificates from the environment not used; only the answer's status is read (the response is closed
    unread). A network problem is an Outcome, never an exception."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    status = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(False, "timed out")
        except httpx.InvalidURL:
            return Outcome(False, "invalid URL")
        except (httpx.TransportError, OSError) as error:
            return Outcome(False, _network_error(error))
        return _outcome(status)

    async def close(self) -> None:
        await self._client.aclose()


def _outcome(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome(True)
    if 300 <= status < 400:
        return Outcome(False, f"redirect (HTTP {status}) not followed")
    return Outcome(False, f"HTTP {status}")


@dataclass(frozen=True)
class Due:
    delivery_id: str  # the delivery's resource name's id
    url: str
    sign: Callable[[int, bytes], str]  # (unix seconds, body) -> the SIGNATURE_HEADER value (the depot's barrier)
    event_type: str  # EventType name without the EVENT_TYPE_ prefix
    body: bytes  # the JSON payload (the depot builds it)
    attempts: int  # tries so far
    create_time: dt.datetime  # when the delivery was created or redelivered (the retry time counts from it)


class Deliveries(Protocol):
    """The deliveries as the worker reads and records them (the depot's store implements it)."""

    async def due(self, now: dt.datetime, limit: int) -> list[Due]:
        """Up to `limit` pending deliveries whose next try is at or before `now`."""

    async def delivered(self, delivery_id: str, now: dt.datetime, attempts: int) -> None: ...

    async def retry(self, delivery_id: str, now: dt.datetime, next_time: dt.datetime, error: str,
                    attempts: int) -> None: ...

    async def park(self, delivery_id: str, now: dt.datetime, error: str, attempts: int) -> None:
        """Mark the delivery FAILED: not delivered within the retry time."""


def headers_for(due: Due, timestamp: int) -> dict[str, str]:
    """The headers of one try of `due`, signed at `timestamp` (unix seconds)."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, DELIVERY_HEADER: due.delivery_id,
            EVENT_HEADER: due.event_type, SIGNATURE_HEADER: due.sign(timestamp, due.body)}


class DeliveryWorker:
    """Sends the due deliveries, one pass whenever woken (`notifier`) or every `interval_s`, and records each
    try's outcome: delivered, retried later (`next_delay`), or parked once `retry_for_s` has passed since the
    delivery was created."""

    def __init__(self, deliveries: Deliveries, sender: Sender, settings: WebhookSettings, clock: Clock,
                 notifier: feed.Notifier, rng: random.Random | None = None) -> None:
        self.deliveries, self.sender, self.settings = deliveries, sender, settings
        self.clock, self.notifier = clock, notifier
        self.rng = rng or random.Random()

    async def deliver_once(self) -> int:
        """One pass over what is due now; how many were delivered. A failure to record one outcome is raised once
        the pass's other tries are recorded."""
        with tracing.background("webhook delivery pass") as span:
            due = await self.deliveries.due(self.clock.now(), self.settings.batch)
            if not due:
                return 0
            limit = asyncio.Semaphore(CONCURRENCY)
            results = await asyncio.gather(*(self._try(d, limit) for d in due), return_exceptions=True)
            delivered = sum(1 for r in results if r is True)
            tracing.annotate(span, {"remotesupport.webhook_deliveries_due": len(due),
                                    "remotesupport.webhook_deliveries_delivered": delivered})
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        return delivered

    async def _try(self, due: Due, limit: asyncio.Semaphore) -> bool:
        async with limit:
            sent = self.clock.now()
            outcome = await self.sender.post(due.url, due.body, headers_for(due, int(sent.timestamp())))
        now, attempts = self.clock.now(), due.attempts + 1
        if outcome.ok:
            await self.deliveries.delivered(due.delivery_id, now, attempts)
            return True
        if (now - as_utc(due.create_time)).total_seconds() >= self.settings.retry_for_s:
            logger.warning("webhook delivery %s parked after %d tries: %s", due.delivery_id, attempts, outcome.error)
            await self.deliveries.park(due.delivery_id, now, outcome.error, attempts)
            return False
        delay = next_delay(attempts, self.settings, self.rng)
        logger.info("webhook delivery %s try %d failed (%s); next in %.0fs", due.delivery_id, attempts,
                    outcome.error, delay)
        await self.deliveries.retry(due.delivery_id, now, now + dt.timedelta(seconds=delay), outcome.error, attempts)
        return False

    async def run_forever(self) -> None:
        while True:
            ticket = self.notifier.ticket()  # before the pass: a delivery made during it wakes the next one at once
            try:
                await self.deliver_once()
            except Exception:  # noqa: BLE001 - the loop must outlive a failed pass; the next one retries
                logger.exception("webhook delivery pass failed; retrying in %.1fs", self.settings.interval_s)
            await self.notifier.wait(ticket, self.settings.interval_s)
