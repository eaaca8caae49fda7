"""The database layer: SQLAlchemy 2 async engines (SQLite in WAL mode by default, PostgreSQL by URL)
and Alembic migrations per service, applied at start."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import AsyncIterator

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from services.kit import tracing

logger = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def upsert(session, table, keys: dict, values: dict, *, on_conflict: dict, where=None):
    """INSERT keys + values, or, when a row with `keys` exists, UPDATE it with `on_conflict` (column -> value or
    expression) - only if `where(excluded)` holds, when given (`excluded`: the values this statement brought) -,
    in one statement on SQLite and PostgreSQL (ON CONFLICT ... DO UPDATE [WHERE]); returns the statement, to
    execute (with .returning(...) where the caller needs the row: none comes back when `where` refused)."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values({**keys, **values})
    return statement.on_conflict_do_update(index_elements=[table.c[k] for k in keys], set_=on_conflict,
                                           where=where(statement.excluded) if where is not None else None)


def make_base() -> type[DeclarativeBase]:
    """A declarative base with a naming convention, one per service (each owns its metadata)."""

    class Base(DeclarativeBase):
        metadata = MetaData(naming_convention=NAMING)

    return Base


def sync_url(url: str) -> str:
    """The URL Alembic uses (a synchronous driver)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def async_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite_file(url: str) -> None:
    """The file's folder, and the file itself created 0600 (it holds hashes, keys or data; SQLite gives its
    -wal and -shm files the same mode); an existing file is made 0600 too."""
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # never open an existing file: closing any descriptor of it would drop this
            try:               # process's SQLite locks on it (POSIX record locks are per process)
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            _owner_only(file)


def _owner_only(path: Path) -> None:
    """Mode 0600 for a database file that exists; one this process may not change (another user's, on a shared
    volume) is left as it is, with a warning if others can read it."""
    try:
        if path.exists():
            os.chmod(path, 0o600)
    except PermissionError:
        if path.stat().st_mode & 0o077:
            logger.warning("database file %s is readable by others and not ours to change (mode %o)", path,
                           path.stat().st_mode & 0o777)


def migrate(url: str, migrations_dir: Path, attributes: dict | None = None, revision: str = "head") -> None:
    """Apply the service's Alembic migrations up to `revision` (synchronous; call before serving). `attributes`
    are handed to the migrations (Alembic's config.attributes): what a migration needs that the database does
    not hold."""
    if is_sqlite(url):
        _prepare_sqlite_file(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    cfg.attributes.update(attributes or {})
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, revision)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """One service's database: an async engine and a unit-of-work factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        if self.sqlite:
            _prepare_sqlite_file(url)
            self.engine: AsyncEngine = create_async_engine(async_url(url))
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(async_url(url), pool_size=10, max_overflow=10, pool_pre_ping=True)
        tracing.instrument_engine(self.engine)  # a span per statement, when tracing is on
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
