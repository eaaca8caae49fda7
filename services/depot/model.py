"""Domain types and pure rules of the logon depot: kinds, field rules, expiry, and what an engineer may see."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Iterable, Mapping

from services.kit import names
from services.kit.errors import InvalidArgument
from services.kit.validate import Violations

# The seed's sections of the depot.
SYSTEM_USER = "SYSTEM_USER"
SAPROUTER_PASSWORD = "SAPROUTER_PASSWORD"
SERVER_OS_USER = "SERVER_OS_USER"
DATABASE_USER = "DATABASE_USER"
OTHER = "OTHER"
KINDS = (SYSTEM_USER, SAPROUTER_PASSWORD, SERVER_OS_USER, DATABASE_USER, OTHER)

USER_NAME_MAX = 128
SERVER_MAX = 255
NOTES_MAX = 2000
SECRET_MAX = 1024
REASON_MAX = 500
VIEW_MAX_ENTRIES = 1000
SECRET_FIELD = "secret"  # the field name bound into the secret's ciphertext

# The metadata fields of an entry; all but "connection" (what the entry was stored for) may be updated.
PLAIN_FIELDS = ("user_name", "client", "server", "notes", "expire_time", "connection_type", "restricted_incident",
                "connection")
UPDATABLE = frozenset(PLAIN_FIELDS) - {"connection"} | {SECRET_FIELD}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CLIENT = re.compile(r"[0-9]{3}")


@dataclass
class EntryFields:
    """The caller-settable metadata of an entry (never its secret)."""

    user_name: str = ""
    client: str = ""
    server: str = ""
    notes: str = ""
    expire_time: dt.datetime | None = None
    connection_type: str = ""
    restricted_incident: str = ""
    connection: str = ""


@dataclass(frozen=True)
class Limits:
    """What a check of fields compares against: the entry's place, the clock, and the connection types the
    connections service confirmed (the depot holds no catalog)."""

    customer: str  # customer number
    system: str  # system number
    now: dt.datetime
    max_expiry: dt.timedelta
    connection_types: frozenset[str]  # codes of the catalog among those the fields name


def new_entry_id() -> str:
    return uuid.uuid4().hex


def new_etag() -> str:
    return uuid.uuid4().hex


def is_expired(expire_time: dt.datetime, now: dt.datetime) -> bool:
    """An entry is unreadable from the instant of its expiration on."""
    return now >= expire_time


def check_fields(v: Violations, fields: EntryFields, paths: Iterable[str], kind: str | None, limits: Limits,
                 prefix: str = "logon_data.") -> None:
    """Add a violation for every field of `paths` that breaks its rule. `kind` None (itself invalid) skips the
    rules that depend on the kind."""
    for path in paths:
        problem = field_problem(path, getattr(fields, path), kind, limits)
        if problem:
            v.add(prefix + path, problem)


def field_problem(path: str, value, kind: str | None, limits: Limits) -> str | None:
    """The problem of one field's value, or None."""
    return _CHECKS[path](value, kind, limits)


def kind_problem(kind: str) -> str | None:
    """`kind` is a kind's name, "" when unspecified, or the unknown number as text."""
    if not kind:
        return f"is required (one of {', '.join(KINDS)})"
    return None if kind in KINDS else f"has unknown value {kind}"


def connection_type_code(value: str) -> str | None:
    """The code of a well-formed connection type name ("connectionTypes/{code}"), else None."""
    if not value:
        return None
    parts, problem = _name_problem("connection_type", value)
    return None if problem else parts["code"]


def secret_problem(secret: str) -> str | None:
    if not secret:
        return f"is required (1 to {SECRET_MAX} characters)"
    if len(secret) > SECRET_MAX:
        return f"is longer than {SECRET_MAX} characters"
    return None


def reason_problem(reason: str) -> str | None:
    if len(reason) > REASON_MAX:
        return f"is longer than {REASON_MAX} characters"
    if _CONTROL.search(reason):
        return "must not contain control characters"
    return None


def _user_name(value: str, kind: str | None, _limits: Limits) -> str | None:
    if not value:
        return None if kind in (None, SAPROUTER_PASSWORD) else "is required (except for SAProuter passwords)"
    if len(value) > USER_NAME_MAX:
        return f"is longer than {USER_NAME_MAX} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def _client(value: str, kind: str | None, _limits: Limits) -> str | None:
    if kind is None:
        return None
    if kind != SYSTEM_USER:
        return "must be empty: only system users have a client" if value else None
    if not value:
        return "is required for system users (three digits, e.g. 001)"
    return None if _CLIENT.fullmatch(value) else "must be three digits, e.g. 001"


def _server(value: str, _kind: str | None, _limits: Limits) -> str | None:
    if len(value) > SERVER_MAX:
        return f"is longer than {SERVER_MAX} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def _notes(value: str, _kind: str | None, _limits: Limits) -> str | None:
    if len(value) > NOTES_MAX:
        return f"is longer than {NOTES_MAX} characters"
    if _CONTROL_EXCEPT_WHITESPACE.search(value):
        return "must not contain control characters other than tab and line breaks"
    return None


def _expire_time(value: dt.datetime | None, _kind: str | None, limits: Limits) -> str | None:
    if value is None:
        return "is required: logon data is never stored without an expiration time"
    if value <= limits.now:
        return "must be in the future"
    if value > limits.now + limits.max_expiry:
        return f"must be at most {limits.max_expiry.days} days from now"
    return None


def _name_problem(kind: str, value: str) -> tuple[dict[str, str] | None, str | None]:
    try:
        return names.parse(kind, value, "_"), None
    except InvalidArgument as err:
        return None, err.violations[0][1]


def _connection_type(value: str, _kind: str | None, limits: Limits) -> str | None:
    if not value:
        return None
    parts, problem = _name_problem("connection_type", value)
    if problem:
        return problem
    if parts["code"] not in limits.connection_types:
        return f"names no connection type of the catalog ({parts['code']})"
    return None


def _restricted_incident(value: str, _kind: str | None, limits: Limits) -> str | None:
    if not value:
        return None
    parts, problem = _name_problem("incident", value)
    if problem:
        return problem
    return None if parts["customer"] == limits.customer else "must be an incident of the entry's customer"


def _connection(value: str, _kind: str | None, limits: Limits) -> str | None:
    if not value:
        return None
    parts, problem = _name_problem("connection", value)
    if problem:
        return problem
    if (parts["customer"], parts["system"]) != (limits.customer, limits.system):
        return "must be a connection of the entry's system"
    return None


_CHECKS = {
    "user_name": _user_name, "client": _client, "server": _server, "notes": _notes, "expire_time": _expire_time,
    "connection_type": _connection_type, "restricted_incident": _restricted_incident, "connection": _connection,
}
assert set(_CHECKS) == set(PLAIN_FIELDS)


def engineer_access(kind: str, entry_id: str, restricted_incident: str, incidents: Iterable[str],
                    views: Mapping[str, frozenset[str]]) -> str | None:
    """The incident through which an engineer assigned to `incidents` sees an entry, or None if it is hidden.

    An entry restricted to one incident is seen only through that incident. A system user is seen through an
    incident only if the incident has no restricted view (`views` has no key for it) or the view names the
    entry; SAProuter, server, database and other entries are not subject to restricted views."""
    for incident in sorted(incidents):
        if restricted_incident and restricted_incident != incident:
            continue
        if kind == SYSTEM_USER and incident in views and entry_id not in views[incident]:
            continue
        return incident
    return None


def entry_name(customer: str, system: str, entry_id: str) -> str:
    return f"customers/{customer}/systems/{system}/logonData/{entry_id}"


def incident_name(customer: str, incident_id: str) -> str:
    return f"customers/{customer}/incidents/{incident_id}"
