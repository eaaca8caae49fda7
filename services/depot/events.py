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
_REFUSED = {audit.REVEAL_DENIED, audit.REVEAL_DENIALS_COUNTED}
_TYPES = {audit.CREATE: "LOGON_DATA_CREATED", audit.UPDATE: "LOGON_DATA_CHANGED",
          audit.SECRET_OVERWRITE: "LOGON_DATA_CHANGED", audit.DELETE: "LOGON_DATA_DELETED",
          audit.PURGE: "LOGON_DATA_DELETED", audit.EXPIRE: "LOGON_DATA_EXPIRED",
          audit.RESTRICTED_VIEW_CHANGE: "RESTRICTED_VIEW_CHANGED", audit.EXPIRY_WARNING: "LOGON_DATA_EXPIRING",
          audit.DECRYPT_FAILED: "LOGON_DATA_UNREADABLE", audit.WEBHOOK_DELIVERY_FAILED: "WEBHOOK_DELIVERY_FAILED"}


def event_type(action: str, outcome: str) -> str:
    """The suite's event type of a log event's action and outcome."""
    if action == audit.REVEAL:
        return "LOGON_DATA_REVEALED" if outcome == audit.SUCCESS else "LOGON_DATA_REVEAL_REFUSED"
    if action in _REFUSED:
        return "LOGON_DATA_REVEAL_REFUSED"
    return _TYPES[action]


class DepotEvents:
    """feed.Source, and siem.Outbox for `reader` ("siem", "mail"), over the depot's log."""

    def __init__(self, store: Store, reader: str = "siem") -> None:
        self.store = store
        self.reader = reader

    async def events_after(self, customer: str, position: int, limit: int) -> Sequence[feed.FeedEvent]:
        async with self.store.read() as tx:  # the engine: measured cheaper here than the local connection
            rows = await tx.feed_page(customer, position, limit)
        return [_event(*row) for row in rows]

    async def last_position(self, customer: str) -> int:
        return await self.store.log_position(customer)

    async def behind(self, limit: int) -> list[tuple[str, int]]:
        async with self.store.read() as tx:
            return await tx.outbox_behind(self.reader, limit)

    async def exported(self, customer: str, position: int) -> None:
        await self.store.write_on_engine(lambda tx: tx.outbox_handled(self.reader, customer, position))


def _event(sequence, action, outcome, actor, system, logon_data, incident, detail, event_time, chain_hash
           ) -> feed.FeedEvent:
    """A log event (store.FEED_COLUMNS) as the feed's event."""
    return feed.FeedEvent(position=sequence, type=event_type(action, outcome), actor=actor, time=event_time,
                          system=system, resource=logon_data, incident=incident, detail=detail,
                          log_sequence=sequence, chain_hash=chain_hash)
