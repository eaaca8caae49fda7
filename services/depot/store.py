"""The depot's units of work and every query it makes: the only module of the depot with SQL.

A unit of work is an async function of a transaction. `Tx` is what the security-critical writes use (a reveal,
a create, the log's append); it has two implementations, so each of those writes is written once:

- `EngineTx`, on an AsyncSession of the service's engine: PostgreSQL always, and SQLite whenever the local
  connection cannot answer. It also answers every other query of the depot.
- `LocalTx`, on the writer of services.kit.localsqlite: the stdlib sqlite3 module on the calling thread, for a
  SQLite file (a reveal costs a quarter of the engine's CPU, bench/README.md). Its methods are coroutines
  that return at once, so a unit of work over it runs to its end inside one local transaction.

`Store.write(work, local=True)` runs `work` on the local writer when there is one, and again on the engine when
that raises LocalUnavailable (nothing was written then): the caller never sees which ran."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
from typing import AsyncIterator, Awaitable, Callable, Iterable, Iterator, NamedTuple, Protocol, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, event, func, insert, or_, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, InternalError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from services.depot.chain import EventValues
from services.depot.tables import EntryRow, ExpiryWarningRow, ForeignDenialRow, KnownSystemRow, LogEventRow, \
    LogHeadRow, MailCursorRow, RingKeyRow, SiemCursorRow, ViewMemberRow, ViewRow, WebhookCursorRow, WebhookRow
from services.kit import siem
from services.kit.db import Database, sync_url, upsert
from services.kit.errors import AuditUnavailable, Conflict, DependencyUnavailable
from services.kit.localsqlite import LocalSqlite, LocalTable, LocalUnavailable, compile_sql, converters

T = TypeVar("T")
WRITE_ATTEMPTS = 3
# What a database says when it cannot be written or reached (read-only, disk full, connection lost): the
# driver's errors as SQLAlchemy wraps them. Integrity errors are not among them (they are the caller's).
UNAVAILABLE = (OperationalError, InternalError, InterfaceError)
# Any error of the driver, as SQLAlchemy wraps it (those above and the rest: a bad value, a broken schema, an
# integrity error), for a caller to whom every one means the same (the reveal: not logged, so not revealed).
DatabaseRefused = DBAPIError
LOG_UNWRITTEN = "the depot log could not be written; nothing was done"
logger = logging.getLogger(__name__)

_ENTRIES, _EVENTS, _HEADS = EntryRow.__table__, LogEventRow.__table__, LogHeadRow.__table__
_CURSORS = {"siem": SiemCursorRow.__table__, "mail": MailCursorRow.__table__,  # per reader of the outbox
            "webhook": WebhookCursorRow.__table__}
# what the event feed reads of a log event (events.py), in this order
FEED_COLUMNS = [_EVENTS.c[n] for n in ("sequence", "action", "outcome", "actor", "system", "logon_data", "incident",
                                       "detail", "event_time", "hash")]
_WARNINGS = ExpiryWarningRow.__table__
_RING, _KNOWN, _DENIALS = RingKeyRow.__table__, KnownSystemRow.__table__, ForeignDenialRow.__table__
# log_events' columns but pk, in EventValues order (what the chain covers)
CHAINED_COLUMNS = [_EVENTS.c[name] for name in EventValues._fields]
if {c.name for c in CHAINED_COLUMNS} != {c.name for c in _EVENTS.columns if c.name != "pk"}:
    raise RuntimeError("chain.EventValues must list every column of log_events but pk")

# An entry as a unit of work reads it: an EntryRow on the engine; on the local connection a namedtuple with
# the same attributes, holding the values the engine would give.
Entry = EntryRow


class Head(NamedTuple):
    """A customer's log head: its newest event and the seal over it."""

    last_sequence: int
    last_hash: str
    seal: str


class LogConflict(AuditUnavailable):
    """Another writer took the same log position; the whole unit of work is retried."""


class DatabaseUnwritable(AuditUnavailable):
    """The database refused the write (read-only, full, unreachable). Every change is logged in its own
    transaction, so the change was not logged and not made."""


class Tx(Protocol):
    """What the reveal, the create and the log's append do in their transaction, on either backend."""

    async def entry(self, pk: int, *, lock: bool = False) -> Entry | None:
        """The entry with primary key `pk` (`lock`: locked for the rest of the transaction)."""

    async def entry_by_id(self, entry_id: str) -> Entry | None: ...

    async def add_entry(self, values: dict) -> Entry:
        """Store a new entry (`values`: every column but pk)."""

    async def remember_system(self, customer: str, system: str, installation: str, now: dt.datetime) -> None:
        """Record the installation of a system the connections service confirmed."""

    async def newest_ring_version(self) -> int:
        """The highest ring key version stored (0: none)."""

    async def ring_keys_above(self, version: int) -> list[tuple[int, bytes]]:
        """(version, wrapped key) of every ring key above `version`, oldest first."""

    async def ring_key(self, version: int) -> bytes | None:
        """Ring key `version`, wrapped (None: there is none)."""

    async def claim(self, version: int, encryptions: int, limit: int) -> bool:
        """Count `encryptions` under ring key `version` only if that keeps it within `limit`: one conditional
        UPDATE (on PostgreSQL its row lock orders concurrent writers of every process, and each re-reads the
        count it is checked against; SQLite has one writer). False: nothing counted, the key is worn."""

    async def log_head(self, customer: str) -> Head | None:
        """The customer's log head, locked for the rest of the transaction (None: no event yet)."""

    async def add_events(self, events: list[EventValues]) -> None: ...

    async def set_log_head(self, customer: str, sequence: int, last_hash: str, seal: str, *, new: bool) -> None:
        """Move the head (`new`: there was none) to the newest event."""


# --------------------------------------------------------------------------------------------------------- #
# The engine
# --------------------------------------------------------------------------------------------------------- #


class EngineTx:
    """Tx on an AsyncSession, with every other query of the depot."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- Tx ---------------------------------------------------------------------------------------------------
    async def entry(self, pk: int, *, lock: bool = False) -> EntryRow | None:
        return await self.session.get(EntryRow, pk, with_for_update=True if lock else None)

    async def entry_by_id(self, entry_id: str) -> EntryRow | None:
        return (await self.session.execute(select(EntryRow).where(EntryRow.entry_id == entry_id))).scalar()

    async def add_entry(self, values: dict) -> EntryRow:
        row = EntryRow(**values)
        self.session.add(row)
        return row

    async def remember_system(self, customer: str, system: str, installation: str, now: dt.datetime) -> None:
        known = await self.session.get(KnownSystemRow, (customer, system))
        if known is None:
            self.session.add(KnownSystemRow(customer=customer, system_number=system, installation=installation,
                                            confirm_time=now))
        else:
            known.installation, known.confirm_time = installation, now

    async def newest_ring_version(self) -> int:
        return (await self.session.execute(select(func.max(_RING.c.version)))).scalar() or 0

    async def ring_keys_above(self, version: int) -> list[tuple[int, bytes]]:
        rows = await self.session.execute(select(_RING.c.version, _RING.c.wrapped_key)
                                          .where(_RING.c.version > version).order_by(_RING.c.version))
        return [(v, bytes(blob)) for v, blob in rows]

    async def ring_key(self, version: int) -> bytes | None:
        wrapped = (await self.session.execute(select(_RING.c.wrapped_key).where(_RING.c.version == version))).scalar()
        return bytes(wrapped) if wrapped is not None else None

    async def claim(self, version: int, encryptions: int, limit: int) -> bool:
        claimed = await self.session.execute(
            update(_RING).where(_RING.c.version == version, _RING.c.encryptions + encryptions <= limit)
            .values(encryptions=_RING.c.encryptions + encryptions))
        return claimed.rowcount == 1

    async def log_head(self, customer: str, *, lock: bool = True) -> Head | None:
        query = select(_HEADS.c.last_sequence, _HEADS.c.last_hash, _HEADS.c.seal).where(_HEADS.c.customer == customer)
        try:
            row = (await self.session.execute(query.with_for_update() if lock else query)).first()
        except DBAPIError:
            if not lock:
                raise
            raise AuditUnavailable(LOG_UNWRITTEN) from None
        return Head(*row) if row is not None else None

    async def add_events(self, events: list[EventValues]) -> None:
        await self._log_write(insert(_EVENTS), [e._asdict() for e in events])

    async def set_log_head(self, customer: str, sequence: int, last_hash: str, seal: str, *, new: bool) -> None:
        values = dict(last_sequence=sequence, last_hash=last_hash, seal=seal)
        if new:
            await self._log_write(insert(_HEADS).values(customer=customer, **values))
        else:
            await self._log_write(update(_HEADS).where(_HEADS.c.customer == customer).values(**values))

    async def _log_write(self, statement, params=None) -> None:
        """A write of the log: another writer at the same position is a LogConflict, any other refusal means the
        event (and so the change) is not written."""
        try:
            await self.session.execute(statement, params)
        except IntegrityError:
            raise LogConflict(LOG_UNWRITTEN) from None
        except DBAPIError:
            raise AuditUnavailable(LOG_UNWRITTEN) from None

    # --- entries ----------------------------------------------------------------------------------------------
    async def update_entry(self, row: EntryRow, values: dict) -> None:
        """Change columns of an entry read in this transaction."""
        for column, value in values.items():
            setattr(row, column, value)
        await self.session.flush()

    async def delete_entry(self, row: EntryRow) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def mark_expiry_logged(self, pk: int) -> bool:
        """Note that the entry's EXPIRE event is logged; False if it was already (or the entry is gone)."""
        marked = await self.session.execute(update(_ENTRIES).where(_ENTRIES.c.pk == pk,
                                                                   _ENTRIES.c.expiry_logged.is_(False))
                                            .values(expiry_logged=True))
        return marked.rowcount == 1

    async def entries_page(self, customer: str, system: str, now: dt.datetime, kind: str, after: int,
                           limit: int) -> list[EntryRow]:
        """Up to `limit` unexpired entries of a system after primary key `after`, in creation order."""
        query = select(EntryRow).where(EntryRow.customer == customer, EntryRow.system_number == system,
                                       EntryRow.expire_time > now, EntryRow.pk > after)
        if kind:
            query = query.where(EntryRow.kind == kind)
        return list((await self.session.execute(query.order_by(EntryRow.pk).limit(limit))).scalars())

    async def entries_with_ids(self, customer: str, system: str, entry_ids: list[str]) -> dict[str, EntryRow]:
        rows = await self.session.execute(select(EntryRow).where(
            EntryRow.customer == customer, EntryRow.system_number == system, EntryRow.entry_id.in_(entry_ids)))
        return {row.entry_id: row for row in rows.scalars()}

    async def known_installation(self, customer: str, system: str) -> str:
        """The installation number of a system the depot has stored entries for ("" if unknown)."""
        known = await self.session.get(KnownSystemRow, (customer, system))
        return known.installation if known else ""

    async def entries_to_warn(self, now: dt.datetime, horizon: dt.datetime, closest_s: int, after: int,
                              limit: int) -> list:
        """Up to `limit` unexpired entries expiring by `horizon`, after primary key `after`, that may still be due
        a warning (none yet for their date, or none as close as `closest_s`), with the warning logged for each so
        far (warned_expire_time, warned_lead_s: None if none), locked (rows another transaction holds are
        skipped: another replica warns them)."""
        query = (select(EntryRow.pk, EntryRow.entry_id, EntryRow.customer, EntryRow.system_number,
                        EntryRow.restricted_incident, EntryRow.expire_time, EntryRow.create_time,
                        _WARNINGS.c.expire_time.label("warned_expire_time"), _WARNINGS.c.lead_s.label("warned_lead_s"))
                 .outerjoin(_WARNINGS, _WARNINGS.c.entry_pk == EntryRow.pk)
                 .where(EntryRow.expire_time > now, EntryRow.expire_time <= horizon, EntryRow.pk > after,
                        or_(_WARNINGS.c.entry_pk.is_(None), _WARNINGS.c.expire_time != EntryRow.expire_time,
                            _WARNINGS.c.lead_s > closest_s))
                 .order_by(EntryRow.pk).limit(limit).with_for_update(of=EntryRow, skip_locked=True))
        return list((await self.session.execute(query)).all())

    async def record_warning(self, pk: int, expire_time: dt.datetime, lead_s: int) -> bool:
        """Note the warning `lead_s` before `expire_time`, unless it (or a closer one) is noted for that date:
        False then (another replica's pass logged it since this one read). The row stays locked to the commit."""
        statement = upsert(self.session, _WARNINGS, {"entry_pk": pk}, {"expire_time": expire_time, "lead_s": lead_s},
                           on_conflict={"expire_time": expire_time, "lead_s": lead_s},
                           where=lambda new: or_(_WARNINGS.c.expire_time != new.expire_time,
                                                 _WARNINGS.c.lead_s > new.lead_s))
        return (await self.session.execute(statement.returning(_WARNINGS.c.entry_pk))).first() is not None

    async def expired_entries(self, now: dt.datetime, skip_customers: Iterable[str], limit: int) -> list:
        """Up to `limit` entries expired by `now` (oldest expiry first) but those of `skip_customers`, locked
        (rows another transaction holds are skipped)."""
        query = (select(EntryRow.pk, EntryRow.entry_id, EntryRow.customer, EntryRow.system_number,
                        EntryRow.restricted_incident, EntryRow.expiry_logged, EntryRow.expire_time)
                 .where(EntryRow.expire_time <= now))
        skip = list(skip_customers)
        if skip:
            query = query.where(EntryRow.customer.not_in(skip))
        return list((await self.session.execute(query.order_by(EntryRow.expire_time, EntryRow.pk)
                                                .limit(limit).with_for_update(skip_locked=True))).all())

    async def delete_entries(self, pks: list[int]) -> None:
        await self.session.execute(delete(EntryRow).where(EntryRow.pk.in_(pks))
                                   .execution_options(synchronize_session=False))

    async def entries_to_move(self, below: int, limit: int) -> list[EntryRow]:
        """Up to `limit` readable entries on ring keys older than `below`, locked (held rows are skipped)."""
        return list((await self.session.execute(
            select(EntryRow).where(EntryRow.key_version < below, EntryRow.unreadable.is_(False))
            .order_by(EntryRow.pk).limit(limit).with_for_update(skip_locked=True))).scalars())

    # --- ring keys --------------------------------------------------------------------------------------------
    async def ring_rows(self) -> list[RingKeyRow]:
        return list((await self.session.execute(select(RingKeyRow).order_by(RingKeyRow.version))).scalars())

    async def add_ring_key(self, version: int, wrapped: bytes, now: dt.datetime, *, requested: bool) -> RingKeyRow:
        """Store a new ring key; Conflict if another writer stored that version first."""
        row = RingKeyRow(version=version, wrapped_key=wrapped, create_time=now, encryptions=0, requested=requested)
        self.session.add(row)
        try:
            await self.session.flush()
        except IntegrityError:
            raise Conflict("another key rotation happened at the same moment; read the key status") from None
        return row

    async def ring_room(self, version: int, limit: int) -> int:
        """How many encryptions ring key `version` may still make, as of now. Read without a lock, so concurrent
        writers may take some of it meanwhile: only a claim counts them against the limit."""
        used = (await self.session.execute(select(_RING.c.encryptions).where(_RING.c.version == version))).scalar()
        return 0 if used is None else max(0, limit - used)

    async def rewrap_floor(self) -> int:
        """The newest ring key a rotation was requested for: entries on keys older than it are to be moved."""
        return (await self.session.execute(select(func.max(_RING.c.version))
                                           .where(_RING.c.requested.is_(True)))).scalar() or 0

    async def entry_counts_by_version(self) -> dict[int, int]:
        return dict((await self.session.execute(
            select(EntryRow.key_version, func.count()).group_by(EntryRow.key_version))).all())

    # --- restricted views -------------------------------------------------------------------------------------
    async def view(self, customer: str, system: str, incident: str) -> ViewRow | None:
        return (await self.session.execute(select(ViewRow).where(
            ViewRow.customer == customer, ViewRow.system_number == system, ViewRow.incident == incident))).scalar()

    async def view_members(self, view: ViewRow) -> list[str]:
        """The entry ids a view shows, in the order they were set."""
        return list((await self.session.execute(select(ViewMemberRow.entry_id)
                                                .where(ViewMemberRow.view_pk == view.pk)
                                                .order_by(ViewMemberRow.position))).scalars())

    async def replace_view(self, customer: str, system: str, incident: str, entry_ids: list[str], updater: str,
                           now: dt.datetime) -> None:
        """Make the view of `incident` show exactly `entry_ids` (none: the view goes)."""
        view = await self.view(customer, system, incident)
        if view is not None:
            await self.session.execute(delete(ViewMemberRow).where(ViewMemberRow.view_pk == view.pk))
            if not entry_ids:
                await self.session.delete(view)
        if entry_ids:
            if view is None:
                view = ViewRow(customer=customer, system_number=system, incident=incident)
                self.session.add(view)
            view.updater, view.update_time = updater, now
            await self.session.flush()
            self.session.add_all(ViewMemberRow(view_pk=view.pk, entry_id=entry_id, position=i)
                                 for i, entry_id in enumerate(entry_ids))
        await self.session.flush()

    async def views_for(self, customer: str, system: str, incidents: tuple[str, ...]) -> dict[str, frozenset[str]]:
        """The restricted views of `incidents` on the system: incident -> entry ids it shows (absent: no view)."""
        if not incidents:
            return {}
        rows = (await self.session.execute(
            select(ViewRow.pk, ViewRow.incident)
            .where(ViewRow.customer == customer, ViewRow.system_number == system,
                   ViewRow.incident.in_(incidents)))).all()
        views: dict[str, set[str]] = {incident: set() for _, incident in rows}
        by_pk = {pk: incident for pk, incident in rows}
        if by_pk:
            members = await self.session.execute(
                select(ViewMemberRow.view_pk, ViewMemberRow.entry_id).where(ViewMemberRow.view_pk.in_(by_pk)))
            for view_pk, entry_id in members:
                views[by_pk[view_pk]].add(entry_id)
        return {incident: frozenset(ids) for incident, ids in views.items()}

    # --- the log ----------------------------------------------------------------------------------------------
    async def creators(self, customer: str, entry_names: Sequence[str]) -> dict[str, str]:
        """Who created each of the customer's entries ("users/{id}", by entry name), from the log's CREATE events:
        it answers for an entry deleted or purged since, too."""
        rows = await self.session.execute(select(_EVENTS.c.logon_data, _EVENTS.c.actor).where(
            _EVENTS.c.customer == customer, _EVENTS.c.action == "CREATE",
            _EVENTS.c.logon_data.in_(list(entry_names))))
        return {name: actor for name, actor in rows}

    async def webhook_creators(self, customer: str, webhook_ids: Sequence[str]) -> dict[str, str]:
        """The registrant ("users/{id}") of each of the customer's webhooks that still exists, by webhook id."""
        rows = await self.session.execute(select(WebhookRow.id, WebhookRow.creator).where(
            WebhookRow.customer == customer, WebhookRow.id.in_(list(webhook_ids))))
        return {webhook_id: creator for webhook_id, creator in rows}

    async def feed_page(self, customer: str, after: int, limit: int) -> list:
        """Up to `limit` events of the customer after sequence `after`, oldest first: FEED_COLUMNS rows."""
        return list((await self.session.execute(_feed_page(customer, after, limit))).all())

    async def outbox_behind(self, reader: str, limit: int) -> list[tuple[str, int]]:
        """Customers whose log goes past what `reader` ("siem", "mail", "webhook": only customers with a webhook)
        handled (siem.Outbox.behind)."""
        statement = siem.behind_statement(_HEADS, _HEADS.c.last_sequence, _CURSORS[reader], limit)
        if reader == "webhook":
            statement = statement.where(_HEADS.c.customer.in_(select(WebhookRow.customer)))
        return [tuple(row) for row in await self.session.execute(statement)]

    async def outbox_handled(self, reader: str, customer: str, position: int) -> None:
        await self.session.execute(siem.exported_statement(self.session, _CURSORS[reader], customer, position))

    async def events_page(self, customer: str, filters, cursor: int, size: int) -> list[LogEventRow]:
        """At most `size` events of a customer past the sequence `cursor` (0: from the start), oldest first, or
        newest first with `filters.newest_first`; `filters` (audit.Filters) narrows them."""
        query = select(LogEventRow).where(LogEventRow.customer == customer)
        if filters.newest_first:
            if cursor:
                query = query.where(LogEventRow.sequence < cursor)
        else:
            query = query.where(LogEventRow.sequence > cursor)
        for column, value in ((LogEventRow.system, filters.system), (LogEventRow.logon_data, filters.logon_data),
                              (LogEventRow.actor, filters.actor)):
            if value:
                query = query.where(column == value)
        if filters.start_time:
            query = query.where(LogEventRow.event_time >= filters.start_time)
        if filters.end_time:
            query = query.where(LogEventRow.event_time < filters.end_time)
        order = LogEventRow.sequence.desc() if filters.newest_first else LogEventRow.sequence
        return list((await self.session.execute(query.order_by(order).limit(size))).scalars())

    async def chained_events(self, customer: str, after: int, limit: int) -> list[EventValues]:
        """Up to `limit` of the customer's events after sequence `after`, in order, as the chain covers them
        (plain rows: no ORM objects for a million events)."""
        rows = await self.session.execute(
            select(*CHAINED_COLUMNS).where(LogEventRow.customer == customer, LogEventRow.sequence > after)
            .order_by(LogEventRow.sequence, LogEventRow.pk).limit(limit))
        return [EventValues._make(row) for row in rows]

    # --- refused reveals of callers outside the customer -------------------------------------------------------
    async def denial_window(self, customer: str, actor: str):
        """The caller's current hour of refused reveals of the customer's entries (customer, actor, window_start,
        logged, counted), locked for the rest of the transaction; None if there is none."""
        return (await self.session.execute(select(_DENIALS).where(
            _DENIALS.c.customer == customer, _DENIALS.c.actor == actor).with_for_update())).first()

    async def start_denial_window(self, customer: str, actor: str, start: dt.datetime, *, new: bool) -> None:
        """Begin the caller's hour at `start` with one refusal logged (`new`: it had none; another writer that
        began one first is a LogConflict, and the unit of work runs again)."""
        values = dict(window_start=start, logged=1, counted=0)
        if new:
            await self._log_write(insert(_DENIALS).values(customer=customer, actor=actor, **values))
        else:
            await self._log_write(update(_DENIALS).where(_DENIALS.c.customer == customer,
                                                         _DENIALS.c.actor == actor).values(**values))

    async def add_denial(self, customer: str, actor: str, *, logged: bool) -> None:
        """One more refusal in the caller's current hour: logged one by one, or only counted."""
        column = _DENIALS.c.logged if logged else _DENIALS.c.counted
        await self._log_write(update(_DENIALS).where(_DENIALS.c.customer == customer, _DENIALS.c.actor == actor)
                              .values({column: column + 1}))

    async def ended_denial_windows(self, started_by: dt.datetime, skip_customers: Iterable[str],
                                   limit: int) -> list:
        """Up to `limit` hours of refusals begun by `started_by` (an hour ago: so passed), oldest first, but
        those of `skip_customers`, locked (rows another transaction holds are skipped)."""
        query = select(_DENIALS).where(_DENIALS.c.window_start <= started_by)
        skip = list(skip_customers)
        if skip:
            query = query.where(_DENIALS.c.customer.not_in(skip))
        return list((await self.session.execute(query.order_by(_DENIALS.c.window_start).limit(limit)
                                                .with_for_update(skip_locked=True))).all())

    async def delete_denial_windows(self, keys: list[tuple[str, str]]) -> None:
        """Forget these (customer, actor) hours."""
        if keys:
            await self._log_write(delete(_DENIALS).where(sa.tuple_(_DENIALS.c.customer, _DENIALS.c.actor).in_(keys)))


# --------------------------------------------------------------------------------------------------------- #
# The local SQLite writer
# --------------------------------------------------------------------------------------------------------- #


def _feed_page(customer, after, limit):
    return (select(*FEED_COLUMNS).where(_EVENTS.c.customer == customer, _EVENTS.c.sequence > after)
            .order_by(_EVENTS.c.sequence).limit(limit))


class _LocalStatements:
    """Tx's statements compiled once for the stdlib sqlite3 module, and the converters the engine applies."""

    def __init__(self, local: LocalSqlite) -> None:
        self.by_id = LocalTable(local, _ENTRIES, ("entry_id",))
        self.by_pk = LocalTable(local, _ENTRIES, ("pk",))
        self.known = LocalTable(local, _KNOWN, ("customer", "system_number"))
        new_entry = [c for c in _ENTRIES.columns if c.name != "pk"]
        self.entry_binds = dict(zip([c.name for c in new_entry], converters(new_entry, "bind")))
        self.insert_entry = compile_sql(insert(_ENTRIES).values({c.name: bindparam(c.name) for c in new_entry}))
        known = sqlite.insert(_KNOWN).values(customer=bindparam("customer"), system_number=bindparam("system"),
                                             installation=bindparam("installation"), confirm_time=bindparam("now"))
        self.remember = compile_sql(known.on_conflict_do_update(
            index_elements=[_KNOWN.c.customer, _KNOWN.c.system_number],
            set_={"installation": known.excluded.installation, "confirm_time": known.excluded.confirm_time}))
        self.time_bind = converters([_KNOWN.c.confirm_time], "bind")[0]
        self.newest_key = compile_sql(select(func.max(_RING.c.version)))
        self.keys_above = compile_sql(select(_RING.c.version, _RING.c.wrapped_key)
                                      .where(_RING.c.version > bindparam("version")).order_by(_RING.c.version))
        self.ring_key = compile_sql(select(_RING.c.wrapped_key).where(_RING.c.version == bindparam("version")))
        self.claim = compile_sql(update(_RING).where(
            _RING.c.version == bindparam("version"),
            _RING.c.encryptions + bindparam("encryptions") <= bindparam("limit"))
            .values(encryptions=_RING.c.encryptions + bindparam("encryptions")))
        page = (select(_ENTRIES).where(_ENTRIES.c.customer == bindparam("customer"),
                                       _ENTRIES.c.system_number == bindparam("system"),
                                       _ENTRIES.c.expire_time > bindparam("now"), _ENTRIES.c.pk > bindparam("after"))
                .order_by(_ENTRIES.c.pk).limit(bindparam("limit")).offset(bindparam("offset")))  # offset 0
        self.page = compile_sql(page)
        self.page_of_kind = compile_sql(page.where(_ENTRIES.c.kind == bindparam("kind")))
        self.expire_bind = converters([_ENTRIES.c.expire_time], "bind")[0]
        self.head = compile_sql(select(_HEADS.c.last_sequence, _HEADS.c.last_hash, _HEADS.c.seal)
                                .where(_HEADS.c.customer == bindparam("customer")))
        self.event_names = [c.name for c in CHAINED_COLUMNS]
        self.event_binds = converters(CHAINED_COLUMNS, "bind")
        self.insert_event = compile_sql(insert(_EVENTS).values({c.name: bindparam(c.name) for c in CHAINED_COLUMNS}))
        upsert = sqlite.insert(_HEADS).values(customer=bindparam("customer"), last_sequence=bindparam("sequence"),
                                              last_hash=bindparam("hash"), seal=bindparam("seal"))
        self.set_head = compile_sql(upsert.on_conflict_do_update(
            index_elements=[_HEADS.c.customer],
            set_={"last_sequence": upsert.excluded.last_sequence, "last_hash": upsert.excluded.last_hash,
                  "seal": upsert.excluded.seal}))


class LocalTx:
    """Tx on the local writer connection, inside its BEGIN IMMEDIATE transaction (which already excludes every
    other writer, so nothing needs a row lock)."""

    def __init__(self, sql: _LocalStatements, conn: sqlite3.Connection) -> None:
        self.sql = sql
        self.conn = conn

    async def entry(self, pk: int, *, lock: bool = False):
        found = self.conn.execute(self.sql.by_pk.sql, {"pk": pk}).fetchall()
        return self.sql.by_pk.make(found[0]) if found else None

    async def entry_by_id(self, entry_id: str):
        found = self.conn.execute(self.sql.by_id.sql, {"entry_id": entry_id}).fetchall()
        return self.sql.by_id.make(found[0]) if found else None

    async def add_entry(self, values: dict):
        stored = self.conn.execute(self.sql.insert_entry, {
            name: (bind(values[name]) if bind is not None else values[name])
            for name, bind in self.sql.entry_binds.items()})
        return self.sql.by_pk.row(pk=stored.lastrowid, **values)

    async def remember_system(self, customer: str, system: str, installation: str, now: dt.datetime) -> None:
        self.conn.execute(self.sql.remember, {"customer": customer, "system": system, "installation": installation,
                                              "now": self.sql.time_bind(now)})

    async def newest_ring_version(self) -> int:
        return self.conn.execute(self.sql.newest_key).fetchall()[0][0] or 0

    async def ring_keys_above(self, version: int) -> list[tuple[int, bytes]]:
        return [(v, bytes(blob)) for v, blob in self.conn.execute(self.sql.keys_above, {"version": version})]

    async def ring_key(self, version: int) -> bytes | None:
        found = self.conn.execute(self.sql.ring_key, {"version": version}).fetchall()
        return bytes(found[0][0]) if found else None

    async def claim(self, version: int, encryptions: int, limit: int) -> bool:
        claimed = self.conn.execute(self.sql.claim, {"version": version, "encryptions": encryptions, "limit": limit})
        return claimed.rowcount == 1

    async def log_head(self, customer: str) -> Head | None:
        found = self.conn.execute(self.sql.head, {"customer": customer}).fetchall()
        return Head(*found[0]) if found else None

    async def add_events(self, events: list[EventValues]) -> None:
        names, binds = self.sql.event_names, self.sql.event_binds
        for values in events:
            self.conn.execute(self.sql.insert_event, {name: (bind(value) if bind is not None else value)
                                                      for name, bind, value in zip(names, binds, values)})

    async def set_log_head(self, customer: str, sequence: int, last_hash: str, seal: str, *, new: bool) -> None:
        self.conn.execute(self.sql.set_head, {"customer": customer, "sequence": sequence, "hash": last_hash,
                                              "seal": seal})


def _run_now(work: Awaitable[T]) -> T:
    """Run a unit of work over a LocalTx, whose awaits all return at once, to its end on this thread."""
    try:
        work.send(None)  # type: ignore[attr-defined]
    except StopIteration as done:
        return done.value
    work.close()  # type: ignore[attr-defined]
    raise RuntimeError("a local unit of work waited for something other than its LocalTx")


# --------------------------------------------------------------------------------------------------------- #
# The store
# --------------------------------------------------------------------------------------------------------- #


class _Rehearsed(Exception):
    """Carries a validate_only write's answer out of its transaction, which it rolls back on the way."""

    def __init__(self, answer: object) -> None:
        super().__init__("validate_only: rolled back")
        self.answer = answer


class Store:
    """Writes are serialized in this process: every write appends to a customer's log chain, SQLite has one
    writer anyway, and on PostgreSQL the log head's row lock serializes writers of other processes."""

    def __init__(self, db: Database, local: LocalSqlite | None = None) -> None:
        self.db = db
        self.local = local  # the local SQLite connections on a SQLite file, else None
        self._local_sql = _LocalStatements(local) if local is not None else None
        self._write_lock = asyncio.Lock()
        self.committed: Callable[[], None] = lambda: None  # called after every committed write (the feed's wake)
        if db.sqlite:  # deleted rows (data keys) are overwritten, not left in free pages
            event.listen(db.engine.sync_engine, "connect", _secure_delete)

    @classmethod
    def open(cls, url: str) -> "Store":
        """The store of the depot database at `url`, with the local connections where it is a SQLite file."""
        db = Database(url)
        return cls(db, LocalSqlite.for_database(db, writer_pragmas=("PRAGMA secure_delete=ON",)))

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[EngineTx]:
        try:
            async with self.db.sessions() as session:
                yield EngineTx(session)
        except UNAVAILABLE as err:
            logger.warning("the depot's database refused a read (%s)", type(err.orig or err).__name__)
            raise DependencyUnavailable("the depot's database is not available; nothing was read") from None

    async def _read_local_first(self, local: Callable[["_LocalStatements"], T],
                                engine: Callable[[EngineTx], Awaitable[T]]) -> T:
        """`local(statements)` on the local connection when there is one; else, or when it cannot answer now,
        `engine(tx)` in a read of the engine."""
        if self._local_sql is not None:
            with contextlib.suppress(LocalUnavailable):  # the engine reads it instead
                return local(self._local_sql)
        async with self.read() as tx:
            return await engine(tx)

    async def find_entry(self, entry_id: str) -> Entry | None:
        """The entry with this id, expired or not: read on the local connection when there is one."""
        return await self._read_local_first(lambda sql: sql.by_id.get(entry_id=entry_id),
                                            lambda tx: tx.entry_by_id(entry_id))

    async def entries_page(self, customer: str, system: str, now: dt.datetime, kind: str, after: int,
                           limit: int) -> list[Entry]:
        """Up to `limit` unexpired entries of a system after primary key `after`, in creation order: one
        statement on the local connection when there is one (each page is its own read, as pages always were)."""
        def local(sql: _LocalStatements) -> list[Entry]:
            params = {"customer": customer, "system": system, "now": sql.expire_bind(now), "after": after,
                      "limit": limit, "offset": 0, "kind": kind}
            return [sql.by_id.make(values) for values in self.local.read(sql.page_of_kind if kind else sql.page,
                                                                          params)]
        return await self._read_local_first(local, lambda tx: tx.entries_page(customer, system, now, kind, after,
                                                                              limit))

    async def known_installation(self, customer: str, system: str) -> str:
        """The installation number of a system the depot has stored entries for ("" if unknown): read on the
        local connection when there is one."""
        def local(sql: _LocalStatements) -> str:
            known = sql.known.get(customer=customer, system_number=system)
            return known.installation if known else ""
        return await self._read_local_first(local, lambda tx: tx.known_installation(customer, system))

    async def log_position(self, customer: str) -> int:
        """The customer's last log sequence (0: none yet), without a lock: on the local connection when there
        is one."""
        def local(sql: _LocalStatements) -> int:
            rows = self.local.read(sql.head, {"customer": customer})
            return rows[0][0] if rows else 0

        async def engine(tx: EngineTx) -> int:
            head = await tx.log_head(customer, lock=False)
            return head.last_sequence if head else 0
        return await self._read_local_first(local, engine)

    async def views_for(self, customer: str, system: str, incidents: tuple[str, ...]) -> dict[str, frozenset[str]]:
        """The restricted views of `incidents` on the system (Tx.views_for), in a read of its own."""
        if not incidents:
            return {}
        async with self.read() as tx:
            return await tx.views_for(customer, system, incidents)

    async def write(self, work: Callable[[Tx], Awaitable[T]], *, local: bool = False,
                    validate_only: bool = False) -> T:
        """Run `work` in one transaction: committed if it returns, rolled back if it raises (nothing
        half-written). `local`: `work` uses only Tx, and runs on the local writer where there is one (under the
        same write lock, so no engine transaction of this process is open meanwhile); where it cannot, on the
        engine. `validate_only` (AIP-163): `work` runs whole, every check and statement as it would, and is
        rolled back; its answer is returned."""
        if validate_only:
            async def rehearse(tx: Tx) -> T:
                raise _Rehearsed(await work(tx))

            try:
                await self.write(rehearse, local=local)
            except _Rehearsed as done:
                return done.answer
            raise AssertionError("a rehearsal always rolls back")
        if local and self.local is not None:
            async with self._write_lock:
                try:
                    answer = self.local.write(lambda conn: _run_now(work(LocalTx(self._local_sql, conn))))
                except LocalUnavailable:
                    pass  # nothing was written: the engine does the work
                else:
                    self.committed()
                    return answer
        return await self.write_on_engine(work)

    async def write_on_engine(self, work: Callable[[EngineTx], Awaitable[T]]) -> T:
        """`work` in one engine transaction; a LogConflict runs it again from the start."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                async with self._write_lock, self.db.unit_of_work() as session:
                    answer = await work(EngineTx(session))
                self.committed()
                return answer
            except LogConflict:
                if attempt == WRITE_ATTEMPTS:
                    raise
            except UNAVAILABLE as err:  # never its text: it quotes the statement and its parameters
                logger.warning("the depot's database refused a write (%s)", type(err.orig or err).__name__)
                raise DatabaseUnwritable("the depot's database cannot be written, so the change could not be "
                                         "logged; nothing was done") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.local is not None:
            self.local.close()
        await self.db.close()


def _secure_delete(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


# --------------------------------------------------------------------------------------------------------- #
# Replacing the master key (the depot stopped)
# --------------------------------------------------------------------------------------------------------- #


class OfflineTx:
    """The replace-master-key command's transaction (synchronous, the depot stopped): the wrapped ring keys and
    the sealed log heads, locked."""

    def __init__(self, conn: sa.Connection, where: str) -> None:
        self.conn = conn
        self.where = where  # the database's URL without its password

    def ring_keys(self) -> list[tuple[int, bytes]] | None:
        """(version, wrapped key) of every ring key, oldest first; None if there is no depot schema."""
        try:
            rows = self.conn.execute(select(_RING.c.version, _RING.c.wrapped_key).order_by(_RING.c.version)
                                     .with_for_update()).all()
        except DBAPIError:
            return None
        return [(version, bytes(blob)) for version, blob in rows]

    def set_wrapped_key(self, version: int, wrapped: bytes) -> None:
        self.conn.execute(update(_RING).where(_RING.c.version == version).values(wrapped_key=wrapped))

    def log_heads(self) -> list[tuple[str, int, str, str]] | None:
        """(customer, last sequence, last hash, seal) of every log head; None if heads carry no seal yet."""
        try:
            return [tuple(row) for row in self.conn.execute(
                select(_HEADS.c.customer, _HEADS.c.last_sequence, _HEADS.c.last_hash, _HEADS.c.seal)
                .order_by(_HEADS.c.customer).with_for_update()).all()]
        except DBAPIError:
            return None

    def set_seal(self, customer: str, seal: str) -> None:
        self.conn.execute(update(_HEADS).where(_HEADS.c.customer == customer).values(seal=seal))


@contextlib.contextmanager
def offline_transaction(database_url: str) -> Iterator[OfflineTx]:
    """One transaction on the depot's database: committed if the block ends normally, else rolled back."""
    engine = sa.create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            yield OfflineTx(conn, engine.url.render_as_string(hide_password=True))
    finally:
        engine.dispose()
