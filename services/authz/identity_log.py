"""The identity logs: every change of a customer's users and grants (and, in the vendor side's log, of
customers, engineers and service tokens), with the actor who made it, in the same unit of work as the change,
each event chained to the one before by SHA-256. A customer keeps a head (sequence and hash) to notice a log
that no longer extends it."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from services.authz.store import Queries, Store
from services.authz.tables import IdentityEventRow
from services.kit.clock import as_utc
from services.kit.errors import InvalidArgument
from services.kit.paging import INT32, PageTokens

GENESIS = "0" * 64
VENDOR = ""  # the vendor side's log: customers, support engineers, service tokens, the platform admin
EVENT_PAGES = PageTokens(INT32)  # ordered by sequence (an Integer column)
HEX64 = frozenset("0123456789abcdef")

# actions
CUSTOMER_CREATED, USER_CREATED, USER_REMOVED, USER_UPDATED, USER_DISABLED, USER_ENABLED = (
    "CUSTOMER_CREATED", "USER_CREATED", "USER_REMOVED", "USER_UPDATED", "USER_DISABLED", "USER_ENABLED")
ANONYMOUS = ""  # the actor of a change no authenticated caller made (a code voided by wrong tries)
PASSWORD_RESET, PASSWORD_SET, PASSWORD_CHANGED, CODE_VOIDED = (
    "PASSWORD_RESET", "PASSWORD_SET", "PASSWORD_CHANGED", "CODE_VOIDED")
GRANT_REQUESTED, GRANTED, GRANT_APPROVED, REVOKED, GRANT_WITHDRAWN = (
    "GRANT_REQUESTED", "GRANTED", "GRANT_APPROVED", "REVOKED", "GRANT_WITHDRAWN")
SERVICE_TOKEN_CREATED = "SERVICE_TOKEN_CREATED"


def event_hash(previous: str, customer: str, sequence: int, when: dt.datetime, actor: str, action: str,
               target: str, detail: str) -> str:
    body = json.dumps([customer, sequence, as_utc(when).isoformat(timespec="microseconds"), actor, action, target,
                       detail], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(previous.encode() + body.encode()).hexdigest()


async def append(queries: Queries, customer: str | None, when: dt.datetime, actor: str, action: str, target: str,
                 detail: str = "") -> IdentityEventRow:
    """Add one event to the log of `customer` (None or "": the vendor side's), in the caller's unit of work."""
    customer = customer or VENDOR
    head = await queries.identity_head(customer)
    sequence = head.sequence + 1
    digest = event_hash(head.hash, customer, sequence, when, actor, action, target, detail)
    row = IdentityEventRow(customer=customer, sequence=sequence, event_time=when, actor=actor, action=action,
                           target=target, detail=detail, previous_hash=head.hash, hash=digest)
    queries.add(row)
    head.sequence, head.hash = sequence, digest
    return row


async def list_events(store: Store, customer: str, page_size: int, page_token: str
                      ) -> tuple[list[IdentityEventRow], str]:
    scope = {"parent": customer, "order_by": "sequence"}
    after = EVENT_PAGES.read(page_token, scope)
    async with store.read() as queries:
        rows = await queries.identity_events(customer, after[0] if after else 0, page_size + 1)
    if len(rows) <= page_size:
        return rows, ""
    return rows[:page_size], EVENT_PAGES.issue([rows[page_size - 1].sequence], scope)


def check_head(sequence: int, digest: str, field: str) -> None:
    if sequence <= 0:
        raise InvalidArgument(f"{field}.sequence", "must be 1 or more")
    if len(digest) != 64 or not set(digest) <= HEX64:
        raise InvalidArgument(f"{field}.hash", "must be 64 lower-case hex digits")


async def verify(store: Store, customer: str, kept: tuple[int, str] | None,
                 batch: int = 1000) -> tuple[bool, int, int, str, tuple[int, str]]:
    """(valid, events checked, first broken sequence, problem, current head) of one log; with `kept`, the log
    must still hold that event with that hash."""
    checked, previous, expected = 0, GENESIS, 1
    kept_seen = False
    async with store.read() as queries:
        head = await queries.identity_head(customer, lock=False)
        while True:
            rows = await queries.identity_events(customer, expected - 1, batch)
            for row in rows:
                checked += 1
                if row.sequence != expected:
                    return False, checked, expected, f"event {expected} is missing", (head.sequence, head.hash)
                if row.previous_hash != previous or row.hash != event_hash(
                        previous, customer, row.sequence, row.event_time, row.actor, row.action, row.target,
                        row.detail):
                    return (False, checked, row.sequence, f"event {row.sequence} was changed or does not follow "
                            "the event before it", (head.sequence, head.hash))
                if kept is not None and row.sequence == kept[0]:
                    if row.hash != kept[1]:
                        return (False, checked, row.sequence, f"event {row.sequence} is not the event of the kept "
                                "head: the log was rewritten since", (head.sequence, head.hash))
                    kept_seen = True
                previous, expected = row.hash, expected + 1
            if len(rows) < batch:
                break
    last = expected - 1
    if (head.sequence, head.hash) != (last, previous):
        return False, checked, last, "the log head does not match the last event", (head.sequence, head.hash)
    if kept is not None and not kept_seen:
        return (False, checked, kept[0], f"the log ends at event {last}, before the kept head's event {kept[0]}: "
                "it was rolled back or truncated", (head.sequence, head.hash))
    return True, checked, 0, "", (head.sequence, head.hash)
