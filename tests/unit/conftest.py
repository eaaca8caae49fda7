"""Fixtures of the unit tests: the connections service's migrated store per backend, its catalog, a clock."""
from __future__ import annotations

import pytest
import pytest_asyncio

from services.connections.connection_types import ConnectionTypes
from services.connections.store import Store
from services.kit.clock import ManualClock
from services.kit.db import Database, migrate
from tests.conftest import BACKENDS, require_backend
from tests.harness import Databases
from tests.unit.connections_support import MIGRATIONS, T0


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def conn_db(request, tmp_path_factory):
    require_backend(request.param)
    databases = Databases(request.param, tmp_path_factory.mktemp("connections"))
    url = databases.new("connections_unit")
    migrate(url, MIGRATIONS)
    store = Store(Database(url))
    try:
        yield store
    finally:
        await store.close()
        databases.drop_all()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def connection_types(conn_db):
    return ConnectionTypes(await conn_db.connection_types())


@pytest.fixture
def clock():
    return ManualClock(T0)
