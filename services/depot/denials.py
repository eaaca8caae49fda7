"""Refused reveals by callers outside the entry's customer: logged one by one up to a bound per hour, then counted.

Anyone can name any customer's entries, so without a bound a user of customer A could fill customer B's log with
REVEAL_DENIED events. A caller is *outside* the customer when authz refused it even the sight of the system's
logon data and it is not a customer user of that customer: a user of another customer, a support engineer without
a support assignment for the system (the same reach as a stranger: no incident of the system is in process with
them, and any engineer can name any entry), the platform admin, a service account. Refusals of callers inside
the customer - its own users, and engineers whose assignment lets them see the system (outside the restricted
view, or for another incident) - are all logged one by one, in the transaction that refuses, as before.

Per (customer, caller) the depot keeps, in its database, the hour that began with the caller's first refusal:
the first `RS_DEPOT_FOREIGN_DENIALS_PER_HOUR` refusals in it are logged one by one (REVEAL_DENIED), the rest are
only counted, in the same transaction style (the hour's row locked, so replicas on PostgreSQL count each once).
When the hour has passed, one REVEAL_DENIALS_COUNTED event by that caller carries the count into the log: at
the caller's next refusal (before the refusal that begins the next hour), or by the depot's background pass
(`log_counts`), whichever comes first. A customer whose log cannot be extended keeps its counts until it can.

The refusal itself is the same whatever happened to its event: PERMISSION_DENIED with authz's reason, as for an
entry that does not exist. Even when the event cannot be written (the customer's log is not sealed by the
depot, or the database refused), the outsider gets that answer (the depot's own log says what was not
written): an outsider must not learn that the entry exists, nor the state of another customer's log."""
from __future__ import annotations

import datetime as dt
import logging

from services.depot import audit
from services.depot.deps import Depot
from services.depot.store import DatabaseRefused, EngineTx
from services.kit import names
from services.kit.auth import Subject
from services.kit.clock import as_utc
from services.kit.errors import AuditUnavailable, DataLoss
from services.kit.principals import CUSTOMER_USER

WINDOW = dt.timedelta(hours=1)
BATCH = 500
logger = logging.getLogger(__name__)


def is_member(subject: Subject, customer: str) -> bool:
    """Whether the caller is a customer user of `customer` (a customer number)."""
    return subject.kind == CUSTOMER_USER and subject.customer == names.customer(customer)


def counted_event(window) -> audit.Event:
    """The event carrying an hour's count (a foreign_denials row) into the log."""
    start = as_utc(window.window_start)
    return audit.Event(audit.REVEAL_DENIALS_COUNTED, window.actor, audit.DENIED, detail=(
        f"{window.counted} refused reveals counted, not each logged: past the {window.logged} logged one by one, "
        f"this caller outside the customer had {window.counted} more reveals of the customer's entries refused "
        f"from {start.isoformat()} to {(start + WINDOW).isoformat()}"))


async def refused(depot: Depot, customer: str, event: audit.Event) -> None:
    """Log `event` (a REVEAL_DENIED of one of the customer's entries by a caller outside it), or only count it
    when the caller's hour already holds the bound of logged ones; an hour that has passed is closed first, its
    count logged. Never raises for a log that cannot be written: see the module's docstring."""
    now = depot.clock.now()
    bound = depot.settings.foreign_denials_per_hour

    async def work(tx: EngineTx) -> None:
        window = await tx.denial_window(customer, event.actor)
        if window is not None and now < as_utc(window.window_start) + WINDOW:
            logged = window.logged < bound
            if logged:
                await audit.append(tx, depot.sealer, customer, event, now)
            await tx.add_denial(customer, event.actor, logged=logged)
            return
        closing = [counted_event(window)] if window is not None and window.counted else []
        await audit.append_many(tx, depot.sealer, customer, [*closing, event], now)
        await tx.start_denial_window(customer, event.actor, now, new=window is None)

    try:
        await depot.store.write(work)
    except (AuditUnavailable, DataLoss, DatabaseRefused) as err:
        logger.error("a reveal refused to %s (outside customers/%s) could not be logged or counted (%s); the "
                     "refusal is sent as for an entry that does not exist", event.actor, customer,
                     type(err).__name__)


async def log_counts(depot: Depot) -> int:
    """Close every hour that has passed: its count, if any, logged (REVEAL_DENIALS_COUNTED), and its row
    forgotten; in batches of BATCH hours, each one transaction. A customer whose log cannot be extended (DataLoss,
    logged by audit) keeps its hours until the log is restored. Returns how many counts were logged."""
    logged = 0
    stopped: set[str] = set()  # customers whose log refused the counts in this pass

    async def work(tx: EngineTx, now: dt.datetime) -> tuple[int, int]:
        rows = await tx.ended_denial_windows(now - WINDOW, stopped, BATCH)
        by_customer: dict[str, list[audit.Event]] = {}
        for row in rows:
            if row.counted:
                by_customer.setdefault(row.customer, []).append(counted_event(row))
        for customer, events in by_customer.items():
            try:
                await audit.append_many(tx, depot.sealer, customer, events, now)
            except DataLoss:  # refused before anything of this customer's was written
                stopped.add(customer)
        await tx.delete_denial_windows([(row.customer, row.actor) for row in rows if row.customer not in stopped])
        return len(rows), sum(len(events) for customer, events in by_customer.items() if customer not in stopped)

    while True:
        found, counts = await depot.store.write(lambda tx: work(tx, depot.clock.now()))
        logged += counts
        if found < BATCH:
            return logged
