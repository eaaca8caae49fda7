"""What rsctl prints: aligned tables and "field: value" blocks for people, one JSON document for scripts
(--json, protobuf JSON mapping with the proto field names). Timestamps are ISO 8601 UTC."""
from __future__ import annotations

import datetime as dt
import json
import re
from typing import Callable, Iterable, TextIO

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

Column = tuple[str, Callable[[Message], str]]
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x9b]")
_WELL_KNOWN = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}


def to_dict(message: Message) -> dict:
    """The protobuf JSON mapping of `message`, proto field names, fields without presence always present."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def clean(text: str) -> str:
    """One printable line: control characters (newlines, terminal escapes) become spaces or '?'."""
    return _CONTROL.sub(lambda m: " " if m.group() in "\n\t\r" else "?", text)


def iso(ts) -> str:
    """A google.protobuf.Timestamp as ISO 8601 UTC ("2026-12-01T00:00:00Z"); "" when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return ""
    moment = dt.datetime.fromtimestamp(ts.seconds, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(value) -> str:
    """A google.protobuf.Duration as e.g. "8h", "1d 12h", "90s"."""
    seconds = value.seconds
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h" if seconds < 86400 else f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def enum_name(enum_descriptor, number: int) -> str:
    """An enum value without its type prefix: PRINCIPAL_KIND_CUSTOMER_USER -> CUSTOMER_USER."""
    value = enum_descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    zero = enum_descriptor.values_by_number.get(0)
    prefix = zero.name.removesuffix("UNSPECIFIED") if zero is not None else ""
    return value.name.removeprefix(prefix)


def _scalar_text(fd: FieldDescriptor, value) -> str:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(fd.enum_type, value)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return "yes" if value else "no"
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return f"<{len(value)} bytes>"
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        full = fd.message_type.full_name
        if full == "google.protobuf.Timestamp":
            return iso(value)
        if full == "google.protobuf.Duration":
            return duration(value)
        if full == "google.protobuf.FieldMask":
            return ", ".join(value.paths)
    return clean(str(value))


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def _is_nested(fd: FieldDescriptor) -> bool:
    return fd.type == FieldDescriptor.TYPE_MESSAGE and not _is_map(fd) and fd.message_type.full_name not in _WELL_KNOWN


def _is_repeated(fd: FieldDescriptor) -> bool:
    return fd.is_repeated


def field_text(message: Message, name: str) -> str:
    """The display text of one (non-nested) field of `message`."""
    fd = message.DESCRIPTOR.fields_by_name[name]
    value = getattr(message, name)
    if _is_map(fd):
        value_fd = fd.message_type.fields_by_name["value"]
        return ", ".join(f"{clean(k)}={_scalar_text(value_fd, value[k])}" for k in sorted(value))
    if _is_repeated(fd):
        return ", ".join(_scalar_text(fd, v) for v in value)
    return _scalar_text(fd, value)


def describe(message: Message, indent: str = "") -> list[str]:
    """A "field: value" block of every field of `message`, nested messages indented below their field."""
    plain = [fd for fd in message.DESCRIPTOR.fields if not _is_nested(fd)]
    width = max((len(fd.name) for fd in plain), default=0) + 1
    lines: list[str] = []
    for fd in message.DESCRIPTOR.fields:
        if not _is_nested(fd):
            lines.append(f"{indent}{(fd.name + ':').ljust(width)} {field_text(message, fd.name)}".rstrip())
        elif _is_repeated(fd):
            items = getattr(message, fd.name)
            lines.append(f"{indent}{fd.name}:" + ("" if items else " (none)"))
            for item in items:
                block = describe(item, indent + "    ")
                if block:
                    block[0] = f"{indent}  - {block[0].lstrip()}"
                lines.extend(block)
        elif message.HasField(fd.name):
            lines.append(f"{indent}{fd.name}:")
            lines.extend(describe(getattr(message, fd.name), indent + "  "))
    return lines


def table(rows: Iterable[Message], columns: list[Column]) -> list[str]:
    """Aligned columns under upper-case headers, two spaces apart."""
    header = [h.upper().replace(" ", "_") for h, _ in columns]
    cells = [header] + [[clean(fn(row)) for _, fn in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


def col(name: str, header: str | None = None) -> Column:
    """A column showing field `name` of each row."""
    return (header or name, lambda m: field_text(m, name))


class Output:
    """Writes results to stdout (a table, a block, or one JSON document) and notes/warnings."""

    def __init__(self, stdout: TextIO, stderr: TextIO, json_mode: bool, name_only: bool = False) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.json_mode = json_mode
        self.name_only = name_only and not json_mode

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def note(self, text: str) -> None:
        """A human-only remark; with --json or --name-only stdout carries only the result, so it goes nowhere."""
        if not (self.json_mode or self.name_only):
            self.line(text)

    @staticmethod
    def _name(message: Message) -> str | None:
        return getattr(message, "name") if "name" in message.DESCRIPTOR.fields_by_name else None

    def warn(self, text: str) -> None:
        print(f"rsctl: warning: {text}", file=self.stderr)

    def document(self, data) -> None:
        json.dump(data, self.stdout, indent=2, ensure_ascii=False)
        self.stdout.write("\n")

    def resource(self, message: Message, *, extra: dict | None = None) -> None:
        """One resource: its JSON, or its "field: value" block."""
        if self.json_mode:
            self.document({**to_dict(message), **(extra or {})})
            return
        if self.name_only and self._name(message) is not None:
            self.line(self._name(message))
            return
        for text in describe(message):
            self.line(text)
        for key, value in (extra or {}).items():
            self.line(f"{key}: {value}")

    def listing(self, key: str, rows: list[Message], columns: list[Column], *, empty: str = "(none)") -> None:
        """Many resources: {"<key>": [...]} or a table ("(none)" when empty)."""
        if self.json_mode:
            self.document({key: [to_dict(r) for r in rows]})
            return
        if self.name_only and rows and self._name(rows[0]) is not None:
            for row in rows:
                self.line(self._name(row))
            return
        if not rows:
            self.line(empty)
            return
        for text in table(rows, columns):
            self.line(text)
