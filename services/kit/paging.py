"""Page tokens (AIP-158): the one scheme every List method of the suite uses.

A token is opaque to the caller: the cursor (the sort key of the last item served) plus a fingerprint of the
request it continues - its parent, filters and order - so a token replayed with other parameters is refused
(INVALID_ARGUMENT naming `page_token`), and a cursor is checked against the kinds of values the list sorts by
before any of it reaches a query. Nothing a caller can put in a token ends in INTERNAL. Tokens are not signed: a
caller who builds one by hand only pages, from a position of its choice, the results of a request it may send.

    tokens = PageTokens(STR, TIME, INT)           # what the list orders by, in order (INT32 for an Integer column)
    after = tokens.read(request.page_token, scope)  # None for the first page
    ...
    next_token = tokens.issue([last.name, last.create_time, last.id], scope) if more else ""

`scope` is a JSON-serialisable mapping of everything but the page size and the token: the same request gives
the same scope."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from typing import Callable, Mapping, Sequence

from services.kit.clock import as_utc
from services.kit.errors import InvalidArgument

FIELD = "page_token"
MAX_TOKEN_LENGTH = 4096
_INT64 = (-(2**63), 2**63 - 1)
_NOT_OURS = "is not a page token of this list"
_OTHER_REQUEST = "belongs to another request (repeat every other parameter unchanged)"


def _str(value: object) -> str:
    """Text a database column can hold: valid UTF-8 (no lone surrogate), no NUL (PostgreSQL refuses it)."""
    if not isinstance(value, str) or len(value) > 1024 or "\x00" in value:
        raise ValueError
    value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return value


def _integer(low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError
        return value
    return check


def _time(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError
    return as_utc(dt.datetime.fromisoformat(value))  # ValueError on anything but an ISO 8601 time


STR: Callable[[object], object] = _str
INT: Callable[[object], object] = _integer(*_INT64)  # a BigInteger column
INT32: Callable[[object], object] = _integer(-(2**31), 2**31 - 1)  # an Integer column (PostgreSQL's integer)
TIME: Callable[[object], object] = _time


def _wire(value: object) -> object:
    return as_utc(value).isoformat() if isinstance(value, dt.datetime) else value


def fingerprint(scope: Mapping) -> str:
    """A short hash of a request's scope (sorted keys: the same request, the same fingerprint)."""
    return hashlib.sha256(json.dumps(scope, sort_keys=True, default=str).encode()).hexdigest()[:24]


class PageTokens:
    """Issues and reads the page tokens of one list, whose order is given by `kinds` (STR, INT, TIME)."""

    def __init__(self, *kinds: Callable[[object], object]) -> None:
        if not kinds:
            raise ValueError("a list is ordered by at least one key")
        self.kinds = kinds

    def issue(self, after: Sequence[object], scope: Mapping) -> str:
        """The token of the page after the item whose sort key is `after`."""
        if len(after) != len(self.kinds):
            raise ValueError("a cursor has one value per sort key")
        body = {"a": [_wire(v) for v in after], "q": fingerprint(scope)}
        return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")

    def read(self, token: str, scope: Mapping, field: str = FIELD) -> list | None:
        """The cursor a token carries (values converted to their kinds), None for the first page; a token that
        is not ours, or belongs to another request, is INVALID_ARGUMENT on `field`."""
        if not token:
            return None
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidArgument(field, _NOT_OURS)
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
            body = json.loads(raw)
        except (ValueError, UnicodeError, binascii.Error, RecursionError):
            raise InvalidArgument(field, _NOT_OURS) from None
        if not isinstance(body, dict) or set(body) != {"a", "q"}:
            raise InvalidArgument(field, _NOT_OURS)
        if body["q"] != fingerprint(scope):
            raise InvalidArgument(field, _OTHER_REQUEST)
        after = body["a"]
        if not isinstance(after, list) or len(after) != len(self.kinds):
            raise InvalidArgument(field, _NOT_OURS)
        try:
            return [kind(value) for kind, value in zip(self.kinds, after)]
        except (ValueError, TypeError, OverflowError):
            raise InvalidArgument(field, _NOT_OURS) from None
