"""Whom the depot's events concern by mail (services.kit.notices): the user who stored an entry, when someone else
revealed it and before it expires (its creator, from the log: also when the entry was deleted since); the user
who registered a webhook, when a delivery to it failed and was parked."""
from __future__ import annotations

from typing import Sequence

from services.depot.store import Store
from services.kit import feed, names
from services.kit.notices import Notice

ENTRY_KINDS = {"LOGON_DATA_REVEALED": "LOGON_DATA_REVEALED", "LOGON_DATA_EXPIRING": "LOGON_DATA_EXPIRING"}
WEBHOOK_FAILED = "WEBHOOK_DELIVERY_FAILED"  # its resource is the delivery's name


def _webhook_id(event: feed.FeedEvent) -> str | None:
    try:
        return names.parse("webhook_delivery", event.resource, "resource")["webhook"]
    except Exception:  # noqa: BLE001 - not a delivery's name: concerns nobody
        return None


def recipients_of(store: Store):
    async def recipients(customer: str, events: Sequence[feed.FeedEvent]) -> list[Notice]:
        entries = [e for e in events if e.type in ENTRY_KINDS and e.resource]
        failures = [e for e in events if e.type == WEBHOOK_FAILED and _webhook_id(e)]
        if not entries and not failures:
            return []
        async with store.read() as tx:
            owners = await tx.creators(customer, sorted({e.resource for e in entries})) if entries else {}
            registrants = await tx.webhook_creators(customer, sorted({_webhook_id(e) for e in failures})) \
                if failures else {}
        out = []
        for event in events:
            if event.type == WEBHOOK_FAILED:
                registrant = registrants.get(_webhook_id(event) or "")
                if registrant:
                    out.append(Notice(event, registrant, "WEBHOOK_FAILING"))
            elif event.type in ENTRY_KINDS and event.resource:
                owner = owners.get(event.resource)
                if owner and not (event.type == "LOGON_DATA_REVEALED" and event.actor == owner):  # one's own
                    out.append(Notice(event, owner, ENTRY_KINDS[event.type]))
        return out

    return recipients
