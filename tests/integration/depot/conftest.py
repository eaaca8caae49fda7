"""Fixtures of the depot's integration tests."""
from __future__ import annotations

import pytest_asyncio

from tests.integration.depot.world import World, build_world, dispose_sql_engine, restart_depot


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite) -> World:
    await restart_depot(suite)
    yield await build_world(suite)
    dispose_sql_engine(suite)
