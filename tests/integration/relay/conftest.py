"""Fixtures of the relay's integration tests (each module sets SUITE_SERVICES to include "relay")."""
from __future__ import annotations

import pytest_asyncio

from tests.integration.relay.world import RelayWorld, build_world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite) -> RelayWorld:
    built = await build_world(suite)
    try:
        yield built
    finally:
        for connector in built.connectors:
            await connector.close()
        await built.echo.stop()
