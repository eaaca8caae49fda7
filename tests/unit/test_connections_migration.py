"""The initial migration loads the catalog: the connection_types table equals the seed's table row for row and
the catalog the migration freezes, and the service's in-memory catalog is read back from it unchanged (SQLite
and PostgreSQL)."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from services.connections.connection_types import CATEGORY_TITLES
from services.connections.tables import ConnectionTypeRow
from tests.unit.catalog_data import CONNECTION_TYPES, SEED_ROWS

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _rows(store):
    async with store.db.unit_of_work() as session:
        return (await session.scalars(select(ConnectionTypeRow).order_by(ConnectionTypeRow.position))).all()


async def test_table_equals_the_seed_row_for_row(conn_db):
    rows = await _rows(conn_db)
    assert len(rows) == 33
    table = [(CATEGORY_TITLES[r.category], r.display_name, r.description, r.sap_note) for r in rows]
    assert table == SEED_ROWS
    assert [r.position for r in rows] == list(range(1, 34))
    assert sum(1 for r in rows if r.sap_note == "") == 3  # the seed gives no note for three types


async def test_table_holds_what_a_set_up_needs(conn_db):
    rows = {r.code: r for r in await _rows(conn_db)}
    for spec in CONNECTION_TYPES:
        row = rows[spec.code]
        assert row.default_port == spec.default_port
        assert row.max_open_hours == spec.max_open_hours
        assert json.loads(row.parameters) == [
            {"key": p.key, "display_name": p.display_name, "kind": p.kind, "required": p.required,
             "description": p.description} for p in spec.parameters]


async def test_served_catalog_is_read_back_from_the_table(connection_types):
    assert connection_types.types == CONNECTION_TYPES
    assert [s.code for s in connection_types.list("SOLUTION_MANAGER")] == ["SOLUTION_MANAGER",
                                                                        "SOLUTION_MANAGER_DIAGNOSTICS"]
    assert len(connection_types.list("APPLICATION_SHARING_OS")) == 9
    assert len(connection_types.list(None)) == 33
