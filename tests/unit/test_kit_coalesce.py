"""The coalescer of authz consultations (services.kit.coalesce), over a transport the test controls: a call alone
goes at once; calls that ask while one is in flight go together when it returns, after the bound at the latest,
at once when they fill a request; each keeps its own deadline and its own error; nothing is answered from
anything but the request that carried it."""
from __future__ import annotations

import asyncio
import contextvars

import pytest

from services.kit.coalesce import TIMED_OUT, UNREADABLE, Coalescer
from services.kit.errors import AuthzUnavailable

CALLER = contextvars.ContextVar("caller", default="")


class Transport:
    """Records each request (the tokens and items of its asks) and answers each item with (token, item); the
    test holds a request open with `hold`."""

    def __init__(self) -> None:
        self.requests: list[list[tuple[str, list]]] = []
        self.contexts: list[str] = []
        self.hold: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def send(self, asks, timeout):
        self.requests.append([(a.token, list(a.items)) for a in asks])
        self.contexts.append(CALLER.get())
        if self.hold is not None:
            hold, self.hold = self.hold, None
            await hold.wait()
        if self.fail is not None:
            raise self.fail
        return [[(a.token, item) for item in a.items] for a in asks]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def one_in_flight(bound_s: float, max_items: int = 1000):
    """A coalescer whose first call ("t0") is in flight until the returned event is set."""
    transport, release = Transport(), asyncio.Event()
    transport.hold = release
    coalescer = Coalescer(transport.send, bound_s=bound_s, max_items=max_items)
    first = asyncio.create_task(coalescer.ask("t0", ["a"], 5.0))
    await settle()
    return transport, coalescer, release, first


async def test_a_call_alone_is_sent_at_once_on_its_own():
    transport = Transport()
    coalescer = Coalescer(transport.send, bound_s=10.0)
    assert await coalescer.ask("t1", ["read", "reveal"], 1.0) == ([("t1", "read"), ("t1", "reveal")], 2)
    assert transport.requests == [[("t1", ["read", "reveal"])]]


async def test_calls_that_ask_while_one_is_in_flight_travel_together_when_it_returns():
    transport, release = Transport(), asyncio.Event()
    transport.hold = release
    coalescer = Coalescer(transport.send, bound_s=10.0)  # a bound that never fires here
    first = asyncio.create_task(coalescer.ask("t0", ["a"], 5.0))
    await settle()
    others = [asyncio.create_task(coalescer.ask(f"t{i}", [f"x{i}", f"y{i}"], 5.0)) for i in range(1, 6)]
    await settle()
    assert len(transport.requests) == 1  # they wait for the channel
    release.set()
    assert await first == ([("t0", "a")], 1)
    results = await asyncio.gather(*others)
    assert results == [([(f"t{i}", f"x{i}"), (f"t{i}", f"y{i}")], 10) for i in range(1, 6)]
    assert transport.requests[1] == [(f"t{i}", [f"x{i}", f"y{i}"]) for i in range(1, 6)]
    assert len(transport.requests) == 2


async def test_the_bound_sends_waiting_calls_even_while_the_channel_is_busy():
    transport, coalescer, never, stuck = await one_in_flight(bound_s=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await coalescer.ask("t1", ["b"], 5.0) == ([("t1", "b")], 1)
    assert loop.time() - started < 2.0  # the bound (20 ms), not the in-flight call, released it
    never.set()
    await stuck


async def test_a_full_request_goes_at_once():
    transport, coalescer, release, first = await one_in_flight(bound_s=10.0, max_items=4)
    waiting = [asyncio.create_task(coalescer.ask(f"t{i}", ["p", "q"], 5.0)) for i in range(1, 4)]
    await settle()
    # 4 items filled a request: it went while the first was still in flight (and t3 right after it returned)
    assert not first.done() and [token for token, _ in transport.requests[1]] == ["t1", "t2"]
    release.set()
    await first
    await asyncio.gather(*waiting)
    assert [[token for token, _ in r] for r in transport.requests] == [["t0"], ["t1", "t2"], ["t3"]]


async def test_each_call_keeps_its_deadline_and_a_call_that_left_is_not_sent():
    transport, coalescer, release, first = await one_in_flight(bound_s=10.0)
    with pytest.raises(AuthzUnavailable) as refused:
        await coalescer.ask("late", ["b"], 0.02)
    assert refused.value.message == TIMED_OUT and refused.value.code.name == "UNAVAILABLE"
    patient = asyncio.create_task(coalescer.ask("t2", ["c"], 5.0))
    await settle()
    release.set()
    await first
    assert await patient == ([("t2", "c")], 1)
    assert transport.requests[1] == [("t2", ["c"])]  # the call that left is not in it


async def test_a_failed_request_refuses_every_call_in_it_each_with_its_own_error():
    transport, coalescer, release, first = await one_in_flight(bound_s=10.0)
    waiting = [asyncio.create_task(coalescer.ask(f"t{i}", ["b"], 5.0)) for i in range(1, 4)]
    await settle()
    transport.fail = AuthzUnavailable("authorization service did not answer (UNAVAILABLE); the call is refused")
    release.set()
    with pytest.raises(AuthzUnavailable):
        await first
    errors = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(e, AuthzUnavailable) and "UNAVAILABLE" in e.message for e in errors)
    assert len({id(e) for e in errors}) == 3  # an error's metadata (its call's request id) is its call's own


async def test_an_answer_that_is_no_decision_refuses_them_all():
    transport, coalescer, release, first = await one_in_flight(bound_s=10.0)
    waiting = asyncio.create_task(coalescer.ask("t1", ["b"], 5.0))
    await settle()
    transport.fail = ValueError("not a decision")
    release.set()
    with pytest.raises(ValueError):
        await first  # the caller's transport maps its own errors; the coalescer passes them through
    with pytest.raises(AuthzUnavailable) as refused:
        await waiting
    assert refused.value.message == UNREADABLE


async def test_with_a_bound_of_zero_every_call_consults_on_its_own():
    transport, coalescer, release, first = await one_in_flight(bound_s=0)
    assert await coalescer.ask("t1", ["b"], 5.0) == ([("t1", "b")], 1)
    release.set()
    await first
    assert transport.requests == [[("t0", ["a"])], [("t1", ["b"])]]


async def test_a_shared_request_runs_in_the_context_of_its_first_call():
    transport, release = Transport(), asyncio.Event()
    transport.hold = release
    coalescer = Coalescer(transport.send, bound_s=10.0)

    async def ask_as(name: str, token: str):
        CALLER.set(name)
        return await coalescer.ask(token, ["a"], 5.0)
    first = asyncio.create_task(ask_as("first", "t0"))
    await settle()
    second = asyncio.create_task(ask_as("second", "t1"))
    await settle()
    third = asyncio.create_task(ask_as("third", "t2"))
    await settle()
    release.set()
    await asyncio.gather(first, second, third)
    assert transport.contexts == ["first", "second"]  # the shared request carries its first call's trace
