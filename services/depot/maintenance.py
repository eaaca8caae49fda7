"""Background work: the expiry sweep (expired entries deleted with their data keys) and re-wrapping entries
onto the active ring key after a rotation. Each pass is one bounded transaction; both are idempotent."""
from __future__ import annotations

import datetime as dt

from services.depot import access, audit
from services.depot.deps import Depot
from services.depot.keyring import KeyWorn, SecretUnreadable
from services.depot.store import EngineTx
from services.kit.clock import as_utc
from services.kit.errors import DataLoss

SWEEP_BATCH = 500


def purge_event(row) -> audit.Event:
    return audit.Event(audit.PURGE, audit.DEPOT_ACTOR, system=access.system_name(row), logon_data=access.name_of(row),
                       incident=row.restricted_incident, detail="expired entry deleted with its data key")


async def sweep_once(depot: Depot) -> int:
    """Delete every entry expired by now, with its data key, logging EXPIRE (if not yet) and PURGE for each.
    Works in batches of SWEEP_BATCH entries, each one transaction: the batch's events appended per customer
    (one head lock, one insert), then the batch deleted in one statement - logged before deleted, and nothing
    half-done if any of it fails. A customer whose log cannot be extended (changed outside the depot: DataLoss,
    logged by audit) keeps its expired entries until the log is restored; the others are swept. Returns how many
    were deleted."""
    purged = 0
    stopped: set[str] = set()  # customers whose log refused the sweep's events in this pass

    async def work(tx: EngineTx, now) -> tuple[int, int]:
        rows = await tx.expired_entries(now, stopped, SWEEP_BATCH)
        by_customer: dict[str, list[audit.Event]] = {}
        for row in rows:
            events = by_customer.setdefault(row.customer, [])
            if not row.expiry_logged:
                events.append(access.expired_event(row))
            events.append(purge_event(row))
        for customer, events in by_customer.items():
            try:
                await audit.append_many(tx, depot.sealer, customer, events, now)
            except DataLoss:  # refused before anything of this customer's was written
                stopped.add(customer)
        doomed = [row.pk for row in rows if row.customer not in stopped]
        if doomed:
            await tx.delete_entries(doomed)
        return len(rows), len(doomed)

    while True:
        now = depot.clock.now()
        found, deleted = await depot.store.write(lambda tx: work(tx, now))
        purged += deleted
        if found < SWEEP_BATCH:
            return purged


def due_warning(expire_time: dt.datetime, create_time: dt.datetime, now: dt.datetime,
                leads: tuple[dt.timedelta, ...], warned: tuple[dt.datetime, int] | None) -> dt.timedelta | None:
    """The warning of an entry's expiration due at `now`, if any: the closest lead already reached whose instant
    came after the entry was created (an entry created 3 days before it expires gets no 7-day warning), unless
    that one or a closer one was logged for this same expiration date (`warned`: its date and lead in seconds;
    a later date, set by an extension, is warned again)."""
    reached = [lead for lead in leads if expire_time - lead <= now and expire_time - lead > create_time]
    if not reached:
        return None
    lead = min(reached)
    if warned is not None and warned[0] == expire_time and warned[1] <= lead.total_seconds():
        return None
    return lead


def _in_words(delta: dt.timedelta) -> str:
    days, rest = divmod(int(delta.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days} d {hours} h" if days else f"{hours} h {rest // 60} min"


def _lead_words(lead: dt.timedelta) -> str:
    seconds = int(lead.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            return f"{seconds // size}-{unit}"
    return f"{seconds}-second"


def _warning(row, lead: dt.timedelta, now: dt.datetime) -> audit.Event:
    expire_time = as_utc(row.expire_time)
    return audit.Event(audit.EXPIRY_WARNING, audit.DEPOT_ACTOR, system=access.system_name(row),
                       logon_data=access.name_of(row), incident=row.restricted_incident,
                       detail=f"expires at {expire_time.isoformat()}, in {_in_words(expire_time - now)} (the "
                              f"{_lead_words(lead)} warning); extend it or store new logon data")


async def warn_once(depot: Depot) -> int:
    """Log an EXPIRY_WARNING for every entry whose configured warning (RS_DEPOT_EXPIRY_WARNINGS) is due, once
    per entry, warning and expiration date: the warning is recorded in the transaction that logs it, on rows
    locked for it (a second replica's pass skips them, then finds them warned), so it is never logged twice, and
    a pass after a restart logs what came due meanwhile. Returns how many were logged."""
    leads = depot.settings.expiry_warnings
    if not leads:
        return 0
    logged, after = 0, 0

    closest_s = int(min(leads).total_seconds())

    async def work(tx: EngineTx, now: dt.datetime) -> tuple[int, int, int]:
        rows = await tx.entries_to_warn(now, now + max(leads), closest_s, after, SWEEP_BATCH)
        due: dict[str, list[tuple[object, dt.timedelta]]] = {}
        for row in rows:
            warned = None if row.warned_lead_s is None else (as_utc(row.warned_expire_time), row.warned_lead_s)
            lead = due_warning(as_utc(row.expire_time), as_utc(row.create_time), now, leads, warned)
            if lead is not None:
                due.setdefault(row.customer, []).append((row, lead))
        count = 0
        for customer in sorted(due):  # heads locked in one order: two passes never wait on each other in a ring
            try:
                await audit.lock_head(tx, depot.sealer, customer)
            except DataLoss:  # nothing of this customer's is written: warned once its log is restored
                continue
            warnings = [(row, lead) for row, lead in due[customer]
                        if await tx.record_warning(row.pk, row.expire_time, int(lead.total_seconds()))]
            if warnings:
                await audit.append_many(tx, depot.sealer, customer, [_warning(r, lead, now) for r, lead in warnings],
                                        now)
            count += len(warnings)
        return len(rows), count, rows[-1].pk if rows else after

    while True:
        now = depot.clock.now()
        found, warned_now, after = await depot.store.write(lambda tx: work(tx, now))
        logged += warned_now
        if found < SWEEP_BATCH:
            return logged


async def rewrap_once(depot: Depot) -> int:
    """Move up to one batch of entries onto the active ring key, from the keys older than the newest one a
    rotation was requested for (keys the depot added at the usage limit continue that rotation: their entries
    stay). Only as many entries move as the active key has room for, read without locking its row (so writes
    never wait for a batch); the moves' encryptions are claimed at the end like any write's, and if writes took
    the room meanwhile the claim refuses: the batch is rolled back and the key, worn, rotated before the batch
    runs again (as when the key has no room at all). An entry whose ciphertext fails
    authentication stays where it is, is marked unreadable and logged (DECRYPT_FAILED). Returns how many
    entries were handled (0: nothing left to do)."""
    now = depot.clock.now()
    limit = depot.settings.key_usage_limit

    async def work(tx: EngineTx) -> int:
        active = await depot.keys.active_version(tx)
        rows = await tx.entries_to_move(await tx.rewrap_floor(), depot.settings.rewrap_batch)
        if not rows:
            return 0
        room = await tx.ring_room(active, limit)
        if not room:
            raise KeyWorn(active)
        handled = moved = 0
        for row in rows:
            if moved == room:
                break
            handled += 1
            try:
                sealed = await depot.keys.reseal(tx, row, active)
            except SecretUnreadable:
                await tx.update_entry(row, {"unreadable": True})
                await audit.append(tx, depot.sealer, row.customer, audit.Event(
                    audit.DECRYPT_FAILED, audit.DEPOT_ACTOR, audit.FAILED, system=access.system_name(row),
                    logon_data=access.name_of(row),
                    detail=f"key rotation: the stored secret failed authentication; it stays on ring key "
                           f"version {row.key_version} until it is overwritten"), now)
                continue
            await tx.update_entry(row, {"key_version": sealed.key_version, "wrapped_data_key": sealed.wrapped_data_key,
                                        "secret_ciphertext": sealed.ciphertext})
            moved += 1
        if moved and not await tx.claim(active, moved, limit):
            raise KeyWorn(active)  # writes took the room since it was read: roll the batch back, rotate, again
        return handled

    return await depot.keys.write_sealing(depot.store, depot.clock.now, work)
