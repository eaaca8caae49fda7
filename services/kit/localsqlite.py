"""Hot paths on a service's own SQLite file, with the stdlib sqlite3 module on the calling thread.

Used only for a local SQLite file in WAL mode (as the service's engine keeps it); PostgreSQL, `:memory:` and a
file that cannot be put in WAL mode go through the async engine. A WAL read of a few indexed pages, and a
commit (synchronous=NORMAL: no fsync per commit), take microseconds and are not network I/O (DESIGN §6); the
aiosqlite engine pays ~0.1 ms of thread hand-offs per statement for the same work (bench/README.md).

- `read(sql, params)`: a query-only connection per thread; every statement is its own read transaction and
  sees every write committed before it began, by any connection or process.
- `write(work)`: `work(conn)` inside BEGIN IMMEDIATE ... COMMIT on one writer connection; rolled back if it
  raises, so nothing is half-written. The caller serializes writers (the depot's Store holds its write lock,
  so no engine transaction of this process is open meanwhile).

Either raises LocalUnavailable when the local connection cannot be used or failed (a lock held elsewhere past
BUSY_TIMEOUT_MS, an unwritable file...), with nothing written: the caller's store then does the same work
through its engine, which also answers alone for PAUSE_S after a failure."""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import urllib.request
from collections import namedtuple
from typing import Callable, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from services.kit import tracing
from services.kit.db import Database

T = TypeVar("T")
logger = logging.getLogger(__name__)


class LocalUnavailable(Exception):
    """The local connection cannot answer now (nothing was written); the engine does this work instead."""
# A WAL reader waits only in rare moments (a TRUNCATE checkpoint, recovery), a writer only for another
# process's write; past this the engine does the work instead, so the event loop never waits long.
BUSY_TIMEOUT_MS = 50
PAUSE_S = 1.0
MMAP_BYTES = 256 * 1024 * 1024
CACHE_KIB = 16 * 1024
_DIALECT = sqlite.dialect(paramstyle="named")


def compile_sql(statement) -> str:
    """A SQLAlchemy statement as SQLite text with named parameters, for LocalSqlite.read/write."""
    return str(statement.compile(dialect=_DIALECT))


def converters(columns, kind: str) -> list:
    """Each column's SQLite value converter as the engine applies it ("bind" or "result"; None where the value
    passes as is)."""
    impls = [column.type.dialect_impl(_DIALECT) for column in columns]
    if kind == "bind":
        return [impl.bind_processor(_DIALECT) for impl in impls]
    return [impl.result_processor(_DIALECT, None) for impl in impls]


class LocalSqlite:
    """Query-only reader connections (one per thread) and one writer connection to one SQLite file."""

    def __init__(self, path: str, writer_pragmas: tuple[str, ...] = ()) -> None:
        self.path = os.path.abspath(path)
        self.writer_pragmas = ("PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON", *writer_pragmas)
        self._local = threading.local()
        self._writer: sqlite3.Connection | None = None
        # called with every connection opened from now on (as SQLAlchemy's "connect" event is for the engine's)
        self.on_connect: list[Callable[[sqlite3.Connection], None]] = []
        self.usable = True  # False once the file turned out not to be in WAL mode
        self._resume_at = 0.0  # after a failure, the engine answers until then

    @classmethod
    def for_database(cls, db: Database, writer_pragmas: tuple[str, ...] = ()) -> "LocalSqlite | None":
        if not db.sqlite:
            return None
        path = make_url(db.url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        return cls(path, writer_pragmas)

    def _connect(self, query_only: bool) -> sqlite3.Connection | None:
        uri = f"file:{urllib.request.pathname2url(self.path)}?mode=rw"  # never creates the file
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, cached_statements=32)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # pages read through a memory map and a larger page cache: an indexed read of a big table costs
            # no read() system call per page (100,000 principals made authz's decision read ~25 % slower)
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()  # as the service's engine sets it
            if not mode or str(mode[0][0]).lower() != "wal":
                self.usable = False
                conn.close()
                return None
            for pragma in ("PRAGMA query_only=ON",) if query_only else self.writer_pragmas:
                conn.execute(pragma)
            for hook in self.on_connect:
                hook(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _available(self) -> bool:
        return self.usable and time.monotonic() >= self._resume_at

    def _failed(self, what: str, exc: sqlite3.Error) -> LocalUnavailable:
        logger.warning("local %s of %s failed (%s: %s); the engine does this work for %.0f s",
                       what, self.path, type(exc).__name__, exc, PAUSE_S)
        self.close()
        self._resume_at = time.monotonic() + PAUSE_S
        return LocalUnavailable(f"local {what} failed")

    def read(self, sql: str, params: dict) -> list:
        """All rows of one statement (LocalUnavailable when the engine must read them)."""
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                if not self._available():
                    raise LocalUnavailable("local reads paused")
                conn = self._connect(query_only=True)
                if conn is None:
                    raise LocalUnavailable("not a WAL file")
                self._local.conn = conn
            # fetchall() steps the statement to its end, which resets it: no read transaction stays open
            if tracing.ON:
                with _statement_span(sql):
                    return conn.execute(sql, params).fetchall()
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failed("read", exc) from None

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(conn)` in one transaction: committed if it returns, rolled back if it raises (its exception
        propagates; a sqlite3 error becomes LocalUnavailable after the rollback, so the engine may redo the
        work)."""
        conn = self._writer
        try:
            if conn is None:
                if not self._available():
                    raise LocalUnavailable("local writes paused")
                conn = self._writer = self._connect(query_only=False)
                if conn is None:
                    raise LocalUnavailable("not a WAL file")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed("write", exc) from None
        try:
            result = work(_TracedConnection(conn) if tracing.ON else conn)
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                self.close()  # a connection that cannot roll back is not used again
            if isinstance(exc, sqlite3.Error):
                raise self._failed("write", exc) from None
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


def _statement_span(sql: str):
    """A span for one statement of the SQLite hot path, named by its verb as the SQLAlchemy spans are."""
    words = sql.split(None, 1)
    return tracing.leaf(words[0].upper() if words else "SQL", {"db.system": "sqlite", "db.statement": sql})


class _TracedConnection:
    """A write transaction's connection with a span per statement (tracing on): its text, never its values."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args):
        with _statement_span(sql):
            return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args):
        with _statement_span(sql):
            return self._conn.executemany(sql, *args)

    def __getattr__(self, attribute: str):
        return getattr(self._conn, attribute)


class LocalTable:
    """Rows of one table looked up on a LocalSqlite by equality on `keys`, as namedtuples whose attributes are
    the table's columns with the values the engine would give (its SQLite converters applied). `sql` is the
    statement, for running it inside a LocalSqlite.write transaction (then `make` the row)."""

    def __init__(self, local: LocalSqlite, table, keys: tuple[str, ...]) -> None:
        columns = list(table.columns)
        self.local = local
        self.row = namedtuple(f"Local_{table.name}", [c.name for c in columns])
        self._convert = converters(columns, "result")
        self.sql = compile_sql(select(table).where(*(table.c[k] == bindparam(k) for k in keys)))

    def make(self, values) -> tuple:
        """A row from the table's columns' stored values, in table order."""
        return self.row._make([convert(v) if convert is not None else v for convert, v in zip(self._convert, values)])

    def get(self, **keys) -> tuple | None:
        """The first row whose key columns equal `keys`, None if there is none (LocalUnavailable: ask the
        engine)."""
        rows = self.local.read(self.sql, keys)
        return self.make(rows[0]) if rows else None
