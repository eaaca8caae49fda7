"""The customer's Service Connector (`rsctl connector run FILE`): it runs inside the customer's network, never
listens on a port, and dials out to every relay its file names, keeping one AttachConnector stream each. For
every `dial` a relay sends, it opens a TCP connection to its file's target - and to no other address - and
carries it over one AcceptTunnel stream. It stops at the window's end.

Per relay status (the relay's contract, protos/remotesupport/connections/v1/relay.proto):
- FAILED_PRECONDITION, PERMISSION_DENIED, INVALID_ARGUMENT or ALREADY_EXISTS (a copy of the file is attached)
  with one of FINAL_REASONS: final; the relay's message is printed and the connector exits (for all relays)
  with the code's exit code;
- any other status (UNAVAILABLE, a lost connection, ...), a stream that ends without `detached(final=true)`,
  or a `detached(final=false)`: reconnect with backoff (0.2 s doubling to 5 s, jittered);
- `detached(final=true)`: its message is printed and the connector exits 0.
The attach key and the file's content are never printed.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import secrets
import socket
import uuid
from dataclasses import dataclass, field
from typing import Callable

import grpc

from remotesupport.connections.v1 import relay_pb2, relay_pb2_grpc
from rsctl.client import Tls
from rsctl.connector_check import UTC, CheckedFile, iso
from rsctl.errors import OK, CliError
from rsctl.tunnel_pump import (CALL_FAILURES, Lines, StreamEnd, close_writer, end_of, open_stream, pump,
                               relay_channel, stop_on_signals)

FINAL_CODES = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
                         grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS})
FINAL_REASONS = frozenset({"CONNECTOR_FILE_INVALID", "CONNECTOR_FILE_EXPIRED", "CONNECTOR_FILE_NOT_YET_VALID",
                           "WINDOW_NOT_OPEN", "CONNECTOR_ALREADY_ATTACHED"})
DIAL_TIMEOUT_S = 10.0
BACKOFF_START_S, BACKOFF_MAX_S = 0.2, 5.0
RETRY_LINE_INTERVAL_S = 5.0
CLOCK_CHECK_S = 30.0  # the window timer re-reads the clock at least this often (a suspended machine)


def new_instance_id() -> str:
    """32 url-safe characters, made once per process."""
    return secrets.token_urlsafe(24)


def wall_clock() -> dt.datetime:
    return dt.datetime.now(UTC)


class Backoff:
    """0.2 s doubling to 5 s, each delay jittered to between half and all of it; reset after an attachment."""

    def __init__(self, start: float = BACKOFF_START_S, cap: float = BACKOFF_MAX_S,
                 rng: random.Random | None = None) -> None:
        self.start, self.cap, self.attempt = start, cap, 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        base = min(self.cap, self.start * 2 ** self.attempt)
        self.attempt += 1
        return base * (0.5 + self.rng.random() / 2)

    def reset(self) -> None:
        self.attempt = 0


class _WindowOver(Exception):
    """A relay detached the connector for good (`detached` with final=true)."""


def split_host_port(target: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; ValueError when it is neither."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{target!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


class ConnectionProblem(Exception):
    """The target could not be connected to; the text goes to the relay as the dial's `problem`."""


async def connect_target(target: str, timeout: float = DIAL_TIMEOUT_S):
    """(reader, writer) of a TCP connection to `target`, or ConnectionProblem saying why not (no secret)."""
    try:
        host, port = split_host_port(target)
    except ValueError:
        raise ConnectionProblem(f"the target {target!r} is not host:port") from None
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        raise ConnectionProblem(f"no answer from {target} within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise ConnectionProblem(f"connection refused by {target}") from None
    except socket.gaierror as exc:
        raise ConnectionProblem(f"cannot resolve {host}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ConnectionProblem(f"cannot connect to {target}: {exc.strerror or exc}") from None


def _request_id() -> tuple[tuple[str, str], ...]:
    return (("x-request-id", f"rsctl-{uuid.uuid4().hex[:20]}"),)


@dataclass
class Connector:
    """One connector process: the checked file, the relays it attaches to, and what it prints."""

    checked: CheckedFile
    relays: list[str]
    lines: Lines
    tls: Tls = field(default_factory=Tls)
    now: Callable[[], dt.datetime] = wall_clock
    instance_id: str = field(default_factory=new_instance_id)
    retry_line_interval: float = RETRY_LINE_INTERVAL_S
    sessions: set = field(default_factory=set, init=False)

    @property
    def target(self) -> str:
        return self.checked.ticket.target

    # --- the whole process ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Attach to every relay until the window ends (0), a relay detaches for good (0), a relay refuses the
        file for good (CliError), or `stop` is set (SIGINT/SIGTERM in the main thread: 0)."""
        stop = stop or asyncio.Event()
        ticket = self.checked.ticket
        self.lines.say(f"connector for {ticket.connection} ({ticket.connection_type.removeprefix('connectionTypes/')})"
                       f" until {iso(self._not_after())}: reaches {self.target} only; relays: {', '.join(self.relays)}")
        channels = {address: relay_channel(address, self.tls) for address in self.relays}
        tasks = {asyncio.create_task(self._keep_attached(a, c), name=f"attach {a}") for a, c in channels.items()}
        timer = asyncio.create_task(self._window_timer(), name="window timer")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        with stop_on_signals(stop):
            try:
                done, _ = await asyncio.wait(tasks | {timer, stopper}, return_when=asyncio.FIRST_COMPLETED)
                return self._outcome(done, timer, stopper)
            finally:
                await self._shut_down(tasks | {timer, stopper}, channels)

    def _outcome(self, done: set, timer: asyncio.Task, stopper: asyncio.Task) -> int:
        ended = [task.exception() for task in done if task not in (timer, stopper)]
        for exc in ended:
            if isinstance(exc, CliError):  # a relay refused the file for good
                raise exc
        for exc in ended:
            if not isinstance(exc, _WindowOver):
                raise exc or RuntimeError("an attach loop ended by itself")
        if not ended and timer in done:
            self.lines.say(f"the window ended at {iso(self._not_after())}; the connector stops")
        elif not ended:
            self.lines.say("stopped; the connector detaches from its relays")
        return OK

    async def _shut_down(self, tasks: set, channels: dict) -> None:
        pending = tasks | set(self.sessions)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for channel in channels.values():
            await channel.close()

    def _not_after(self) -> dt.datetime:
        return self.checked.ticket.not_after.ToDatetime(UTC)

    async def _window_timer(self) -> None:
        while (left := (self._not_after() - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(left, CLOCK_CHECK_S))

    # --- one relay ----------------------------------------------------------------------------------------
    async def _keep_attached(self, address: str, channel: grpc.aio.Channel) -> None:
        """Keep one attach stream to `address`; returns never, raises _WindowOver or the final CliError."""
        stub = relay_pb2_grpc.RelayServiceStub(channel)
        backoff = Backoff()
        last_line = None
        loop = asyncio.get_running_loop()
        while True:
            why = await self._attach_once(address, stub, backoff)
            delay = backoff.next()
            if last_line is None or loop.time() - last_line >= self.retry_line_interval:
                last_line = loop.time()
                self.lines.problem(f"relay {address}: {why}; reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _attach_once(self, address: str, stub, backoff: Backoff) -> str:
        """One attach stream, until it ends; returns why it ended (to reconnect), or raises."""
        call = open_stream(stub.AttachConnector, _request_id())
        hello = relay_pb2.ConnectorHello(connector_file=self.checked.content, instance_id=self.instance_id)
        try:
            with contextlib.suppress(asyncio.InvalidStateError):  # the call ended: read() says how
                await call.write(relay_pb2.AttachConnectorRequest(hello=hello))
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    return "the relay ended the attachment without detaching the connector"
                kind = message.WhichOneof("kind")
                if kind == "attached":
                    backoff.reset()
                    self.lines.say(f"attached to relay {address} for {message.attached.connection} until "
                                   f"{_ts(message.attached.not_after)}")
                elif kind == "dial":
                    self._start_session(stub, message.dial)
                elif kind == "detached":
                    return self._detached(address, message.detached)
        except grpc.aio.AioRpcError as err:
            return self._failed(address, await end_of(call, err))
        finally:
            call.cancel()

    def _detached(self, address: str, detached: relay_pb2.ConnectorDetached) -> str:
        text = f"{detached.message} ({detached.reason})" if detached.reason else detached.message
        if detached.final:
            self.lines.say(f"relay {address}: {text}; the connector stops")
            raise _WindowOver(text)
        return f"the relay detached the connector: {text}"

    @staticmethod
    def _failed(address: str, end: StreamEnd) -> str:
        if end.code in FINAL_CODES and end.reason in FINAL_REASONS:
            raise CliError(end.code.name, f"relay {address} refused the connector: {end.message}",
                           end.exit_code, [f"reason {end.reason}"])
        return end.describe()

    # --- one session --------------------------------------------------------------------------------------
    def _start_session(self, stub, dial: relay_pb2.DialRequest) -> None:
        task = asyncio.create_task(self._serve_dial(stub, dial), name=f"session {dial.session}")
        self.sessions.add(task)
        task.add_done_callback(self.sessions.discard)

    async def _serve_dial(self, stub, dial: relay_pb2.DialRequest) -> None:
        """Connect the session to the target (only the file's) and carry it; refuse anything else."""
        if dial.target != self.target:
            problem = f"the relay asked for {dial.target}; this connector reaches only {self.target}"
            self.lines.problem(f"rsctl: warning: session {dial.session}: refused: {problem}")
            await self._refuse(stub, dial, problem)
            return
        try:
            reader, writer = await connect_target(self.target)
        except ConnectionProblem as problem:
            self.lines.problem(f"session {dial.session}: {problem}")
            await self._refuse(stub, dial, str(problem))
            return
        call = open_stream(stub.AcceptTunnel, _request_id())
        start = relay_pb2.AcceptTunnelStart(session=dial.session, dial_key=dial.dial_key, connected=True)
        try:
            with contextlib.suppress(*CALL_FAILURES):  # the call ended: the pump reports how
                await call.write(relay_pb2.AcceptTunnelRequest(start=start))
            self.lines.say(f"session {dial.session}: connected to {self.target}")
            end = await pump(reader, writer, call, relay_pb2.AcceptTunnelRequest)
        finally:
            call.cancel()
            await close_writer(writer)
        if end.ok:
            self.lines.say(f"session {dial.session} closed")
        else:
            self.lines.say(f"session {dial.session} ended: {end.reason or end.code.name}: {end.message}")

    @staticmethod
    async def _refuse(stub, dial: relay_pb2.DialRequest, problem: str) -> None:
        """Answer a dial with connected=False and `problem`, end the request side, and wait for the relay."""
        call = open_stream(stub.AcceptTunnel, _request_id())
        start = relay_pb2.AcceptTunnelStart(session=dial.session, dial_key=dial.dial_key, connected=False,
                                            problem=problem)
        try:
            await call.write(relay_pb2.AcceptTunnelRequest(start=start))
            await call.done_writing()
            await asyncio.wait_for(call.code(), DIAL_TIMEOUT_S)
        except (*CALL_FAILURES, asyncio.TimeoutError):
            pass  # the relay learnt what it could; the session is not ours to carry
        finally:
            call.cancel()


def _ts(timestamp) -> str:
    return iso(timestamp.ToDatetime(UTC)) if timestamp.seconds or timestamp.nanos else "(no end given)"
