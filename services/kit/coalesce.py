"""Coalesced authz consultations: the checks of calls that need authz at the same moment travel together.

A call that finds no consultation of its process in flight is sent at once (a call alone is never delayed). While
one is in flight, the next calls' checks wait in a queue, which goes as ONE request as soon as a consultation
comes back (the channel is free), after `bound_s` (a few hundred microseconds) at the latest, or at once when it
holds `max_items` checks. Each call's checks are still decided by authz, fresh, in the request sent after the call
asked: nothing is cached or reused. Each call keeps its own deadline (it is refused when that passes, whatever
its companions wait for) and a failed request refuses every call in it (fails closed)."""
from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, TypeVar

from services.kit.errors import AuthzUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")
TIMED_OUT = "authorization service did not answer (DEADLINE_EXCEEDED); the call is refused"
UNREADABLE = "authorization service answered something that is not a decision; the call is refused"


@dataclass(eq=False)
class Ask(Generic[Item]):
    """One call's checks: its subject's token, its items, and when its deadline passes (loop time)."""

    token: str
    items: list[Item]
    deadline: float
    future: asyncio.Future | None = None
    context: contextvars.Context | None = field(default=None, repr=False)  # the asking call's (its trace)


Send = Callable[[list[Ask], float], Awaitable[list[list]]]


class Coalescer(Generic[Item, Result]):
    """Queues and sends asks; `send(asks, timeout)` makes one request of them and returns each ask's results in
    order (raising to refuse them all). `bound_s` 0 turns coalescing off: every ask is sent at once."""

    def __init__(self, send: Send, bound_s: float, max_items: int = 1000) -> None:
        self._send = send
        self._bound_s = bound_s
        self._max_items = max_items
        self._in_flight = 0
        self._queue: list[Ask] = []
        self._queued_items = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def ask(self, token: str, items: list[Item], timeout: float) -> tuple[list[Result], int]:
        """The decisions of one call's `items`, and how many checks travelled in the request that carried them."""
        loop = asyncio.get_running_loop()
        ask = Ask(token, items, loop.time() + timeout)
        if self._bound_s <= 0 or (self._in_flight == 0 and not self._queue):
            return (await self._run([ask], timeout))[0], len(items)  # alone: at once
        ask.future, ask.context = loop.create_future(), contextvars.copy_context()
        self._queue.append(ask)
        self._queued_items += len(items)
        if self._queued_items >= self._max_items:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._bound_s, self._flush)
        try:
            return await asyncio.wait_for(asyncio.shield(ask.future), timeout)
        except TimeoutError:
            raise AuthzUnavailable(TIMED_OUT) from None
        finally:
            if not ask.future.done():
                ask.future.cancel()  # its waiter left (deadline, cancelled call): it is not sent, or not answered

    async def _run(self, asks: list[Ask], timeout: float) -> list[list]:
        self._in_flight += 1
        try:
            return await self._send(asks, timeout)
        finally:
            self._in_flight -= 1
            if self._queue:
                self._flush()  # the channel is free: the waiting checks go now

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, items = [], 0
        while self._queue and items < self._max_items:
            ask = self._queue.pop(0)
            self._queued_items -= len(ask.items)
            if not ask.future.done():
                batch.append(ask)
                items += len(ask.items)
        if self._queue:  # more than one request's worth: the rest goes right after
            asyncio.get_running_loop().call_soon(self._flush)
        if not batch:
            return
        loop = asyncio.get_running_loop()
        timeout = max(0.001, max(a.deadline for a in batch) - loop.time())
        task = loop.create_task(self._deliver(batch, timeout), context=batch[0].context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, batch: list[Ask], timeout: float) -> None:
        travelled = sum(len(a.items) for a in batch)
        try:
            results = await self._run(batch, timeout)
        except BaseException as exc:  # every call of a failed request is refused, each with an error of its own
            message = exc.message if isinstance(exc, AuthzUnavailable) else UNREADABLE
            for ask in batch:
                if not ask.future.done():
                    ask.future.set_exception(AuthzUnavailable(message))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for ask, result in zip(batch, results):
            if not ask.future.done():
                ask.future.set_result((result, travelled))
