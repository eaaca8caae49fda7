"""A receiver's check of a webhook delivery's signature, written from docs/WEBHOOKS.md independently of the
depot's barrier (which signs): HMAC-SHA256 under the endpoint's secret over "<unix seconds>." and the body, in
"t=<seconds>,v1=<hex>", refused when older or further ahead than the tolerance."""
from __future__ import annotations

import hashlib
import hmac

TOLERANCE_S = 300


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """What a sender with `secret` puts in the signature header (for tests that play the sender)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


class SignatureInvalid(Exception):
    """A signature header a receiver must refuse; `problem` says why (never the secret)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _parse(header: str) -> tuple[int, list[str]]:
    """The header's timestamp and its v1 signatures; other schemes' entries are ignored."""
    timestamps, signatures = [], []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise SignatureInvalid("the signature header is malformed (expected t=<seconds>,v1=<hex>)")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureInvalid("the signature header needs exactly one timestamp t=<unix seconds>")
    if not signatures:
        raise SignatureInvalid("the signature header has no v1 signature")
    return int(timestamps[0]), signatures


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = TOLERANCE_S) -> None:
    """Check a SIGNATURE_HEADER value against `body` at `now` (unix seconds); SignatureInvalid unless one of its v1
    signatures (several while a secret rotates) is `body`'s under `secret` and its timestamp is within
    `tolerance_s` of `now`."""
    timestamp, signatures = _parse(header)
    expected = _digest(secret, timestamp, body).encode("ascii")
    if not any(hmac.compare_digest(expected, s.encode("utf-8")) for s in signatures):
        raise SignatureInvalid("no v1 signature matches the body under this secret")
    if timestamp < now - tolerance_s:
        raise SignatureInvalid(f"the signature is {now - timestamp}s old, older than the {tolerance_s}s "
                               "tolerance (a replay?)")
    if timestamp > now + tolerance_s:
        raise SignatureInvalid(f"the signature is dated {timestamp - now}s ahead, more than the {tolerance_s}s "
                               "tolerance")
