"""Shared fixtures. Every database test runs on SQLite and on PostgreSQL; PostgreSQL runs when
RS_TEST_POSTGRES_URL is set and is required (a failure, not a skip) when RS_REQUIRE_POSTGRES=1."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import Suite, postgres_url  # noqa: E402

BACKENDS = ["sqlite", "postgres"]


def require_backend(backend: str) -> None:
    if backend == "postgres" and not postgres_url():
        if os.environ.get("RS_REQUIRE_POSTGRES") == "1":
            pytest.fail("RS_REQUIRE_POSTGRES=1 but RS_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL tests need RS_TEST_POSTGRES_URL")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    require_backend(request.param)
    return request.param


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def suite(request, tmp_path_factory):
    """authz, connections and depot in-process, one set per test module and backend."""
    require_backend(request.param)
    tmp = tmp_path_factory.mktemp(f"suite-{request.param}")
    running = Suite(request.param, tmp)
    try:
        await running.start(getattr(request.module, "SUITE_SERVICES", ("authz", "connections", "depot")))
        yield running
    finally:
        await running.stop()
