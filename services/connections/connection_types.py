"""The catalog of service connection types (the seed's "Connection Types" table): what a type is, and the
catalog as the service serves it - read once at start from the `connection_types` table, where the initial
migration froze the 33 types, into an immutable copy. No I/O here; the store reads the table."""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Mapping

from services.kit.errors import InvalidArgument, NotFound
from services.kit.paging import STR, PageTokens

# --- parameter kinds -------------------------------------------------------------------------------

STRING = "STRING"
HOST = "HOST"
PORT = "PORT"
URL = "URL"
INSTANCE_NUMBER = "INSTANCE_NUMBER"
DATABASE = "DATABASE"

PARAMETER_KINDS: tuple[str, ...] = (STRING, HOST, PORT, URL, INSTANCE_NUMBER, DATABASE)

# --- categories (the five headings of the seed's table, in its order) ------------------------------

SAP_GUI = "SAP_GUI"
SOLUTION_MANAGER = "SOLUTION_MANAGER"
JAVA_HTTP = "JAVA_HTTP"
APPLICATION_SHARING_OS = "APPLICATION_SHARING_OS"
FURTHER = "FURTHER"

CATEGORIES: tuple[str, ...] = (SAP_GUI, SOLUTION_MANAGER, JAVA_HTTP, APPLICATION_SHARING_OS, FURTHER)

CATEGORY_TITLES: dict[str, str] = {
    SAP_GUI: "SAP GUI based connection",
    SOLUTION_MANAGER: "Connection to SAP Solution Manager",
    JAVA_HTTP: "Java / http-based connection types that enable / ease service connection to java based systems",
    APPLICATION_SHARING_OS: (
        "Connection types providing application sharing methods or access on OS-level (operating system)"
    ),
    FURTHER: "Further connection types",
}

CODE_PATTERN = re.compile(r"[A-Z][A-Z0-9_]*")
CODE_MAX_LENGTH = 40


@dataclass(frozen=True)
class ParameterSpec:
    """One set-up parameter of a connection type (e.g. the application server host)."""

    key: str
    display_name: str
    kind: str
    required: bool
    description: str

    def __post_init__(self) -> None:
        if self.kind not in PARAMETER_KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}")


@dataclass(frozen=True)
class ConnectionTypeSpec:
    """One service connection type of the catalog.

    `default_port` is the standard port where one exists; for types addressed by instance number it is the
    port of instance 00 (e.g. 3200 = sapdp00), the actual port follows the instance number.
    """

    code: str
    display_name: str
    category: str
    description: str
    sap_note: str
    parameters: tuple[ParameterSpec, ...]
    default_port: int | None
    max_open_hours: int

    def __post_init__(self) -> None:
        if len(self.code) > CODE_MAX_LENGTH or not CODE_PATTERN.fullmatch(self.code):
            raise ValueError(f"invalid connection type code {self.code!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")
        if self.default_port is not None and not 1 <= self.default_port <= 65535:
            raise ValueError(f"invalid default port {self.default_port!r}")
        if self.max_open_hours <= 0:
            raise ValueError("max_open_hours must be positive")
        keys = [p.key for p in self.parameters]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate parameter key in {self.code}")


def spec_from_row(row: Mapping) -> ConnectionTypeSpec:
    """The type a row of `connection_types` holds (column name -> value; parameters as their JSON list)."""
    parameters = tuple(
        ParameterSpec(p["key"], p["display_name"], p["kind"], bool(p["required"]), p["description"])
        for p in json.loads(row["parameters"])
    )
    return ConnectionTypeSpec(row["code"], row["display_name"], row["category"], row["description"],
                              row["sap_note"], parameters, row["default_port"], row["max_open_hours"])


def max_duration(spec: ConnectionTypeSpec) -> dt.timedelta:
    return dt.timedelta(hours=spec.max_open_hours)


# ListConnectionTypes pages by the code of the last type served, in the catalog's order.
_PAGE_TOKENS = PageTokens(STR)


class ConnectionTypes:
    """The served catalog, in the seed's order: listed by category and page, looked up by code."""

    def __init__(self, specs: list[ConnectionTypeSpec]) -> None:
        if not specs:
            raise RuntimeError("the connection_types table is empty; run the migrations")
        self.types: tuple[ConnectionTypeSpec, ...] = tuple(specs)
        self._by_code = {spec.code: spec for spec in self.types}

    def find(self, code: str) -> ConnectionTypeSpec | None:
        """The type with this code, or None."""
        return self._by_code.get(code)

    def list(self, category: str | None = None) -> list[ConnectionTypeSpec]:
        """Every type (of `category`, when given), in the seed's order."""
        if category is not None and category not in CATEGORIES:
            raise InvalidArgument("category", f"is not one of {', '.join(CATEGORIES)}")
        return [spec for spec in self.types if category is None or spec.category == category]

    def page(self, category: str | None, size: int, token: str) -> tuple[list[ConnectionTypeSpec], str]:
        """One page of `list(category)` and the token of the next ("" on the last page)."""
        scope = {"category": category or "", "order": "seed"}
        after = _PAGE_TOKENS.read(token, scope)
        listed = self.list(category)
        start = 0
        if after is not None:
            last = self._by_code.get(after[0])
            if last is None or last not in listed:
                raise InvalidArgument("page_token", "is not a page token of this list")
            start = listed.index(last) + 1
        page = listed[start:start + size]
        more = start + size < len(listed)
        return page, _PAGE_TOKENS.issue([page[-1].code], scope) if more else ""

    def get(self, code: str) -> ConnectionTypeSpec:
        """The type named by `code`, or NOT_FOUND."""
        spec = self._by_code.get(code)
        if spec is None:
            raise NotFound(f"connection type connectionTypes/{code} does not exist")
        return spec

    def referenced(self, code: str, field: str) -> ConnectionTypeSpec:
        """The type a request field refers to, or INVALID_ARGUMENT naming the field."""
        spec = self._by_code.get(code)
        if spec is None:
            raise InvalidArgument(field, f"connectionTypes/{code} is not a connection type of the catalog")
        return spec
