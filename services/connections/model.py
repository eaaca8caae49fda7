"""Domain rules of the connections service: systems, time frames, window states and the incident life
cycle. Pure functions and small types; no I/O."""
from __future__ import annotations

import datetime as dt
import enum
import re
import secrets
import uuid
from dataclasses import dataclass

from services.connections.setup_parameters import is_valid_host
from services.kit.errors import FailedPrecondition, PermissionDenied
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER

# --- systems ---------------------------------------------------------------------------------------

INSTALLATION_NUMBER = re.compile(r"[0-9]{1,10}")
SYSTEM_NUMBER = re.compile(r"[0-9]{1,18}")
SID = re.compile(r"[A-Z][A-Z0-9]{2}")

# SIDs SAP reserves (listed in its installation guides); an installation refuses them.
RESERVED_SIDS = frozenset({
    "ADD", "ALL", "AND", "ANY", "ASC", "COM", "DBA", "END", "EPS", "FOR", "GID", "IBM", "INT", "KEY", "LOG",
    "MON", "NIX", "NOT", "OFF", "OMS", "RAW", "ROW", "SAP", "SET", "SGA", "SHG", "SID", "SQL", "SYS", "TMP",
    "UID", "USR", "VAR",
})

MAX_DESCRIPTION = 255
MAX_PRODUCT = 100
MAX_ROUTE = 255
MAX_QUERY = 100
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def sid_problem(value: str) -> str | None:
    """Why `value` is not a usable SAP system ID, or None."""
    if not value:
        return "is required"
    if len(value) != 3:
        return "must be exactly 3 characters (a letter, then letters or digits), e.g. PRD"
    if SID.fullmatch(value.upper()) and value != value.upper():
        return f"must be upper-case ({value.upper()!r}, not {value!r})"
    if not SID.fullmatch(value):
        return "must be a letter followed by two letters or digits (A-Z, 0-9), e.g. PRD"
    if value in RESERVED_SIDS:
        return f"{value} is reserved by SAP and cannot be a system ID"
    return None


def text_problem(value: str, limit: int) -> str | None:
    """Why a single-line free-text field is not acceptable, or None."""
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if _CONTROL_CHARS.search(value):
        return "must not contain control characters"
    return None


_ROUTE_SERVICE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_PASSWORD_MARKERS = {"P", "W"}
PASSWORD_IN_ROUTE = ("must not contain a password part (/P/ or /W/); passwords belong in the logon depot, "
                     "not in the route")


def route_problem(route: str) -> str | None:
    """Why `route` is not a SAProuter route string without passwords ("/H/host/S/port/H/host2/..."), or None.

    A route is a sequence of hops, each "/H/<host>" optionally followed by "/S/<service or port>".
    Password parts ("/P/<pw>", "/W/<pw>") are refused: they belong in the logon depot. The message never
    repeats any part of the route.
    """
    if not route:
        return None
    if len(route) > MAX_ROUTE:
        return f"is longer than {MAX_ROUTE} characters"
    parts = route.split("/")
    if parts[0] != "" or len(parts) % 2 == 0:
        return "must look like /H/host/S/port[/H/host2/S/port2...]"
    pairs = list(zip(parts[1::2], parts[2::2]))
    if any(marker.upper() in _PASSWORD_MARKERS for marker, _ in pairs):
        return PASSWORD_IN_ROUTE
    previous = ""
    for marker, value in pairs:
        marker = marker.upper()
        if marker == "H" and is_valid_host(value):
            previous = "H"
        elif marker == "S" and previous == "H" and _ROUTE_SERVICE.fullmatch(value):
            previous = "S"
        else:
            return "must look like /H/host/S/port[/H/host2/S/port2...] (hosts as names or IP addresses)"
    return None


# --- windows (time-boxed openings of a connection type) --------------------------------------------


class WindowState(enum.Enum):
    """Where a window stands at one instant."""

    SCHEDULED = "SCHEDULED"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    EXPIRED = "EXPIRED"


ACTIVE_STATES = (WindowState.SCHEDULED, WindowState.OPEN)


def window_state(start: dt.datetime, end: dt.datetime, closed_early: bool, now: dt.datetime) -> WindowState:
    """The state at `now` of a window over [start, end): CLOSED if closed early, else by the clock."""
    if closed_early:
        return WindowState.CLOSED
    if now >= end:
        return WindowState.EXPIRED
    if now < start:
        return WindowState.SCHEDULED
    return WindowState.OPEN


def time_frame_problems(start: dt.datetime, end: dt.datetime | None, now: dt.datetime,
                        max_duration: dt.timedelta, type_label: str) -> list[tuple[str, str]]:
    """Field problems of a requested time frame [start, end) at `now`."""
    problems = []
    if start < now:
        problems.append(("start_time", "must not be in the past (omit it to start now)"))
    if end is None:
        problems.append(("end_time", "is required"))
    elif end <= start:
        problems.append(("end_time", "must be after start_time"))
    elif end - start > max_duration:
        hours = int(max_duration.total_seconds() // 3600)
        problems.append(("end_time", f"makes the time frame longer than {type_label}'s maximum of {hours} hours"))
    return problems


# --- incidents -------------------------------------------------------------------------------------


class IncidentStatus(str, enum.Enum):
    NEW = "NEW"
    IN_PROCESS_AT_VENDOR = "IN_PROCESS_AT_VENDOR"
    CUSTOMER_ACTION = "CUSTOMER_ACTION"
    CONFIRMED = "CONFIRMED"


PRIORITIES = ("VERY_HIGH", "HIGH", "MEDIUM", "LOW")
MAX_TITLE = 200
MAX_INCIDENT_DESCRIPTION = 10000


@dataclass(frozen=True)
class Actor:
    """Who performs an operation: "users/{id}", the principal kind (services.kit.principals) and, for customer
    users, the customer."""

    user: str
    kind: str
    customer: str = ""


class _By(enum.Enum):
    CUSTOMER = "a customer user with CREATE_INCIDENTS"
    PROCESSOR = "the support engineer processing the incident"


_S = IncidentStatus
# Status changes UpdateIncidentStatus makes, and who may make each. NEW -> IN_PROCESS_AT_VENDOR goes
# through AssignProcessor only (it needs a processor).
STATUS_CHANGES: dict[tuple[IncidentStatus, IncidentStatus], _By] = {
    (_S.IN_PROCESS_AT_VENDOR, _S.CUSTOMER_ACTION): _By.PROCESSOR,
    (_S.CUSTOMER_ACTION, _S.IN_PROCESS_AT_VENDOR): _By.CUSTOMER,
    (_S.NEW, _S.CONFIRMED): _By.CUSTOMER,
    (_S.IN_PROCESS_AT_VENDOR, _S.CONFIRMED): _By.CUSTOMER,
    (_S.CUSTOMER_ACTION, _S.CONFIRMED): _By.CUSTOMER,
}
ASSIGNABLE = (_S.NEW, _S.IN_PROCESS_AT_VENDOR)


def check_status_change(current: IncidentStatus, target: IncidentStatus, actor: Actor, processor: str) -> None:
    """Raise unless `actor` may move an incident from `current` to `target`."""
    by = STATUS_CHANGES.get((current, target))
    if by is None:
        hint = " (use AssignProcessor)" if target is _S.IN_PROCESS_AT_VENDOR and current is _S.NEW else ""
        raise FailedPrecondition(f"an incident cannot go from {current.value} to {target.value}{hint}",
                                 metadata={"from": current.value, "to": target.value})
    if by is _By.CUSTOMER and actor.kind != CUSTOMER_USER:
        raise PermissionDenied(f"only {by.value} may move an incident from {current.value} to {target.value}")
    if by is _By.PROCESSOR and (actor.kind != SUPPORT_ENGINEER or actor.user != processor):
        raise PermissionDenied(f"only {by.value} may move it from {current.value} to {target.value}")


def check_assignable(current: IncidentStatus) -> None:
    """Raise unless an incident in `current` may get a (new) processor."""
    if current not in ASSIGNABLE:
        raise FailedPrecondition(
            f"an incident in {current.value} cannot be assigned a processor (only NEW or IN_PROCESS_AT_VENDOR)",
            metadata={"from": current.value, "to": _S.IN_PROCESS_AT_VENDOR.value})


# --- identifiers -----------------------------------------------------------------------------------


def new_id() -> str:
    """A resource id for windows and incidents (32 lower-case hex digits)."""
    return uuid.uuid4().hex


def new_etag() -> str:
    return secrets.token_hex(8)
