"""Database helpers the handlers share: write transactions that serialise, and page tokens bound to the
query they page."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.clock import as_utc
from services.kit.errors import InvalidArgument
from services.kit.validate import decode_page_token, encode_page_token


async def begin_write(session: AsyncSession) -> None:
    """Make a unit of work a writer from its first statement, so its read-check-write is atomic.

    Must be the first statement of the unit of work. On SQLite the driver would begin the transaction only
    at the first INSERT/UPDATE (after the checking reads); BEGIN IMMEDIATE takes the database's write lock
    now, so writers run one after another. On PostgreSQL it does nothing: callers lock the rows they check
    with SELECT ... FOR UPDATE (which SQLite ignores).
    """
    if session.bind.dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))


def _fingerprint(query: dict) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]


def read_page_token(token: str, query: dict) -> list | None:
    """The cursor of a page token issued for the same `query` (the request's filters), or None for page one."""
    cursor = decode_page_token(token)
    if cursor is None:
        return None
    after = cursor.get("after")
    if cursor.get("q") != _fingerprint(query) or not isinstance(after, list):
        raise InvalidArgument("page_token", "does not belong to this query (repeat the other parameters unchanged)")
    return after


def page_token(after: list, query: dict) -> str:
    return encode_page_token({"after": after, "q": _fingerprint(query)})


def cursor_time(value: object) -> dt.datetime:
    """A timestamp a page token carries (as ISO 8601)."""
    try:
        return as_utc(dt.datetime.fromisoformat(str(value)))
    except ValueError:
        raise InvalidArgument("page_token", "is not a token this service issued") from None
