"""The connections service's events (windows, incidents, relay sessions) and its feed (kit feed).

Each change writes its event in its own transaction (`UnitOfWork.emit`, the relay's store likewise): the
`events` table is the service's outbox, so an event exists if and only if its change committed. An event is
shown to the customer's members and to the engineer assigned to its system (for an incident's event: assigned
to that incident; a session's event only to the engineer whose session it is), as the lists show windows,
incidents and sessions."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from services.connections.store import Store
from services.connections.tables import EventRow, IncidentRow, SessionRow, WindowRow
from services.kit import feed, names
from services.kit import permissions as P

SOURCE = "connections"
RULES = feed.Rules(watch=P.CONNECTIONS_EVENTS_WATCH, read=P.CONNECTIONS_EVENTS_READ)
DETAIL_MAX = 500


def _incident(customer: str, incident_id: str | None) -> str:
    return f"customers/{customer}/incidents/{incident_id}" if incident_id else ""


def _event(type_: str, actor: str, now: dt.datetime, customer: str, system_number: str, resource: str, *,
           incident: str = "", scope_incident: str = "", detail: str = "") -> EventRow:
    return EventRow(customer=customer, type=type_, actor=actor, time=now,
                    system=names.system(customer, system_number), resource=resource, incident=incident,
                    scope_incident=scope_incident, detail=detail[:DETAIL_MAX])


def window_event(type_: str, row: WindowRow, actor: str, now: dt.datetime, detail: str = "") -> EventRow:
    """WINDOW_OPENED, _EXTENDED, _CLOSING, _CLOSED or _EXPIRED: seen by whom sees the system's windows."""
    name = f"{names.system(row.customer, row.system_number)}/connections/{row.id}"
    return _event(type_, actor, now, row.customer, row.system_number, name,
                  incident=_incident(row.customer, row.incident_id), detail=detail)


def incident_event(type_: str, row: IncidentRow, actor: str, now: dt.datetime, detail: str = "") -> EventRow:
    """INCIDENT_CREATED, _TAKEN or _STATUS_CHANGED: an engineer sees it while processing the incident."""
    name = _incident(row.customer, row.id)
    return _event(type_, actor, now, row.customer, row.system_number, name, incident=name, scope_incident=name,
                  detail=detail)  # never the title or description: what a caller wrote stays in the incident


def session_event(type_: str, row: SessionRow, now: dt.datetime, detail: str = "") -> EventRow:
    """SESSION_STARTED, _REFUSED or _ENDED, by the session's principal: an engineer sees the sessions of the
    incident it processes."""
    name = f"{names.system(row.customer, row.system_number)}/sessions/{row.id}"
    return _event(type_, row.principal, now, row.customer, row.system_number, name, incident=row.incident,
                  scope_incident=row.incident, detail=detail)


class ConnectionsEvents:
    """feed.Source, and siem.Outbox for `reader` ("siem", "mail"), over the `events` table."""

    def __init__(self, store: Store, reader: str = "siem") -> None:
        self.store = store
        self.reader = reader

    async def events_after(self, customer: str, position: int, limit: int) -> Sequence[feed.FeedEvent]:
        async with self.store.read() as uow:
            rows = await uow.events_after(customer, position, limit)
        return [feed.FeedEvent(position=r.position, type=r.type, actor=r.actor, time=r.time, system=r.system,
                               resource=r.resource, incident=r.incident, scope_incident=r.scope_incident,
                               detail=r.detail, actor_only=r.type.startswith("SESSION_")) for r in rows]

    async def last_position(self, customer: str) -> int:
        async with self.store.read() as uow:
            return await uow.last_event_position(customer)

    async def behind(self, limit: int) -> list[tuple[str, int]]:
        async with self.store.read() as uow:
            return await uow.outbox_behind(self.reader, limit)

    async def exported(self, customer: str, position: int) -> None:
        async with self.store.write() as uow:
            await uow.outbox_handled(self.reader, customer, position)
