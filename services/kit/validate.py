"""Request validation helpers: collect every field violation, then raise one INVALID_ARGUMENT."""
from __future__ import annotations

import datetime as dt
import re

from google.protobuf import timestamp_pb2

from services.kit.clock import UTC
from services.kit.errors import InvalidArgument

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


class Violations:
    """Collects (field, problem) pairs; `raise_if_any()` turns them into one INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, problem: str) -> None:
        self.items.append((field, problem))

    def required(self, field: str, value: object) -> bool:
        if value in ("", None, 0) or (hasattr(value, "__len__") and len(value) == 0):  # type: ignore[arg-type]
            self.add(field, "is required")
            return False
        return True

    def max_len(self, field: str, value: str, limit: int) -> None:
        if len(value) > limit:
            self.add(field, f"is longer than {limit} characters")

    def pattern(self, field: str, value: str, regex: str, hint: str) -> None:
        if value and not re.fullmatch(regex, value):
            self.add(field, hint)

    def enum(self, field: str, value: int, enum_type, *, allow_unspecified: bool = False) -> None:
        names = enum_type.DESCRIPTOR.values_by_number
        if value not in names:
            self.add(field, f"has unknown value {value}")
        elif value == 0 and not allow_unspecified:
            self.add(field, f"is required (not {names[0].name})")

    def enum_names(self, field: str, values, enum_type) -> list[str | None]:
        """The names of a repeated enum field's values, without the enum's prefix (that of its UNSPECIFIED
        value), one for one (None where the value is no name); each unknown, unspecified or repeated value is a
        violation naming `field[i]`."""
        prefix = enum_type.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")
        names: list[str | None] = []
        for i, number in enumerate(values):
            self.enum(f"{field}[{i}]", number, enum_type)
            value = enum_type.DESCRIPTOR.values_by_number.get(number)
            name = value.name.removeprefix(prefix) if value is not None and number else None
            if name is not None and name in names:
                self.add(f"{field}[{i}]", f"repeats {name}")
            names.append(name)
        return names

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def timestamp(ts: timestamp_pb2.Timestamp) -> dt.datetime | None:
    """A proto Timestamp as an aware datetime, or None when unset (zero). ValueError for one outside the
    Timestamp's own rules (nanos in 0..999,999,999, seconds within years 1 to 9999), checked whole."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    if not 0 <= ts.nanos <= 999_999_999 or not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS:
        raise ValueError("not a valid google.protobuf.Timestamp")
    return dt.datetime.fromtimestamp(ts.seconds, UTC) + dt.timedelta(microseconds=ts.nanos // 1000)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp:
    """A datetime (naive: UTC, as SQLite returns them) as a Timestamp, the unset Timestamp for None. Exact to the
    microsecond, in integer arithmetic (protobuf's FromDatetime costs several times more: a list page converts
    three per entry)."""
    if value is None:
        return timestamp_pb2.Timestamp()
    since = (value.replace(tzinfo=UTC) if value.tzinfo is None else value) - _EPOCH
    return timestamp_pb2.Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    if value > MAX_PAGE_SIZE:
        raise InvalidArgument(field, f"must be at most {MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE


def mask_paths(mask, allowed: set[str], field: str = "update_mask") -> list[str]:
    paths = list(mask.paths)
    if not paths:
        raise InvalidArgument(field, f"is required; allowed paths: {', '.join(sorted(allowed))}")
    unknown = [p for p in paths if p not in allowed]
    if unknown:
        raise InvalidArgument(field, f"has unknown path {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return paths
