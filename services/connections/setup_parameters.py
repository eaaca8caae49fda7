"""The values a set-up gives its connection type's parameters: each checked against the parameter's kind
(host, port, URL, instance number, database name) and the general limits. Pure functions; no I/O."""
from __future__ import annotations

import ipaddress
import re
import urllib.parse

from services.connections.connection_types import (
    DATABASE,
    HOST,
    INSTANCE_NUMBER,
    PORT,
    URL,
    ConnectionTypeSpec,
    ParameterSpec,
)

MAX_VALUE_LENGTH = 255

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT_DIGITS = re.compile(r"[0-9]{1,5}")
_INSTANCE_NUMBER = re.compile(r"[0-9]{2}")
_DATABASE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_hostname(value: str) -> bool:
    """RFC 1123 host name; a name whose last label is all digits would be a malformed IPv4 address."""
    if len(value) > 253:
        return False
    labels = value.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def is_valid_host(value: str) -> bool:
    """True for a host name, an IPv4 or an IPv6 address (without brackets)."""
    return _is_ip_address(value) or _is_hostname(value)


def _port_problem(value: str) -> str | None:
    if not _PORT_DIGITS.fullmatch(value) or not 1 <= int(value) <= 65535:
        return "must be a port number between 1 and 65535"
    return None


def _url_problem(value: str) -> str | None:
    message = "must be an http:// or https:// URL with a valid host"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port  # raises ValueError when out of range or not numeric
    except ValueError:
        return message
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or " " in value:
        return message
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials (store logon data in the logon depot)"
    host = parts.hostname or ""
    if not is_valid_host(host):
        return message
    if port == 0:
        return message
    return None


def _kind_problem(kind: str, value: str) -> str | None:
    if kind == HOST:
        return None if is_valid_host(value) else "must be a valid host name, IPv4 or IPv6 address"
    if kind == PORT:
        return _port_problem(value)
    if kind == INSTANCE_NUMBER:
        return None if _INSTANCE_NUMBER.fullmatch(value) else "must be a two-digit instance number (00-99)"
    if kind == URL:
        return _url_problem(value)
    if kind == DATABASE:
        if _DATABASE_NAME.fullmatch(value):
            return None
        return "must start with a letter and contain only letters, digits and underscores (at most 64)"
    return None  # STRING: any text within the general limits


def _value_problem(parameter: ParameterSpec, value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if value == "":
        return "is required" if parameter.required else None
    if len(value) > MAX_VALUE_LENGTH:
        return f"must be at most {MAX_VALUE_LENGTH} characters"
    if _CONTROL_CHARS.search(value):
        return "must not contain control characters"
    return _kind_problem(parameter.kind, value)


def validate_parameters(spec: ConnectionTypeSpec, params: dict[str, str]) -> list[tuple[str, str]]:
    """Problems with a set-up's parameters as (parameter key, problem); an empty list means valid.

    Declared parameters are checked in the type's order (at most one problem each: missing, too long,
    control characters, or not of its kind; an empty optional value counts as absent), then unknown keys
    in sorted order.
    """
    problems: list[tuple[str, str]] = []
    for parameter in spec.parameters:
        if parameter.key not in params:
            if parameter.required:
                problems.append((parameter.key, "is required"))
            continue
        problem = _value_problem(parameter, params[parameter.key])
        if problem is not None:
            problems.append((parameter.key, problem))
    known = {parameter.key for parameter in spec.parameters}
    for key in sorted((k for k in params if k not in known), key=str):
        problems.append((key, f"is not a parameter of connection type {spec.code}"))
    return problems
