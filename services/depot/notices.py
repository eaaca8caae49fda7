"""Whom the depot's events concern by mail (services.kit.notices): the user who stored an entry, when someone else
revealed it and before it expires. An entry deleted meanwhile concerns nobody any more."""
from __future__ import annotations

from typing import Sequence

from services.depot.store import Store
from services.kit import feed
from services.kit.notices import Notice

KINDS = {"LOGON_DATA_REVEALED": "LOGON_DATA_REVEALED", "LOGON_DATA_EXPIRING": "LOGON_DATA_EXPIRING"}  # event: mail


def _entry_id(event: feed.FeedEvent) -> str:
    return event.resource.rsplit("/", 1)[-1]


def recipients_of(store: Store):
    async def recipients(customer: str, events: Sequence[feed.FeedEvent]) -> list[Notice]:
        concerned = [e for e in events if e.type in KINDS and e.resource]
        if not concerned:
            return []
        async with store.read() as tx:
            creators = await tx.creators(customer, sorted({_entry_id(e) for e in concerned}))
        out = []
        for event in concerned:
            owner = creators.get(_entry_id(event))
            if owner and not (event.type == "LOGON_DATA_REVEALED" and event.actor == owner):  # one's own: no mail
                out.append(Notice(event, owner, KINDS[event.type]))
        return out

    return recipients
