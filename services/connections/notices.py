"""Whom the connections service's events concern by mail (services.kit.notices): the reporter of an incident an
engineer took, the opener of a window that closes soon."""
from __future__ import annotations

from typing import Sequence

from services.connections.store import Store
from services.kit import feed
from services.kit.notices import Notice


def _last_id(event: feed.FeedEvent) -> str:
    return event.resource.rsplit("/", 1)[-1]


def recipients_of(store: Store):
    async def recipients(customer: str, events: Sequence[feed.FeedEvent]) -> list[Notice]:
        taken = [e for e in events if e.type == "INCIDENT_TAKEN" and e.resource]
        closing = [e for e in events if e.type == "WINDOW_CLOSING" and e.resource]
        if not taken and not closing:
            return []
        async with store.read() as uow:
            openers, reporters = await uow.people_of(customer, sorted({_last_id(e) for e in closing}),
                                                     sorted({_last_id(e) for e in taken}))
        people = {"INCIDENT_TAKEN": reporters, "WINDOW_CLOSING": openers}  # event type: its mail's kind too
        return [Notice(e, people[e.type][_last_id(e)], e.type) for e in events
                if e.type in people and e.resource and people[e.type].get(_last_id(e))]

    return recipients
