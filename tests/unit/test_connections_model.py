"""Unit tests for the connections service's pure rules (services/connections/model.py)."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest

from services.connections import model
from services.connections.model import Actor, IncidentStatus, WindowState
from services.kit.clock import UTC
from services.kit.errors import FailedPrecondition, PermissionDenied

US = dt.timedelta(microseconds=1)
T = dt.datetime(2031, 3, 1, 12, 0, tzinfo=UTC)

# --- system IDs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sid", ["PRD", "QAS", "A12", "X1Y", "Z99", "DEV", "S4H"])
def test_valid_sids(sid):
    assert model.sid_problem(sid) is None


def test_lower_case_sid_names_the_upper_case_form():
    assert model.sid_problem("prd") == "must be upper-case ('PRD', not 'prd')"
    assert "upper-case" in model.sid_problem("Prd")


@pytest.mark.parametrize("sid,words", [
    ("", "required"), ("PR", "exactly 3"), ("PROD", "exactly 3"), ("1PR", "letter followed"),
    ("P-D", "letter followed"), ("P D", "letter followed"), ("PÄD", "letter followed"), ("_PR", "letter followed"),
])
def test_invalid_sids(sid, words):
    assert words in model.sid_problem(sid)


@pytest.mark.parametrize("sid", sorted(model.RESERVED_SIDS))
def test_reserved_sids_are_refused(sid):
    assert model.sid_problem(sid) == f"{sid} is reserved by SAP and cannot be a system ID"


def test_reserved_list_is_the_one_agreed():
    assert len(model.RESERVED_SIDS) == 33
    assert {"SAP", "SYS", "SID", "ADD", "VAR", "USR"} <= model.RESERVED_SIDS
    assert model.sid_problem("add") == "must be upper-case ('ADD', not 'add')"


# --- SAProuter routes -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", [
    "", "/H/saprouter.example.com", "/H/saprouter.example.com/S/3299", "/H/10.0.0.1/S/3299/H/sapprd01/S/3200",
    "/H/a/S/sapdp00/H/b", "/h/router/s/3299", "/H/2001:db8::1/S/3299", "/H/P/S/3299",
])
def test_valid_routes(route):
    assert model.route_problem(route) is None


@pytest.mark.parametrize("route", [
    "/H/router/P/secret", "/H/router/S/3299/W/topsecret/H/sap", "/H/router/p/secret", "/H/r/w/x",
    "/H/router/S/3299/P/",
])
def test_routes_with_passwords_point_to_the_depot_without_repeating_them(route):
    problem = model.route_problem(route)
    assert problem == model.PASSWORD_IN_ROUTE
    assert "logon depot" in problem
    assert "secret" not in problem


@pytest.mark.parametrize("route", [
    "H/router", "/H/", "/S/3299", "/H/router/X/y", "/H/router/S/", "/H/bad_host", "/H/h/S/a/S/b", "/H/router/",
    "/H/h/S/32 99", "//router", "/H/router/S/" + "1" * 33,
])
def test_malformed_routes(route):
    problem = model.route_problem(route)
    assert problem is not None and problem != model.PASSWORD_IN_ROUTE


def test_route_length_limit():
    route = "/H/" + ".".join(["a" * 60] * 4) + "/S/3299"
    assert len(route) <= 255 and model.route_problem(route) is None
    assert "longer than 255" in model.route_problem("/H/" + "a" * 253)


def test_text_problem():
    assert model.text_problem("x" * 255, 255) is None
    assert model.text_problem("x" * 256, 255) == "is longer than 255 characters"
    assert model.text_problem("a\nb", 255) == "must not contain control characters"


# --- window states at the exact boundaries ---------------------------------------------------------

START, END = T, T + dt.timedelta(hours=2)


@pytest.mark.parametrize("now,state", [
    (START - US, WindowState.SCHEDULED), (START, WindowState.OPEN), (END - US, WindowState.OPEN),
    (END, WindowState.EXPIRED), (END + dt.timedelta(days=9), WindowState.EXPIRED),
])
def test_window_state_boundaries(now, state):
    assert model.window_state(START, END, False, now) is state


@pytest.mark.parametrize("now", [START - US, START, END - US, END])
def test_closed_early_is_closed_at_every_instant(now):
    assert model.window_state(START, END, True, now) is WindowState.CLOSED


# --- time frames ----------------------------------------------------------------------------------

MAX = dt.timedelta(hours=72)


def _fields(start, end, now=T):
    return [f for f, _ in model.time_frame_problems(start, end, now, MAX, "SSH Connection")]


def test_time_frame_boundaries():
    assert _fields(T, T + MAX) == []
    assert _fields(T, T + US) == []
    assert _fields(T - US, T + dt.timedelta(hours=1)) == ["start_time"]
    assert _fields(T, T) == ["end_time"]
    assert _fields(T, T - US) == ["end_time"]
    assert _fields(T, T + MAX + US) == ["end_time"]
    assert _fields(T, None) == ["end_time"]
    assert _fields(T - US, T - US) == ["start_time", "end_time"]


def test_time_frame_messages():
    problems = dict(model.time_frame_problems(T, T + MAX + US, T, MAX, "SSH Connection"))
    assert problems["end_time"] == "makes the time frame longer than SSH Connection's maximum of 72 hours"
    problems = dict(model.time_frame_problems(T - US, T + US, T, MAX, "x"))
    assert "past" in problems["start_time"]


# --- incident life cycle --------------------------------------------------------------------------

S = IncidentStatus
CUSTOMER = Actor("users/S0000000001", "CUSTOMER_USER", "customers/1")
PROCESSOR = Actor("users/eng.one", "SUPPORT_ENGINEER")
OTHER_ENGINEER = Actor("users/eng.two", "SUPPORT_ENGINEER")
ALLOWED = {
    (S.IN_PROCESS_AT_VENDOR, S.CUSTOMER_ACTION): {PROCESSOR},
    (S.CUSTOMER_ACTION, S.IN_PROCESS_AT_VENDOR): {CUSTOMER},
    (S.NEW, S.CONFIRMED): {CUSTOMER},
    (S.IN_PROCESS_AT_VENDOR, S.CONFIRMED): {CUSTOMER},
    (S.CUSTOMER_ACTION, S.CONFIRMED): {CUSTOMER},
}


@pytest.mark.parametrize("current,target", list(itertools.product(S, S)), ids=lambda s: s.value)
@pytest.mark.parametrize("actor", [CUSTOMER, PROCESSOR, OTHER_ENGINEER], ids=["customer", "processor", "other"])
def test_every_status_change_for_every_actor(current, target, actor):
    allowed = ALLOWED.get((current, target))
    if allowed is None:
        with pytest.raises(FailedPrecondition) as caught:
            model.check_status_change(current, target, actor, PROCESSOR.user)
        assert current.value in caught.value.message and target.value in caught.value.message
        assert caught.value.metadata == {"from": current.value, "to": target.value}
    elif actor in allowed:
        model.check_status_change(current, target, actor, PROCESSOR.user)
    else:
        with pytest.raises(PermissionDenied):
            model.check_status_change(current, target, actor, PROCESSOR.user)


def test_new_to_in_process_points_to_assign_processor():
    with pytest.raises(FailedPrecondition, match="AssignProcessor"):
        model.check_status_change(S.NEW, S.IN_PROCESS_AT_VENDOR, CUSTOMER, "")


@pytest.mark.parametrize("current", list(S), ids=lambda s: s.value)
def test_assignable_only_when_new_or_in_process(current):
    if current in (S.NEW, S.IN_PROCESS_AT_VENDOR):
        model.check_assignable(current)
    else:
        with pytest.raises(FailedPrecondition, match=current.value):
            model.check_assignable(current)


def test_ids_and_etags_fit_resource_names():
    import re
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", model.new_id())
    assert model.new_etag() != model.new_etag()
