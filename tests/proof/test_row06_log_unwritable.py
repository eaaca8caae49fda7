"""Row 6: while the depot's log cannot be written, every reveal and every change is refused and no secret
leaves the depot. Three ways the log becomes unwritable:

- read-only database: SQLite's own read-only mode (PRAGMA query_only on every connection of the depot, its
  engine's and its local ones) /
  PostgreSQL's (ALTER DATABASE ... SET default_transaction_read_only = on);
- full disk, simulated: every write statement of the depot fails with the driver's own error for it
  (SQLITE_FULL "database or disk is full" / PostgreSQL SQLSTATE 53100 disk_full; on the depot's local SQLite
  writer an authorizer refuses every write, which fails as any SQLite error does there: the engine redoes it);
- only the log refuses: a trigger on the log table fails every insert, so that everything else could be written.

Afterwards (the control) the database is as it was, the log verifies, and the same calls succeed."""
from __future__ import annotations

import re
import sqlite3

import grpc
import psycopg
from sqlalchemy import event

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.harness import _admin_conninfo, postgres_url
from tests.proof.world import SAPROUTER, SYSTEM_USER, error_text, new_customer, outcome, planted, reason_of, sql

ROW = 6
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


class Condition:
    """A way of making the depot's log unwritable, and of undoing it."""

    def __init__(self, live, kind: str) -> None:
        self.live, self.kind = live, kind
        self.url = live.suite.db_url["depot"]
        self.sqlite = live.backend == "sqlite"

    @property
    def engine(self):
        return self.live.depot_app().depot.store.db.engine

    @property
    def local(self):
        """The depot's local SQLite connections (services.kit.localsqlite) beside its engine; None on PostgreSQL."""
        return self.live.depot_app().depot.store.local

    def _dispose(self) -> None:
        self.live.run(self.engine.dispose())
        if self.local is not None:  # closed on the loop's thread, which opened them; reopened with the hooks
            local = self.local

            async def close() -> None:
                local.close()
            self.live.run(close())

    @staticmethod
    def _local_disk_full(conn) -> None:
        """The local writer's writes fail (sqlite3.DatabaseError, as SQLITE_FULL would), like the engine's."""
        writes = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}
        conn.set_authorizer(lambda action, *_: sqlite3.SQLITE_DENY if action in writes else sqlite3.SQLITE_OK)

    # read-only -----------------------------------------------------------------------------------------
    @staticmethod
    def _query_only(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    @staticmethod
    def _query_only_local(conn) -> None:
        conn.execute("PRAGMA query_only = ON")

    def _pg_read_only(self, on: bool) -> None:
        database = self.url.rsplit("/", 1)[1]
        value = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
        with psycopg.connect(_admin_conninfo(postgres_url()), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" {value}')

    # full disk -----------------------------------------------------------------------------------------
    def _disk_full(self, conn, cursor, statement, parameters, context, executemany):
        if WRITE.match(statement):
            if self.sqlite:
                raise sqlite3.OperationalError("database or disk is full")
            raise psycopg.errors.DiskFull("could not extend file \"base/1/2\": No space left on device")
        return statement, parameters

    # the log table only ----------------------------------------------------------------------------------
    def _trigger(self, on: bool) -> None:
        if self.sqlite:
            sql(self.url, "CREATE TRIGGER proof_log_offline BEFORE INSERT ON log_events BEGIN "
                          "SELECT RAISE(ABORT, 'log storage offline'); END" if on else "DROP TRIGGER proof_log_offline")
        elif on:
            sql(self.url, "CREATE FUNCTION proof_log_offline() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$ BEGIN RAISE EXCEPTION 'log storage offline'; END $$")
            sql(self.url, "CREATE TRIGGER proof_log_offline BEFORE INSERT ON log_events FOR EACH ROW "
                          "EXECUTE FUNCTION proof_log_offline()")
        else:
            sql(self.url, "DROP TRIGGER proof_log_offline ON log_events")
            sql(self.url, "DROP FUNCTION proof_log_offline()")

    def __enter__(self):
        if self.kind == "read-only database":
            if self.sqlite:
                event.listen(self.engine.sync_engine, "connect", self._query_only)
                self.local.on_connect.append(self._query_only_local)
            else:
                self._pg_read_only(True)
            self._dispose()
        elif self.kind == "full disk":
            event.listen(self.engine.sync_engine, "before_cursor_execute", self._disk_full, retval=True)
            if self.sqlite:
                self.local.on_connect.append(self._local_disk_full)
                self._dispose()
        else:
            self._trigger(True)
        return self

    def __exit__(self, *exc) -> None:
        if self.kind == "read-only database":
            if self.sqlite:
                event.remove(self.engine.sync_engine, "connect", self._query_only)
                self.local.on_connect.remove(self._query_only_local)
            else:
                self._pg_read_only(False)
            self._dispose()
        elif self.kind == "full disk":
            event.remove(self.engine.sync_engine, "before_cursor_execute", self._disk_full)
            if self.sqlite:
                self.local.on_connect.remove(self._local_disk_full)
                self._dispose()
        else:
            self._trigger(False)


def test_nothing_is_revealed_or_changed_while_the_log_cannot_be_written(live, actors, rec):
    c = new_customer(actors)
    other = actors.user(c.number, ["EDIT_MY_LOGIN_DATA"])
    engineer = actors.engineer()
    incident = actors.incident(c.system, c.ops)
    actors.assign(incident, engineer)
    secret = planted("row6")
    entry = actors.entry(c.creator, c.system, secret=secret)
    router = actors.entry(c.creator, c.system, kind=SAPROUTER, secret=planted("row6r"))
    url = live.suite.db_url["depot"]
    counts = lambda: (sql(url, "SELECT COUNT(*) FROM logon_data")[0][0],  # noqa: E731
                      sql(url, "SELECT COUNT(*) FROM log_events")[0][0])
    before = counts()
    depot = actors.depot

    def calls():
        update = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=entry.name, notes="changed"))
        update.update_mask.paths.append("notes")
        overwrite = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=entry.name), secret=planted("row6new"))
        overwrite.update_mask.paths.append("secret")
        view = dp.SetRestrictedViewRequest(restricted_view=dp.RestrictedView(
            name=f"{c.system}/restrictedViews/{incident.rsplit('/', 1)[1]}", logon_data=[entry.name]))
        return {
            "reveal by its creator": (depot.RevealLogonData, dp.RevealLogonDataRequest(name=entry.name), c.creator),
            "reveal with EDIT_ALL": (depot.RevealLogonData, dp.RevealLogonDataRequest(name=entry.name), c.edit_all),
            "reveal by the assigned engineer": (depot.RevealLogonData, dp.RevealLogonDataRequest(name=router.name),
                                                engineer),
            "denied reveal (must be logged)": (depot.RevealLogonData, dp.RevealLogonDataRequest(name=entry.name),
                                               other),
            "create": (depot.CreateLogonData, dp.CreateLogonDataRequest(parent=c.system, secret=planted("row6c"),
                       logon_data=dp.LogonData(kind=SYSTEM_USER, user_name="U1", client="001",
                                               expire_time=actors.expire_in(days=3))), c.creator),
            "update": (depot.UpdateLogonData, update, c.edit_all),
            "overwrite the secret": (depot.UpdateLogonData, overwrite, c.creator),
            "delete": (depot.DeleteLogonData, dp.DeleteLogonDataRequest(name=entry.name), c.creator),
            "set a restricted view": (depot.SetRestrictedView, view, c.edit_all),
        }

    results: dict[str, dict[str, str]] = {}
    leaked = accepted = 0
    for kind in ("read-only database", "full disk", "the log table only"):
        results[kind] = {}
        with Condition(live, kind):
            for label, (method, request, who) in calls().items():
                code, answer = outcome(method, request, metadata=who.md)
                text = str(answer) if code == grpc.StatusCode.OK else error_text(answer)
                leaked += secret in text
                accepted += code == grpc.StatusCode.OK
                results[kind][label] = code.name + (f" {reason_of(answer)}" if code != grpc.StatusCode.OK else "")
    after = counts()
    chain = actors.verify(c.edit_all, c.number)
    control = actors.reveal(c.creator, entry.name).secret == secret
    refused = sum(1 for r in results.values() for v in r.values() if v == "UNAVAILABLE AUDIT_UNAVAILABLE")
    total = sum(len(r) for r in results.values())
    passed = accepted == 0 and leaked == 0 and refused == total and before == after and chain.valid and control
    rec(f"{refused}/{total} reveals and changes refused with UNAVAILABLE (AUDIT_UNAVAILABLE) over read-only "
        f"database, full disk and log table failing ({accepted} accepted, {leaked} secrets returned); database "
        f"unchanged: {before == after}; log verifies: {chain.valid}; control reveal afterwards: {control}",
        passed, results=results, before=before, after=after)
    assert passed, results
