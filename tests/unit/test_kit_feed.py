"""The event feed's reads of its source (services.kit.feed) when the watch is cancelled mid-read (its client went
away): the watch ends at once, and the read still runs to its end, so a pooled database connection is never
abandoned inside a statement (row 15 once caught SQLAlchemy logging "Exception during reset" for one)."""
from __future__ import annotations

import asyncio
import gc

import pytest

from services.kit import feed


class GatedSource:
    """A feed.Source whose reads wait for `gate`, recording whether each ran to its end or was cancelled."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.ended: list[str] = []

    async def _read(self, what: str):
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.ended.append(f"{what} cancelled")
            raise
        self.ended.append(f"{what} finished")

    async def last_position(self, customer: str) -> int:
        await self._read("last_position")
        return 0

    async def events_after(self, customer: str, position: int, limit: int):
        await self._read("events_after")
        return []


async def test_a_cancelled_watch_lets_its_read_finish():
    source = GatedSource()
    watch = asyncio.ensure_future(feed.to_the_end(source.last_position("0000000001")))
    await source.started.wait()
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch  # the watch ends at once, before the read
    assert source.ended == []
    source.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert source.ended == ["last_position finished"]
    assert not feed._finishing  # nothing left behind once it ended


async def test_a_read_that_fails_after_its_watch_went_is_not_an_unretrieved_error():
    async def failing():
        await asyncio.sleep(0.01)
        raise RuntimeError("database went away")

    loop = asyncio.get_running_loop()
    seen: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        watch = asyncio.ensure_future(feed.to_the_end(failing()))
        await asyncio.sleep(0)
        watch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watch
        await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert seen == []
    assert not feed._finishing


async def test_an_uncancelled_read_answers_as_itself():
    source = GatedSource()
    source.gate.set()
    assert await feed.to_the_end(source.events_after("0000000001", 0, 10)) == []
    assert source.ended == ["events_after finished"]


async def test_a_wait_cancelled_as_its_ticket_is_woken_is_cancelled():
    """The stop of an outbox reader cancels its wait; a wake-up at the same moment must not swallow that
    (asyncio.wait_for on Python 3.11 can), or the reader runs on and its stop waits for ever."""
    for _ in range(200):
        notifier = feed.Notifier()
        ticket = notifier.ticket()
        waiting = asyncio.ensure_future(feed.Notifier.wait(ticket, 5))
        await asyncio.sleep(0)
        notifier.wake()  # the wake-up and the cancellation in the same turn of the loop
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting


async def test_a_wait_ends_when_woken_or_at_its_timeout():
    notifier = feed.Notifier()
    ticket = notifier.ticket()
    notifier.wake()
    await asyncio.wait_for(feed.Notifier.wait(ticket, 30), 1)  # woken before: at once
    started = asyncio.get_running_loop().time()
    await feed.Notifier.wait(notifier.ticket(), 0.05)
    assert asyncio.get_running_loop().time() - started >= 0.04
