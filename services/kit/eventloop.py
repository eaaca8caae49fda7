"""The event loop every service process runs on: uvloop (libuv) unless RS_EVENT_LOOP=asyncio.

grpc.aio runs on any asyncio loop; on uvloop an empty RPC costs about 15 % less server CPU than on the
standard loop (bench/README.md). Tests run in-process on pytest-asyncio's standard loop, and the end-to-end
tests start the real processes on uvloop, so both loops are exercised."""
from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from services.kit.config import env

T = TypeVar("T")
CHOICES = ("uvloop", "asyncio")


def choice() -> str:
    value = env("RS_EVENT_LOOP", "").strip().lower() or "uvloop"  # set but empty: the default, as elsewhere
    if value not in CHOICES:
        raise SystemExit(f"RS_EVENT_LOOP must be one of {', '.join(CHOICES)}, not {value!r}")
    return value


def run(main: Awaitable[T]) -> T:
    """Run `main` to completion on the configured loop (asyncio.run's semantics either way)."""
    if choice() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
