"""The depot's log ("Show Log"): appending events to a customer's hash chain, listing and verifying it."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.depot import chain
from services.depot.barrier import LogSealer
from services.depot.store import SEALER, LogConflict, Store
from services.depot.tables import LogEventRow, LogHeadRow
from services.kit.errors import AuditUnavailable, DataLoss
from services.kit.logs import request_id_var

# Actions and outcomes (the names of the proto's LogAction / LogOutcome without their prefix).
CREATE, UPDATE, SECRET_OVERWRITE, REVEAL, REVEAL_DENIED, DELETE = (
    "CREATE", "UPDATE", "SECRET_OVERWRITE", "REVEAL", "REVEAL_DENIED", "DELETE")
RESTRICTED_VIEW_CHANGE, EXPIRE, PURGE, DECRYPT_FAILED = ("RESTRICTED_VIEW_CHANGE", "EXPIRE", "PURGE", "DECRYPT_FAILED")
SUCCESS, DENIED, FAILED = "SUCCESS", "DENIED", "FAILED"
DEPOT_ACTOR = "services/depot"  # the actor of the sweep and of key rotation
logger = logging.getLogger(__name__)
DETAIL_MAX = 1000
VERIFY_BATCH = 10_000


# log_events' columns but pk, in chain.EventValues order (what the chain covers; local.py inserts them)
CHAINED_COLUMNS = [LogEventRow.__table__.c[name] for name in chain.EventValues._fields]
if {c.name for c in CHAINED_COLUMNS} != {c.name for c in LogEventRow.__table__.columns if c.name != "pk"}:
    raise RuntimeError("chain.EventValues must list every column of log_events but pk")


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


async def _locked_head(session: AsyncSession, customer: str) -> LogHeadRow:
    """The customer's log head, locked for the rest of the transaction (created at the genesis if new)."""
    head = (await session.execute(
        select(LogHeadRow).where(LogHeadRow.customer == customer).with_for_update())).scalar_one_or_none()
    if head is None:
        head = LogHeadRow(customer=customer, last_sequence=0, last_hash=chain.GENESIS)
        session.add(head)
    else:
        check_sealed(session.info[SEALER], customer, head.last_sequence, head.last_hash, head.seal)
    return head


def check_sealed(sealer: LogSealer, customer: str, last_sequence: int, last_hash: str, seal: object) -> None:
    """Refuse to extend a log whose head the depot did not seal: appending would seal what someone else wrote."""
    if not sealer.verifies(customer, last_sequence, last_hash, seal):
        logger.error("the log head of customers/%s does not carry the depot's seal: nothing is logged for this "
                     "customer (so nothing changed or revealed) until the log is restored", customer)
        raise DataLoss(f"the log of customers/{customer} was changed outside the depot, so nothing can be logged "
                       "for it, and nothing is changed or revealed; an administrator must restore it")


def _advance(session: AsyncSession, head: LogHeadRow, last_sequence: int, last_hash: str) -> None:
    """Move the head to the newest event, sealed with the Store's sealer (Store.write hands it over)."""
    head.last_sequence, head.last_hash = last_sequence, last_hash
    head.seal = session.info[SEALER].seal(head.customer, last_sequence, last_hash)


async def append(session: AsyncSession, customer: str, event: Event, now: dt.datetime) -> LogEventRow:
    """Append `event` to the customer's chain inside the caller's transaction. If it cannot be written the
    caller's transaction fails with AUDIT_UNAVAILABLE, so nothing it logs is done without its event."""
    try:
        head = await _locked_head(session, customer)
        row = LogEventRow(**event_values(customer, head.last_sequence, head.last_hash, event, now)._asdict())
        session.add(row)
        _advance(session, head, row.sequence, row.hash)
        await session.flush()
    except IntegrityError:
        raise LogConflict("the depot log could not be written; nothing was done") from None
    except DBAPIError:
        raise AuditUnavailable("the depot log could not be written; nothing was done") from None
    return row


EventValues = chain.EventValues


def event_values(customer: str, last_sequence: int, last_hash: str, event: Event, now: dt.datetime) -> EventValues:
    """The event after (last_sequence, last_hash) in the customer's chain, hashed (not yet stored)."""
    values = EventValues(customer, last_sequence + 1, event.action, event.outcome, event.actor, event.system,
                         event.logon_data, event.incident, event.detail[:DETAIL_MAX], now, request_id_var.get(),
                         last_hash, "")
    return values._replace(hash=chain.link(last_hash, values))


async def append_many(session: AsyncSession, customer: str, events: list[Event], now: dt.datetime) -> int:
    """Append `events`, in order, to the customer's chain inside the caller's transaction: the head locked and
    updated once, the events inserted in one statement. Same failures as `append`. Returns how many."""
    if not events:
        return 0
    try:
        head = await _locked_head(session, customer)
        sequence, last_hash, rows = head.last_sequence, head.last_hash, []
        for event in events:
            values = event_values(customer, sequence, last_hash, event, now)
            rows.append(values._asdict())
            sequence, last_hash = values.sequence, values.hash
        await session.execute(insert(LogEventRow), rows)
        _advance(session, head, sequence, last_hash)
        await session.flush()
    except IntegrityError:
        raise LogConflict("the depot log could not be written; nothing was done") from None
    except DBAPIError:
        raise AuditUnavailable("the depot log could not be written; nothing was done") from None
    return len(rows)


async def record(store: Store, customer: str, event: Event, now: dt.datetime) -> LogEventRow:
    """Append one event in its own committed transaction (e.g. a denied reveal, before the denial is sent)."""
    return await store.write(lambda session: append(session, customer, event, now))


@dataclass(frozen=True)
class Filters:
    system: str = ""
    logon_data: str = ""
    actor: str = ""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    newest_first: bool = False


async def list_events(store: Store, customer: str, filters: Filters, cursor: int, size: int) -> list[LogEventRow]:
    """At most `size` events of a customer in sequence order, oldest first, or newest first with
    `filters.newest_first`; past the sequence `cursor` (the last one of the previous page; 0: from the start)."""
    query = select(LogEventRow).where(LogEventRow.customer == customer)
    if filters.newest_first:
        if cursor:
            query = query.where(LogEventRow.sequence < cursor)
    else:
        query = query.where(LogEventRow.sequence > cursor)
    if filters.system:
        query = query.where(LogEventRow.system == filters.system)
    if filters.logon_data:
        query = query.where(LogEventRow.logon_data == filters.logon_data)
    if filters.actor:
        query = query.where(LogEventRow.actor == filters.actor)
    if filters.start_time:
        query = query.where(LogEventRow.event_time >= filters.start_time)
    if filters.end_time:
        query = query.where(LogEventRow.event_time < filters.end_time)
    async with store.read() as session:
        order = LogEventRow.sequence.desc() if filters.newest_first else LogEventRow.sequence
        return list((await session.execute(query.order_by(order).limit(size))).scalars())


UNSEALED = ("the log head's seal does not match its last event: the log was rewritten outside the depot "
            "(events and hashes recomputed), or the head was")


async def verify(store: Store, customer: str) -> chain.Verdict:
    """Walk the customer's chain in sequence order, in batches, up to the first event that does not verify;
    then the head: it must record the last event, and carry the seal only the depot can make."""
    verifier = chain.Verifier()
    async with store.read() as session:
        head = await session.get(LogHeadRow, customer)
        last = 0
        while True:  # only the chained columns, as plain rows (no ORM objects for a million events)
            rows = (await session.execute(
                select(*CHAINED_COLUMNS).where(LogEventRow.customer == customer, LogEventRow.sequence > last)
                .order_by(LogEventRow.sequence, LogEventRow.pk).limit(VERIFY_BATCH))).all()
            for row in rows:
                if not verifier.feed(chain.EventValues._make(row)):
                    return verifier.finish(0, "")
            if len(rows) < VERIFY_BATCH:
                break
            last = rows[-1].sequence
    if head is None:
        return verifier.finish(0, chain.GENESIS)
    verdict = verifier.finish(head.last_sequence, head.last_hash)
    if verdict.valid and not store.sealer.verifies(customer, head.last_sequence, head.last_hash, head.seal):
        return chain.Verdict(False, verdict.events_checked, head.last_sequence, UNSEALED)
    return verdict

