"""Argument types for argparse: times, enum values by short name, key=value pairs. A bad value is a usage
error (exit 2) with a message saying what is accepted."""
from __future__ import annotations

import argparse
import datetime as dt
import re

from google.protobuf import timestamp_pb2

UTC = dt.timezone.utc
_RELATIVE = re.compile(r"^\+(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
TIME_HELP = "ISO 8601 (2026-12-01T08:00:00Z; no zone means UTC), a date (2026-12-01), 'now', or +N[smhd] from now"


def now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


def parse_time(text: str, *, reference: dt.datetime | None = None) -> dt.datetime:
    """An aware UTC datetime from ISO 8601, a date, 'now' or '+2h' (relative to `reference`, default now)."""
    value = text.strip()
    base = reference or now()
    if value.lower() == "now":
        return base
    match = _RELATIVE.match(value)
    if match:
        return base + dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; use {TIME_HELP}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def time_arg(text: str) -> dt.datetime:
    return parse_time(text)


def timestamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment.astimezone(UTC))
    return out


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _normal(text: str) -> str:
    return re.sub(r"[\s\-/]+", "_", text.strip()).upper()


class EnumArg:
    """Accepts an enum value by its short name in any case, with '-' or '_' ("edit-all-login-data",
    "EDIT_ALL_LOGIN_DATA", "AUTHORIZATION_EDIT_ALL_LOGIN_DATA"); returns its number. UNSPECIFIED is refused."""

    def __init__(self, enum_type) -> None:
        descriptor = enum_type.DESCRIPTOR
        self.prefix = descriptor.values_by_number[0].name.removesuffix("UNSPECIFIED")
        self.values = {v.name.removeprefix(self.prefix): v.number for v in descriptor.values if v.number != 0}
        self.__name__ = descriptor.name  # argparse names the type in its messages

    @property
    def choices_text(self) -> str:
        return ", ".join(name.lower().replace("_", "-") for name in self.values)

    def __call__(self, text: str) -> int:
        name = _normal(text).removeprefix(self.prefix)
        if name not in self.values:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {self.choices_text}")
        return self.values[name]


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key.strip(), value
