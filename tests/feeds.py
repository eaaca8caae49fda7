"""A client of an event feed (WatchEvents) for tests: it reads the stream in the background, so a test makes
changes and then waits for the events they must produce."""
from __future__ import annotations

import asyncio
import contextlib

import grpc

from remotesupport.common.v1 import events_pb2

WAIT_S = 10.0


class Watcher:
    """One open WatchEvents stream: `events` seen so far, `cursor` of the newest response, `ended` the status
    it ended with (None while open)."""

    def __init__(self, call) -> None:
        self.call = call
        self.events: list[events_pb2.Event] = []
        self.cursor = ""
        self.responses = 0
        self.ended: grpc.RpcError | None = None
        self._changed = asyncio.Condition()
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, method, request, metadata) -> "Watcher":
        """Open the watch and wait for its first response (the watch is decided and its cursor known)."""
        watcher = cls(method(request, metadata=metadata))
        await watcher.until(lambda w: w.responses >= 1 or w.ended is not None)
        if watcher.ended is not None:
            raise watcher.ended
        return watcher

    async def _read(self) -> None:
        try:
            async for response in self.call:
                async with self._changed:
                    self.events.extend(response.events)
                    self.cursor = response.cursor
                    self.responses += 1
                    self._changed.notify_all()
        except grpc.RpcError as err:
            async with self._changed:
                self.ended = err
                self._changed.notify_all()

    async def until(self, condition, timeout: float = WAIT_S) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: condition(self)), timeout)

    async def wait_for(self, count: int, timeout: float = WAIT_S) -> list[events_pb2.Event]:
        """The first `count` events, once they arrived; fails if the stream ended first."""
        await self.until(lambda w: len(w.events) >= count or w.ended is not None, timeout)
        assert len(self.events) >= count, f"the feed ended after {len(self.events)} events: {self.ended}"
        return self.events[:count]

    async def next_heartbeats(self, count: int = 2) -> None:
        """Wait until `count` more responses came: nothing that was committed before is still on its way."""
        seen = self.responses
        await self.until(lambda w: w.responses >= seen + count or w.ended is not None)

    async def close(self) -> None:
        self.call.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
            await self._task

