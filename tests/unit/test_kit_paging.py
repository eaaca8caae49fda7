"""services.kit.paging: the one page-token scheme. A token continues only the request it was issued for, and
nothing a caller can send as a token ends in anything but INVALID_ARGUMENT on page_token."""
from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.kit.errors import InvalidArgument
from services.kit.paging import INT, INT32, STR, TIME, PageTokens

TOKENS = PageTokens(TIME, INT)
SCOPE = {"parent": "customers/1/systems/2", "filter": "open", "order_by": "start_time"}
T = dt.datetime(2026, 12, 3, 10, 30, tzinfo=dt.timezone.utc)


def forged(body) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


def test_a_token_carries_its_cursor_back():
    token = TOKENS.issue([T, 42], SCOPE)
    assert TOKENS.read(token, dict(SCOPE)) == [T, 42]
    assert TOKENS.read("", SCOPE) is None


def test_a_token_belongs_to_its_request():
    token = TOKENS.issue([T, 42], SCOPE)
    for other in ({**SCOPE, "filter": "closed"}, {**SCOPE, "order_by": "start_time desc"}, {"parent": "x"}):
        with pytest.raises(InvalidArgument) as err:
            TOKENS.read(token, other)
        assert err.value.violations[0][0] == "page_token" and "another request" in err.value.message


@pytest.mark.parametrize("cursor", [
    ["not a time", 1], [T.isoformat(), "1"], [T.isoformat(), 2**63], [T.isoformat(), True], [T.isoformat()],
    [T.isoformat(), 1, 2], "x", None, [{"a": 1}, 1], ["9999-99-99", 1],
])
def test_a_forged_cursor_is_invalid_argument(cursor):
    scope_hash = json.loads(base64.urlsafe_b64decode(TOKENS.issue([T, 1], SCOPE) + "=="))["q"]
    with pytest.raises(InvalidArgument) as err:
        TOKENS.read(forged({"a": cursor, "q": scope_hash}), SCOPE)
    assert err.value.violations[0][0] == "page_token"


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "\udfff\ud800", "x\ud800"])
def test_a_text_cursor_no_database_column_could_hold_is_invalid_argument(text):
    """Found by proof row 15: a NUL (PostgreSQL refuses it) or a lone surrogate (not UTF-8) reached the query."""
    tokens = PageTokens(STR)
    with pytest.raises(InvalidArgument):
        tokens.read(tokens.issue([text], {}), {})


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**53 + 1])
def test_an_int32_cursor_is_bounded_to_its_column(value):
    """Found by proof row 15: ListLogonData's cursor is an Integer primary key; past 32 bits PostgreSQL failed."""
    tokens = PageTokens(INT32)
    assert tokens.read(tokens.issue([2**31 - 1], {}), {}) == [2**31 - 1]
    with pytest.raises(InvalidArgument):
        tokens.read(tokens.issue([value], {}), {})


def test_a_cursor_of_text_is_bounded():
    tokens = PageTokens(STR)
    assert tokens.read(tokens.issue(["S0000000001"], {}), {}) == ["S0000000001"]
    with pytest.raises(InvalidArgument):
        tokens.read(tokens.issue(["x" * 5000], {}), {})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                              lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                                          max_size=4),
                              max_leaves=10).map(forged)))
def test_any_token_is_either_a_cursor_or_invalid_argument(token):
    try:
        TOKENS.read(token, SCOPE)
    except InvalidArgument as err:
        assert err.violations[0][0] == "page_token"
