"""Readers of a service's outbox (its events, the same the feed reads) that hand every event on at least once and
keep in the service's database how far they got: the SIEM export (siem.Exporter) and the event mails
(notices.EventMailer). `OutboxReader` is their one loop: a pass whenever the service commits (the notifier) or
every `interval_s`, each customer whose events go past the reader's mark (`Outbox.behind`) read in batches and
handed to `handle`, which moves the mark; a failure of the reader's dependency is logged once per outage and
retried at the next pass, any other once per pass."""
from __future__ import annotations

import logging
from typing import Sequence

from services.kit import feed

logger = logging.getLogger(__name__)


class OutboxReader:
    """Subclasses set `what` (for the log), `transient` (the exceptions of an outage), `outbox`, `notifier`,
    `interval_s` and `batch`, and implement `handle`."""

    what = "outbox reader"
    transient: tuple[type[BaseException], ...] = ()

    def __init__(self, outbox, notifier: feed.Notifier, interval_s: float, batch: int) -> None:
        self.outbox, self.notifier, self.interval_s, self.batch = outbox, notifier, interval_s, batch
        self._failing = False

    async def handle(self, customer: str, events: Sequence[feed.FeedEvent]) -> int:
        """Hand on `events` (the next of the customer's, in order) and move the mark; how many went out."""
        raise NotImplementedError

    async def outage(self, error: BaseException) -> str:
        """What to say of an outage once (and clean up after it)."""
        return f"{type(error).__name__}"

    async def run_forever(self) -> None:
        while True:
            ticket = self.notifier.ticket()  # before the pass: a commit during it wakes the next one at once
            try:
                await self.pass_once()
                if self._failing:
                    logger.warning("%s works again", self.what)
                self._failing = False
            except self.transient as error:
                said = await self.outage(error)
                if not self._failing:  # once per outage, not once per pass
                    logger.warning("%s waits (%s); what is not handed on yet goes when it answers", self.what, said)
                self._failing = True
            except Exception:  # noqa: BLE001 - the loop must outlive a failed pass; the next one retries
                logger.exception("%s pass failed; retrying in %.1fs", self.what, self.interval_s)
            await self.notifier.wait(ticket, self.interval_s)

    async def pass_once(self) -> int:
        """Hand on every event not yet handed on; returns how many went out."""
        sent = 0
        while True:
            behind = await self.outbox.behind(self.batch)
            if not behind:
                return sent
            for customer, position in behind:
                events = await self.outbox.events_after(customer, position, self.batch)
                if events:
                    sent += await self.handle(customer, events)
