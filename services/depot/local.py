"""The reveal's hot path on a local SQLite file (services.kit.localsqlite): the entry read on a query-only
connection, and the REVEAL event appended, in the transaction that decrypts, on the local writer under the
Store's write lock. Same rules, same rows and the same log chain as the engine path in reveal.py, which does
this work on PostgreSQL, and whenever the local connection answers FALLBACK."""
from __future__ import annotations

import datetime as dt
from collections import namedtuple
from typing import Callable

from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects import sqlite

from services.depot import audit, chain, model
from services.depot.tables import EntryRow, LogEventRow, LogHeadRow
from services.kit.clock import as_utc
from services.kit.db import Database
from services.kit.errors import NotFound
from services.kit.localsqlite import FALLBACK, LocalSqlite

_DIALECT = sqlite.dialect(paramstyle="named")
_ENTRIES, _EVENTS, _HEADS = EntryRow.__table__, LogEventRow.__table__, LogHeadRow.__table__
_EVENT_COLUMNS = [c for c in _EVENTS.columns if c.name != "pk"]
# An entry as read here: EntryRow's columns as attributes, without the ORM's per-object bookkeeping.
LocalEntry = namedtuple("LocalEntry", [c.name for c in _ENTRIES.columns])
if [c.name for c in _EVENT_COLUMNS] != list(audit.EventValues._fields):
    raise RuntimeError("audit.EventValues must list log_events' columns in table order")


def _sql(statement) -> str:
    return str(statement.compile(dialect=_DIALECT))


def _processors(columns, kind: str) -> list:
    """Each column's SQLite value converter as the engine applies it (None where the value passes as is)."""
    out = []
    for column in columns:
        impl = column.type.dialect_impl(_DIALECT)
        out.append(impl.result_processor(_DIALECT, None) if kind == "result" else impl.bind_processor(_DIALECT))
    return out


class LocalDepot:
    """Compiled once from the depot's tables; every method returns FALLBACK when the engine must do it."""

    def __init__(self, local: LocalSqlite) -> None:
        self.local = local
        columns = list(_ENTRIES.columns)
        self._entry_results = _processors(columns, "result")
        self._by_id = _sql(select(_ENTRIES).where(_ENTRIES.c.entry_id == bindparam("entry_id")))
        self._by_pk = _sql(select(_ENTRIES).where(_ENTRIES.c.pk == bindparam("pk")))
        self._head = _sql(select(_HEADS.c.last_sequence, _HEADS.c.last_hash)
                          .where(_HEADS.c.customer == bindparam("customer")))
        self._event_names = [c.name for c in _EVENT_COLUMNS]
        self._event_binds = _processors(_EVENT_COLUMNS, "bind")
        self._insert_event = _sql(insert(_EVENTS).values({c.name: bindparam(c.name) for c in _EVENT_COLUMNS}))
        upsert = sqlite.insert(_HEADS).values(customer=bindparam("customer"), last_sequence=bindparam("sequence"),
                                              last_hash=bindparam("hash"))
        self._set_head = _sql(upsert.on_conflict_do_update(
            index_elements=[_HEADS.c.customer],
            set_={"last_sequence": upsert.excluded.last_sequence, "last_hash": upsert.excluded.last_hash}))

    @classmethod
    def for_database(cls, db: Database) -> "LocalDepot | None":
        local = LocalSqlite.for_database(db, writer_pragmas=("PRAGMA secure_delete=ON",))
        return cls(local) if local is not None else None

    def _entry(self, values) -> EntryRow:
        return LocalEntry._make([convert(value) if convert is not None else value
                                 for convert, value in zip(self._entry_results, values)])  # type: ignore[return-value]

    def find(self, parts: dict[str, str]) -> EntryRow | None | object:
        """As access.find: the entry a parsed name means (customer and system must match), expired or not."""
        rows = self.local.read(self._by_id, {"entry_id": parts["logon_data"]})
        if rows is FALLBACK:
            return FALLBACK
        if not rows:
            return None
        row = self._entry(rows[0])
        if (row.customer, row.system_number) != (parts["customer"], parts["system"]):
            return None
        return row

    def reveal(self, pk: int, now: dt.datetime, event: Callable[[EntryRow], audit.Event],
               open_secret: Callable[[EntryRow], str], missing: Callable[[], NotFound]):
        """In one local transaction: the entry again (NOT_FOUND if it went or expired meanwhile), its event
        appended to the customer's chain, the secret decrypted; committed only if all of it succeeded.
        Returns (entry, secret, event sequence), or FALLBACK (nothing was written)."""

        def work(conn):
            found = conn.execute(self._by_pk, {"pk": pk}).fetchall()
            current = self._entry(found[0]) if found else None
            if current is None or model.is_expired(as_utc(current.expire_time), now):
                raise missing()
            head = conn.execute(self._head, {"customer": current.customer}).fetchall()
            last_sequence, last_hash = head[0] if head else (0, chain.GENESIS)
            row = audit.event_values(current.customer, last_sequence, last_hash, event(current), now)
            conn.execute(self._insert_event, self._event_params(row))
            conn.execute(self._set_head, {"customer": row.customer, "sequence": row.sequence, "hash": row.hash})
            return current, open_secret(current), row.sequence

        return self.local.write(work)

    def _event_params(self, row: audit.EventValues) -> dict:
        return {name: (bind(value) if bind is not None else value)
                for name, bind, value in zip(self._event_names, self._event_binds, row)}

    def close(self) -> None:
        self.local.close()
