"""The reveal's hot path on a local SQLite file (services.kit.localsqlite): the entry read on a query-only
connection, and the REVEAL event appended, in the transaction that decrypts, on the local writer under the
Store's write lock. Same rules, same rows and the same log chain as the engine path in reveal.py, which does
this work on PostgreSQL, and whenever the local connection answers FALLBACK."""
from __future__ import annotations

import datetime as dt
from typing import Callable

from sqlalchemy import bindparam, func, insert, literal_column, select, update
from sqlalchemy.dialects import sqlite

from services.depot import audit, chain, model
from services.depot.barrier import LogSealer
from services.depot.keyring import KeyService, KeyWorn
from services.depot.tables import EntryRow, KnownSystemRow, LogEventRow, LogHeadRow, RingKeyRow
from services.kit.clock import as_utc
from services.kit.db import Database
from services.kit.errors import NotFound
from services.kit.localsqlite import FALLBACK, LocalSqlite, LocalTable, compile_sql, converters

_ENTRIES, _EVENTS, _HEADS = EntryRow.__table__, LogEventRow.__table__, LogHeadRow.__table__
_RING, _KNOWN = RingKeyRow.__table__, KnownSystemRow.__table__
_NEW_ENTRY_COLUMNS = [c for c in _ENTRIES.columns if c.name != "pk"]
_EVENT_COLUMNS = audit.CHAINED_COLUMNS


class LocalDepot:
    """Compiled once from the depot's tables; every method returns FALLBACK when the engine must do it."""

    def __init__(self, local: LocalSqlite, sealer: LogSealer) -> None:
        self.local = local
        self.sealer = sealer  # the Store's
        # an entry as read here: EntryRow's columns as attributes, without the ORM's per-object bookkeeping
        self._by_id = LocalTable(local, _ENTRIES, ("entry_id",))
        self._by_pk = LocalTable(local, _ENTRIES, ("pk",))
        self._head = compile_sql(select(_HEADS.c.last_sequence, _HEADS.c.last_hash, _HEADS.c.seal)
                          .where(_HEADS.c.customer == bindparam("customer")))
        self._event_names = [c.name for c in _EVENT_COLUMNS]
        self._event_binds = converters(_EVENT_COLUMNS, "bind")
        self._insert_event = compile_sql(insert(_EVENTS).values({c.name: bindparam(c.name) for c in _EVENT_COLUMNS}))
        upsert = sqlite.insert(_HEADS).values(customer=bindparam("customer"), last_sequence=bindparam("sequence"),
                                              last_hash=bindparam("hash"), seal=bindparam("seal"))
        self._set_head = compile_sql(upsert.on_conflict_do_update(
            index_elements=[_HEADS.c.customer],
            set_={"last_sequence": upsert.excluded.last_sequence, "last_hash": upsert.excluded.last_hash,
                  "seal": upsert.excluded.seal}))

        self._entry_binds = dict(zip([c.name for c in _NEW_ENTRY_COLUMNS], converters(_NEW_ENTRY_COLUMNS, "bind")))
        self._insert_entry = compile_sql(insert(_ENTRIES).values(
            {c.name: bindparam(c.name) for c in _NEW_ENTRY_COLUMNS}))
        self._newest_key = compile_sql(select(func.max(_RING.c.version)))
        one = literal_column("1")
        self._claim = compile_sql(update(_RING).where(_RING.c.version == bindparam("version"),
                                               _RING.c.encryptions + one <= bindparam("limit"))
                           .values(encryptions=_RING.c.encryptions + one))
        known = sqlite.insert(_KNOWN).values(customer=bindparam("customer"), system_number=bindparam("system"),
                                             installation=bindparam("installation"), confirm_time=bindparam("now"))
        self._remember = compile_sql(known.on_conflict_do_update(
            index_elements=[_KNOWN.c.customer, _KNOWN.c.system_number],
            set_={"installation": known.excluded.installation, "confirm_time": known.excluded.confirm_time}))
        self._time_bind = converters([_KNOWN.c.confirm_time], "bind")[0]

    @classmethod
    def for_database(cls, db: Database, sealer: LogSealer) -> "LocalDepot | None":
        local = LocalSqlite.for_database(db, writer_pragmas=("PRAGMA secure_delete=ON",))
        return cls(local, sealer) if local is not None else None

    def find(self, parts: dict[str, str]) -> EntryRow | None | object:
        """As access.find: the entry a parsed name means (customer and system must match), expired or not."""
        row = self._by_id.get(entry_id=parts["logon_data"])
        if row is FALLBACK or row is None:
            return row
        if (row.customer, row.system_number) != (parts["customer"], parts["system"]):
            return None
        return row

    def reveal(self, pk: int, now: dt.datetime, event: Callable[[EntryRow], audit.Event],
               open_secret: Callable[[EntryRow], str], missing: Callable[[], NotFound]):
        """In one local transaction: the entry again (NOT_FOUND if it went or expired meanwhile), its event
        appended to the customer's chain, the secret decrypted; committed only if all of it succeeded.
        Returns (entry, secret, event sequence), or FALLBACK (nothing was written)."""

        def work(conn):
            found = conn.execute(self._by_pk.sql, {"pk": pk}).fetchall()
            current = self._by_pk.make(found[0]) if found else None
            if current is None or model.is_expired(as_utc(current.expire_time), now):
                raise missing()
            logged = self._append(conn, current.customer, event(current), now)
            return current, open_secret(current), logged.sequence

        return self.local.write(work)

    def create(self, keys: KeyService, limit: int, values: dict, secret: str, now: dt.datetime,
               event: Callable[[EntryRow], audit.Event]):
        """As entries.create's unit of work, in one local transaction: the encryption claimed against the active
        ring key (KeyWorn at its limit, as KeyService.seal), the secret sealed, the entry stored, its system
        remembered, CREATE logged. `values`: the entry's columns but the id, the key and the ciphertext.
        Returns the new entry, or FALLBACK (nothing was written, e.g. the ring changed under this process)."""

        def work(conn):
            version = conn.execute(self._newest_key).fetchall()[0][0] or 0
            if not len(keys.ring) or version != keys.ring.current_version:
                return FALLBACK  # a ring key this process has not loaded: the engine path loads it
            if conn.execute(self._claim, {"version": version, "limit": limit}).rowcount != 1:
                raise KeyWorn(version)
            entry_id = model.new_entry_id()
            sealed = keys.seal_claimed(version, values["customer"], values["system_number"], entry_id, secret)
            new = dict(values, entry_id=entry_id, key_version=sealed.key_version,
                       wrapped_data_key=sealed.wrapped_data_key, secret_ciphertext=sealed.ciphertext)
            stored = conn.execute(self._insert_entry, {name: (bind(new[name]) if bind is not None else new[name])
                                                       for name, bind in self._entry_binds.items()})
            row = self._by_pk.row(pk=stored.lastrowid, **new)
            conn.execute(self._remember, {"customer": row.customer, "system": row.system_number,
                                          "installation": row.installation, "now": self._time_bind(now)})
            self._append(conn, row.customer, event(row), now)  # type: ignore[arg-type]
            return row

        return self.local.write(work)

    def _append(self, conn, customer: str, event: audit.Event, now: dt.datetime) -> audit.EventValues:
        """audit.append on the local connection, inside the caller's local transaction."""
        head = conn.execute(self._head, {"customer": customer}).fetchall()
        if head:
            last_sequence, last_hash, seal = head[0]
            audit.check_sealed(self.sealer, customer, last_sequence, last_hash, seal)
        else:
            last_sequence, last_hash = 0, chain.GENESIS
        row = audit.event_values(customer, last_sequence, last_hash, event, now)
        conn.execute(self._insert_event, self._event_params(row))
        conn.execute(self._set_head, {"customer": customer, "sequence": row.sequence, "hash": row.hash,
                                      "seal": self.sealer.seal(customer, row.sequence, row.hash)})
        return row

    def _event_params(self, row: audit.EventValues) -> dict:
        return {name: (bind(value) if bind is not None else value)
                for name, bind, value in zip(self._event_names, self._event_binds, row)}

    def close(self) -> None:
        self.local.close()
