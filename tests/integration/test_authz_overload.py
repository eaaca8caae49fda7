"""authz's decision reads under load (services.authz.overload.ReadBatches): a bounded number of reads at once;
decisions that wait are read together, newest first, by a read that began after they were asked (never by one
already under way); a waiter gives up near its caller's deadline, and past the bound the oldest is refused."""
from __future__ import annotations

import asyncio
import time

import pytest

from services.authz.model import DecisionsBusy
from services.authz.overload import ReadBatches
from services.kit import auth

pytestmark = pytest.mark.asyncio


class Reads:
    """A read that records the keys of each call and, when `held`, waits until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: Exception | None = None

    def hold(self) -> None:
        self.gate.clear()

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(list(keys))
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return {key: f"value of {key} from read {len(self.calls)}" for key in keys}


async def started(*coroutines) -> list[asyncio.Task]:
    """Each as a task, in order, each waiting before the next starts."""
    tasks = []
    for coroutine in coroutines:
        tasks.append(asyncio.create_task(coroutine))
        await asyncio.sleep(0)
    return tasks


async def test_without_load_each_decision_is_read_at_once_on_its_own():
    reads = Reads()
    batches = ReadBatches(reads, slots=2, max_batch=8, max_waiting=8)
    assert await batches.get("a") == "value of a from read 1"
    assert await batches.get("b") == "value of b from read 2"
    assert reads.calls == [["a"], ["b"]] and batches.free == 2


async def test_waiting_decisions_are_read_together_newest_first_by_a_read_begun_after_them():
    reads = Reads()
    batches = ReadBatches(reads, slots=1, max_batch=8, max_waiting=8)
    reads.hold()
    first, *waiting = await started(batches.get("a"), batches.get("a"), batches.get("b"), batches.get("c"))
    assert reads.calls == [["a"]]  # the second "a" is not answered by the read already under way
    reads.gate.set()
    assert await first == "value of a from read 1"
    assert await asyncio.gather(*waiting) == [f"value of {k} from read 2" for k in ("a", "b", "c")]
    assert reads.calls == [["a"], ["c", "b", "a"]] and batches.free == 1


async def test_a_read_takes_at_most_max_batch_waiters_the_newest():
    reads = Reads()
    batches = ReadBatches(reads, slots=1, max_batch=2, max_waiting=8)
    reads.hold()
    tasks = await started(*(batches.get(k) for k in "abcd"))
    reads.gate.set()
    await asyncio.gather(*tasks)
    assert reads.calls == [["a"], ["d", "c"], ["b"]]


async def test_past_max_waiting_the_oldest_waiter_is_refused_at_once():
    reads = Reads()
    batches = ReadBatches(reads, slots=1, max_batch=8, max_waiting=2)
    reads.hold()
    first, oldest, *newer = await started(*(batches.get(k) for k in "abcd"))
    with pytest.raises(DecisionsBusy):
        await oldest
    reads.gate.set()
    await asyncio.gather(first, *newer)
    assert reads.calls == [["a"], ["d", "c"]]


async def test_a_waiter_gives_up_before_its_callers_deadline():
    reads = Reads()
    batches = ReadBatches(reads, slots=1, max_batch=8, max_waiting=8)
    reads.hold()
    busy = asyncio.create_task(batches.get("a"))
    await asyncio.sleep(0)
    auth.deadline_var.set(time.monotonic() + 0.1)
    began = time.monotonic()
    with pytest.raises(DecisionsBusy):
        await batches.get("b")
    assert time.monotonic() - began < 0.1
    reads.gate.set()
    await busy
    assert reads.calls == [["a"]] and batches.free == 1  # nobody left waiting: the slot is free again


async def test_a_failed_read_fails_its_waiters_and_frees_its_slot():
    reads = Reads()
    batches = ReadBatches(reads, slots=1, max_batch=8, max_waiting=8)
    reads.hold()
    reads.failure = ConnectionError("database gone")
    tasks = await started(*(batches.get(k) for k in "abc"))
    reads.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    reads.failure = None
    assert await batches.get("d") == "value of d from read 3" and batches.free == 1
