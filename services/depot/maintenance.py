"""Background work: the expiry sweep (expired entries deleted with their data keys) and re-wrapping entries
onto the active ring key after a rotation. Each pass is one bounded transaction; both are idempotent."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.depot import access, audit
from services.depot.context import Depot
from services.depot.keyring import SecretUnreadable
from services.depot.tables import EntryRow
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

    async def work(session: AsyncSession, now) -> tuple[int, int]:
        query = (select(EntryRow.pk, EntryRow.entry_id, EntryRow.customer, EntryRow.system_number,
                        EntryRow.restricted_incident, EntryRow.expiry_logged, EntryRow.expire_time)
                 .where(EntryRow.expire_time <= now))
        if stopped:
            query = query.where(EntryRow.customer.not_in(stopped))
        rows = (await session.execute(query.order_by(EntryRow.expire_time, EntryRow.pk)
                                      .limit(SWEEP_BATCH).with_for_update(skip_locked=True))).all()
        by_customer: dict[str, list[audit.Event]] = {}
        for row in rows:
            events = by_customer.setdefault(row.customer, [])
            if not row.expiry_logged:
                events.append(access.expired_event(row))
            events.append(purge_event(row))
        for customer, events in by_customer.items():
            try:
                await audit.append_many(session, customer, events, now)
            except DataLoss:  # refused before anything of this customer's was written
                stopped.add(customer)
        doomed = [row.pk for row in rows if row.customer not in stopped]
        if doomed:
            await session.execute(delete(EntryRow).where(EntryRow.pk.in_(doomed))
                                  .execution_options(synchronize_session=False))
        return len(rows), len(doomed)

    while True:
        now = depot.clock.now()
        found, deleted = await depot.store.write(lambda session: work(session, now))
        purged += deleted
        if found < SWEEP_BATCH:
            return purged


async def rewrap_once(depot: Depot) -> int:
    """Move up to one batch of entries from older ring keys to the active one. An entry whose ciphertext fails
    authentication stays where it is, is marked unreadable and logged (DECRYPT_FAILED). Returns how many entries
    were handled (0: nothing left to do)."""
    now = depot.clock.now()

    async def work(session: AsyncSession) -> int:
        active = await depot.keys.active_version(session)
        rows = list((await session.execute(
            select(EntryRow).where(EntryRow.key_version < active, EntryRow.unreadable.is_(False))
            .order_by(EntryRow.pk).limit(depot.settings.rewrap_batch)
            .with_for_update(skip_locked=True))).scalars())
        moved = 0
        for row in rows:
            try:
                sealed = await depot.keys.reseal(session, row, active)
            except SecretUnreadable:
                row.unreadable = True
                await audit.append(session, row.customer, audit.Event(
                    audit.DECRYPT_FAILED, audit.DEPOT_ACTOR, audit.FAILED, system=access.system_name(row),
                    logon_data=access.name_of(row),
                    detail=f"key rotation: the stored secret failed authentication; it stays on ring key "
                           f"version {row.key_version} until it is overwritten"), now)
                continue
            row.key_version, row.wrapped_data_key, row.secret_ciphertext = (
                sealed.key_version, sealed.wrapped_data_key, sealed.ciphertext)
            moved += 1
        if moved:
            await depot.keys.count(session, active, moved)
        return len(rows)

    return await depot.store.write(work)
