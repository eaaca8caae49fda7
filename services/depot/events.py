"""The depot's event feed: its hash-chained log, read as the suite's events (kit feed).

The log is the depot's outbox: every change and every reveal appends its event in the change's transaction,
under the customer's locked log head, so a position (the log sequence) exists if and only if its change
committed, and positions commit in order. An event is shown to whom `ListLogEvents` shows it (the customer's EDIT_MY and EDIT_ALL users), so its
resource carries no installation: no engineer clause reads it."""
from __future__ import annotations

from typing import Sequence

from services.depot import audit
from services.depot.store import Store
from services.kit import feed
from services.kit import permissions as P

SOURCE = "depot"
RULES = feed.Rules(watch=P.DEPOT_EVENTS_WATCH, read=P.DEPOT_EVENTS_READ)
_REFUSED = {audit.REVEAL_DENIED, audit.REVEAL_DENIALS_COUNTED, audit.DECRYPT_FAILED}
_TYPES = {audit.CREATE: "LOGON_DATA_CREATED", audit.UPDATE: "LOGON_DATA_CHANGED",
          audit.SECRET_OVERWRITE: "LOGON_DATA_CHANGED", audit.DELETE: "LOGON_DATA_DELETED",
          audit.PURGE: "LOGON_DATA_DELETED", audit.EXPIRE: "LOGON_DATA_EXPIRED",
          audit.RESTRICTED_VIEW_CHANGE: "RESTRICTED_VIEW_CHANGED"}


def event_type(action: str, outcome: str) -> str:
    """The suite's event type of a log event's action and outcome."""
    if action == audit.REVEAL:
        return "LOGON_DATA_REVEALED" if outcome == audit.SUCCESS else "LOGON_DATA_REVEAL_REFUSED"
    if action in _REFUSED:
        return "LOGON_DATA_REVEAL_REFUSED"
    return _TYPES[action]


class DepotEvents:
    """feed.Source and siem.Outbox over the depot's log."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def events_after(self, customer: str, position: int, limit: int) -> Sequence[feed.FeedEvent]:
        async with self.store.read() as tx:
            rows = await tx.events_page(customer, audit.Filters(), position, limit)
        return [_event(row) for row in rows]

    async def last_position(self, customer: str) -> int:
        async with self.store.read() as tx:
            head = await tx.log_head(customer, lock=False)
        return head.last_sequence if head else 0

    async def behind(self, limit: int) -> list[tuple[str, int]]:
        async with self.store.read() as tx:
            return await tx.siem_behind(limit)

    async def exported(self, customer: str, position: int) -> None:
        await self.store.write_on_engine(lambda tx: tx.siem_exported(customer, position))


def _event(row) -> feed.FeedEvent:
    return feed.FeedEvent(position=row.sequence, type=event_type(row.action, row.outcome), actor=row.actor,
                          time=row.event_time, system=row.system, resource=row.logon_data, incident=row.incident,
                          detail=row.detail, log_sequence=row.sequence, chain_hash=row.hash)
