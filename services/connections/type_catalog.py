"""The connection-type catalog as the service serves it: read once at start from the `connection_types`
table (written by the initial migration) into an immutable in-memory copy."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from services.connections.catalog import CATEGORIES, ConnectionTypeSpec, ParameterSpec
from services.connections.tables import ConnectionTypeRow
from services.kit.db import Database
from services.kit.errors import InvalidArgument, NotFound


def spec_from_row(row: ConnectionTypeRow) -> ConnectionTypeSpec:
    parameters = tuple(
        ParameterSpec(p["key"], p["display_name"], p["kind"], bool(p["required"]), p["description"])
        for p in json.loads(row.parameters)
    )
    return ConnectionTypeSpec(row.code, row.display_name, row.category, row.description, row.sap_note,
                              parameters, row.default_port, row.max_open_hours)


class TypeCatalog:
    """The catalog in the seed's order, by code and by category."""

    def __init__(self, specs: list[ConnectionTypeSpec]) -> None:
        self.types: tuple[ConnectionTypeSpec, ...] = tuple(specs)
        self._by_code = {spec.code: spec for spec in self.types}

    @classmethod
    async def load(cls, db: Database) -> "TypeCatalog":
        async with db.unit_of_work() as session:
            rows = (await session.scalars(select(ConnectionTypeRow).order_by(ConnectionTypeRow.position))).all()
        if not rows:
            raise RuntimeError("the connection_types table is empty; run the migrations")
        return cls([spec_from_row(row) for row in rows])

    def list(self, category: str | None = None) -> list[ConnectionTypeSpec]:
        if category is not None and category not in CATEGORIES:
            raise InvalidArgument("category", f"is not one of {', '.join(CATEGORIES)}")
        return [spec for spec in self.types if category is None or spec.category == category]

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


def max_duration(spec: ConnectionTypeSpec) -> dt.timedelta:
    return dt.timedelta(hours=spec.max_open_hours)
