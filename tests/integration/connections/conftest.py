"""Fixtures of the connections service's integration tests."""
from __future__ import annotations

import pytest_asyncio

from tests.integration.connections.world import World, build_world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite) -> World:
    return await build_world(suite)
