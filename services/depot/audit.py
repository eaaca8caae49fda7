"""The depot's log ("Show Log"): appending events to a customer's hash chain, listing and verifying it."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass

from services.depot import chain
from services.depot.barrier import LogSealer
from services.depot.store import Store, Tx
from services.kit.errors import DataLoss
from services.kit.logs import request_id_var
from services.kit.paging import INT, PageTokens

# Actions and outcomes (the names of the proto's LogAction / LogOutcome without their prefix).
CREATE, UPDATE, SECRET_OVERWRITE, REVEAL, REVEAL_DENIED, DELETE = (
    "CREATE", "UPDATE", "SECRET_OVERWRITE", "REVEAL", "REVEAL_DENIED", "DELETE")
RESTRICTED_VIEW_CHANGE, EXPIRE, PURGE, DECRYPT_FAILED = ("RESTRICTED_VIEW_CHANGE", "EXPIRE", "PURGE", "DECRYPT_FAILED")
REVEAL_DENIALS_COUNTED = "REVEAL_DENIALS_COUNTED"  # refused reveals of a caller outside the customer, counted
EXPIRY_WARNING = "EXPIRY_WARNING"  # an entry's expiration is near (maintenance.warn_once)
WEBHOOK_DELIVERY_FAILED = "WEBHOOK_DELIVERY_FAILED"  # a webhook delivery was parked (its name in logon_data)
SUCCESS, DENIED, FAILED = "SUCCESS", "DENIED", "FAILED"
DEPOT_ACTOR = "services/depot"  # the actor of the sweep and of key rotation
logger = logging.getLogger(__name__)
DETAIL_MAX = 1000
VERIFY_BATCH = 10_000
EVENT_PAGES = PageTokens(INT)  # ListLogEvents: after the event's sequence, in the order asked for
EventValues = chain.EventValues  # an event as stored (what the chain covers)


@dataclass(frozen=True)
class Event:
    """What happened, by whom, to what. `detail` must never hold a secret."""

    action: str
    actor: str
    outcome: str = SUCCESS
    system: str = ""
    logon_data: str = ""
    incident: str = ""
    detail: str = ""


def check_sealed(sealer: LogSealer, customer: str, last_sequence: int, last_hash: str, seal: object) -> None:
    """Refuse to extend a log whose head the depot did not seal: appending would seal what someone else wrote."""
    if not sealer.verifies(customer, last_sequence, last_hash, seal):
        logger.error("the log head of customers/%s does not carry the depot's seal: nothing is logged for this "
                     "customer (so nothing changed or revealed) until the log is restored", customer)
        raise DataLoss(f"the log of customers/{customer} was changed outside the depot, so nothing can be logged "
                       "for it, and nothing is changed or revealed; an administrator must restore it")


async def _head(tx: Tx, sealer: LogSealer, customer: str) -> tuple[int, str, bool]:
    """The customer's last sequence and hash, locked for the rest of the transaction (the genesis if it has no
    event yet), and whether it has a head; DataLoss if the head does not carry the depot's seal."""
    head = await tx.log_head(customer)
    if head is None:
        return 0, chain.GENESIS, False
    check_sealed(sealer, customer, head.last_sequence, head.last_hash, head.seal)
    return head.last_sequence, head.last_hash, True


async def lock_head(tx: Tx, sealer: LogSealer, customer: str) -> None:
    """Lock the customer's log head for the rest of the transaction, checking its seal first (DataLoss if the log
    cannot be extended): for work that must know before it writes anything else that its events can be logged."""
    await _head(tx, sealer, customer)


async def append(tx: Tx, sealer: LogSealer, customer: str, event: Event, now: dt.datetime) -> EventValues:
    """Append `event` to the customer's chain inside the caller's transaction, and seal the new head with
    `sealer`. If it cannot be written the caller's transaction fails with AUDIT_UNAVAILABLE, so nothing it logs
    is done without its event."""
    return (await append_many(tx, sealer, customer, [event], now))[0]


def event_values(customer: str, last_sequence: int, last_hash: str, event: Event, now: dt.datetime) -> EventValues:
    """The event after (last_sequence, last_hash) in the customer's chain, hashed (not yet stored)."""
    values = EventValues(customer, last_sequence + 1, event.action, event.outcome, event.actor, event.system,
                         event.logon_data, event.incident, event.detail[:DETAIL_MAX], now, request_id_var.get(),
                         last_hash, "")
    return values._replace(hash=chain.link(last_hash, values))


async def append_many(tx: Tx, sealer: LogSealer, customer: str, events: list[Event],
                      now: dt.datetime) -> list[EventValues]:
    """Append `events`, in order, to the customer's chain inside the caller's transaction: the head locked and
    moved once, the events inserted in one statement, the new head sealed. Same failures as `append`. Returns
    the events as stored."""
    if not events:
        return []
    sequence, last_hash, known = await _head(tx, sealer, customer)
    rows = []
    for event in events:
        values = event_values(customer, sequence, last_hash, event, now)
        rows.append(values)
        sequence, last_hash = values.sequence, values.hash
    await tx.add_events(rows)
    await tx.set_log_head(customer, sequence, last_hash, sealer.seal(customer, sequence, last_hash), new=not known)
    return rows


async def record(store: Store, sealer: LogSealer, customer: str, event: Event, now: dt.datetime) -> EventValues:
    """Append one event in its own committed transaction (e.g. a denied reveal, before the denial is sent)."""
    return await store.write(lambda tx: append(tx, sealer, customer, event, now))


@dataclass(frozen=True)
class Filters:
    system: str = ""
    logon_data: str = ""
    actor: str = ""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    newest_first: bool = False


async def list_events(store: Store, customer: str, filters: Filters, page_token: str, size: int) \
        -> tuple[list, str]:
    """A page of at most `size` events of a customer in sequence order, oldest first, or newest first with
    `filters.newest_first`, and the next page's token ("" when this is the last); a token is valid only with
    the filters and order it was issued for."""
    scope = {"parent": f"customers/{customer}", **dataclasses.asdict(filters)}
    cursor = EVENT_PAGES.read(page_token, scope)
    async with store.read() as tx:
        rows = await tx.events_page(customer, filters, cursor[0] if cursor else 0, size + 1)
    if len(rows) <= size:
        return rows, ""
    return rows[:size], EVENT_PAGES.issue([rows[size - 1].sequence], scope)


UNSEALED = ("the log head's seal does not match its last event: the log was rewritten outside the depot "
            "(events and hashes recomputed), or the head was")


async def verify(store: Store, sealer: LogSealer, customer: str, kept: chain.LogHead | None = None) \
        -> chain.Verdict:
    """Walk the customer's chain in sequence order, in batches, up to the first event that does not verify;
    then the head: it must record the last event, and carry the seal only the depot can make; then, with a
    `kept` head (one an earlier verdict returned, kept by the customer), the log must still hold that event with
    that hash: a log put back to an earlier state of itself, sealed and consistent, does not extend it."""
    verifier = chain.Verifier(kept)
    async with store.read() as tx:
        head = await tx.log_head(customer, lock=False)
        last = 0
        while True:
            rows = await tx.chained_events(customer, last, VERIFY_BATCH)
            for row in rows:
                if not verifier.feed(row):
                    return verifier.against_kept(verifier.finish(0, ""))
            if len(rows) < VERIFY_BATCH:
                break
            last = rows[-1].sequence
    if head is None:
        return verifier.against_kept(verifier.finish(0, chain.GENESIS))
    verdict = verifier.finish(head.last_sequence, head.last_hash)
    if verdict.valid and not sealer.verifies(customer, head.last_sequence, head.last_hash, head.seal):
        verdict = chain.Verdict(False, verdict.events_checked, head.last_sequence, UNSEALED)
    return verifier.against_kept(verdict)
