"""services.kit.eventloop: the services' event loop is uvloop unless RS_EVENT_LOOP=asyncio; anything else stops
the process before it starts; run() has asyncio.run's semantics on either loop."""
from __future__ import annotations

import asyncio
import inspect

import pytest
import uvloop

from services.kit import eventloop

VARIABLE = "RS_EVENT_LOOP"


async def answer(value):
    await asyncio.sleep(0)
    return value, asyncio.get_running_loop()


async def fail():
    await asyncio.sleep(0)
    raise LookupError("raised inside the loop")


def test_the_loop_is_uvloop_when_nothing_is_set(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    assert eventloop.choice() == "uvloop"


@pytest.mark.parametrize("value, expected", [("uvloop", "uvloop"), ("asyncio", "asyncio"), ("ASYNCIO", "asyncio"),
                                             (" uvloop ", "uvloop"), ("", "uvloop"), ("  ", "uvloop")])
def test_each_named_loop_is_accepted_whatever_its_case_and_spacing(monkeypatch, value, expected):
    monkeypatch.setenv(VARIABLE, value)
    assert eventloop.choice() == expected


@pytest.mark.parametrize("value", ["trio", "tokio", "uv", "asyncio,uvloop", "0"])
def test_any_other_loop_stops_the_process_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(VARIABLE, value)
    with pytest.raises(SystemExit) as stopped:
        eventloop.choice()
    message = str(stopped.value.code)
    assert VARIABLE in message and repr(value.strip().lower()) in message
    assert "uvloop" in message and "asyncio" in message  # says what it accepts


def test_run_refuses_an_unknown_loop_before_running_anything(monkeypatch):
    monkeypatch.setenv(VARIABLE, "trio")
    coroutine = answer(1)
    try:
        with pytest.raises(SystemExit):
            eventloop.run(coroutine)
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED  # never started
    finally:
        coroutine.close()


def test_run_returns_the_result_on_uvloop_and_the_running_loop_is_a_uvloop_loop(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    value, loop = eventloop.run(answer({"n": 42}))
    assert value == {"n": 42}
    assert isinstance(loop, uvloop.Loop)
    assert loop.is_closed()  # asyncio.run's semantics: the loop is closed afterwards


def test_run_returns_the_result_on_the_standard_loop(monkeypatch):
    monkeypatch.setenv(VARIABLE, "asyncio")
    value, loop = eventloop.run(answer("forty-two"))
    assert value == "forty-two"
    assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.BaseEventLoop)
    assert loop.is_closed()


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_run_raises_what_the_coroutine_raises_on_either_loop(monkeypatch, choice):
    monkeypatch.setenv(VARIABLE, choice)
    with pytest.raises(LookupError, match="raised inside the loop"):
        eventloop.run(fail())


def test_running_on_uvloop_leaves_the_standard_policy_in_place(monkeypatch):
    """In-process tests run on pytest-asyncio's standard loop: a uvloop run must not change what new loops are."""
    monkeypatch.delenv(VARIABLE, raising=False)
    policy = asyncio.get_event_loop_policy()
    eventloop.run(answer(None))
    assert asyncio.get_event_loop_policy() is policy
    loop = asyncio.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
