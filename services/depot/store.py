"""The depot's units of work: reads, and writes one at a time, retried when the log chain moved under them."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import InterfaceError, InternalError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from services.depot.barrier import LogSealer
from services.kit.db import Database
from services.kit.errors import AuditUnavailable, DependencyUnavailable
from services.kit.localsqlite import FALLBACK

T = TypeVar("T")
WRITE_ATTEMPTS = 3
# What a database says when it cannot be written or reached (read-only, disk full, connection lost): the
# driver's errors as SQLAlchemy wraps them. Integrity errors are not among them (they are the caller's).
UNAVAILABLE = (OperationalError, InternalError, InterfaceError)
logger = logging.getLogger(__name__)
SEALER = "log_sealer"  # the key of a write's session.info that holds the Store's barrier.LogSealer


class LogConflict(AuditUnavailable):
    """Another writer took the same log position; the whole unit of work is retried."""


class DatabaseUnwritable(AuditUnavailable):
    """The database refused the write (read-only, full, unreachable). Every change is logged in its own
    transaction, so the change was not logged and not made."""


class Store:
    """Writes are serialized in this process: every write appends to a customer's log chain, SQLite has one
    writer anyway, and on PostgreSQL the log head's row lock serializes writers of other processes."""

    def __init__(self, db: Database, sealer: LogSealer, local=None) -> None:
        self.db = db
        self.sealer = sealer  # barrier.LogSealer: every log head a write moves is sealed with it
        self.local = local  # services.depot.local.LocalDepot on a SQLite file, else None
        self._write_lock = asyncio.Lock()
        if db.sqlite:  # deleted rows (data keys) are overwritten, not left in free pages
            event.listen(db.engine.sync_engine, "connect", _secure_delete)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self.db.sessions() as session:
                yield session
        except UNAVAILABLE as err:
            logger.warning("the depot's database refused a read (%s)", type(err.orig or err).__name__)
            raise DependencyUnavailable("the depot's database is not available; nothing was read") from None

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in one transaction: committed if it returns, rolled back if it raises (nothing
        half-written). A LogConflict re-runs it from the start."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                async with self._write_lock, self.db.unit_of_work() as session:
                    session.info[SEALER] = self.sealer
                    return await work(session)
            except LogConflict:
                if attempt == WRITE_ATTEMPTS:
                    raise
            except UNAVAILABLE as err:  # never its text: it quotes the statement and its parameters
                logger.warning("the depot's database refused a write (%s)", type(err.orig or err).__name__)
                raise DatabaseUnwritable("the depot's database cannot be written, so the change could not be "
                                         "logged; nothing was done") from None
        raise AssertionError("unreachable")

    async def write_local(self, work: Callable[[], T]) -> T | object:
        """`work()`, a write on the local SQLite connection, under the same write lock as `write` (so no engine
        transaction of this process is open meanwhile); FALLBACK without a local connection."""
        if self.local is None:
            return FALLBACK
        async with self._write_lock:
            return work()

    async def close(self) -> None:
        if self.local is not None:
            self.local.close()
        await self.db.close()


def _secure_delete(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
