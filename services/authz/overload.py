"""Decision reads on the database engine under load: read together, a bounded number at once, newest first.

A flood of decisions must neither make every decision wait behind it nor churn the engine's pool (past its
size the engine opens and closes a connection per use, costly on both ends). So at most `slots` reads run at
once; a decision that finds them all busy waits, and each read that ends takes up to `max_batch` waiting
decisions, newest first, into ONE statement (every decision of it arrived before that statement began, so each
still sees every write committed before it was asked: nothing is cached). Newest first, because under
overload the newest caller is the one still waiting for its answer while the oldest are about to give up.
A waiter gives up when its caller's deadline draws near, and beyond `max_waiting` waiters the one that has
waited longest is refused at once: both are model.DecisionsBusy (RESOURCE_EXHAUSTED, retryable)."""
from __future__ import annotations

import asyncio
import collections
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

from services.authz.model import DecisionsBusy
from services.kit import auth

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
MAX_WAIT_S = 2.0  # the longest a decision waits (the kit's default authorization deadline)
WAIT_SHARE = 0.8  # ... and at most this share of what is left of its caller's deadline


class ReadBatches(Generic[K, V]):
    """`read(keys) -> {key: value}` for the keys asked at the same moment, `slots` reads at once (used on the
    event loop only)."""

    def __init__(self, read: Callable[[list[K]], Awaitable[dict[K, V]]], slots: int, max_batch: int,
                 max_waiting: int) -> None:
        self._read = read
        self.free = slots
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._waiting: collections.deque[tuple[K, asyncio.Future]] = collections.deque()
        self._reading: set[asyncio.Task] = set()

    async def get(self, key: K) -> V:
        """The value of `key`, from a read that began after this call; DecisionsBusy as described above."""
        if self.free > 0 and not self._waiting:
            self.free -= 1
            try:
                return (await self._read([key]))[key]
            finally:
                self._next()
        answer = asyncio.get_running_loop().create_future()
        entry = (key, answer)
        self._waiting.append(entry)
        if len(self._waiting) > self.max_waiting:
            _, oldest = self._waiting.popleft()
            if not oldest.done():
                oldest.set_exception(DecisionsBusy())
        try:
            return await asyncio.wait_for(answer, auth.remaining(MAX_WAIT_S) * WAIT_SHARE)
        except asyncio.TimeoutError:
            raise DecisionsBusy() from None
        finally:
            if entry in self._waiting:
                self._waiting.remove(entry)

    def _next(self) -> None:
        """A read ended: its slot reads for the newest waiters, or becomes free."""
        batch = []
        while self._waiting and len(batch) < self.max_batch:
            key, answer = self._waiting.pop()
            if not answer.done():
                batch.append((key, answer))
        if not batch:
            self.free += 1
            return
        task = asyncio.get_running_loop().create_task(self._read_for(batch))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _read_for(self, batch: list[tuple[K, asyncio.Future]]) -> None:
        try:
            values = await self._read(list(dict.fromkeys(key for key, _ in batch)))
        except Exception as error:  # noqa: BLE001 - every waiter gets the read's failure, as its own read would
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
        else:
            for key, answer in batch:
                if not answer.done():
                    answer.set_result(values[key])
        finally:
            self._next()
