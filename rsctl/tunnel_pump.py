"""What both clients of the relay share (`rsctl tunnel`, the engineer's side, and `rsctl connector run`, the
customer's): the grpc.aio channel to a relay, the pump that carries one TCP connection over one gRPC stream
(OpenTunnel or AcceptTunnel: the same `data` / `close_write` messages both ways), how a stream ended, and
progress lines written at once (these commands run for hours, often with stdout in a file)."""
from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import weakref
from dataclasses import dataclass
from typing import Callable

import grpc

from rsctl.client import Tls
from rsctl.errors import exit_code_for, status_details
from rsctl.output import Output, clean

CHUNK_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# a dead relay (or a cut network) is noticed within a few seconds, also on an idle attach stream
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
# a restarted relay is reached again within seconds (grpc's default backoff grows to 120 s)
RECONNECT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 5000)]


def relay_channel(address: str, tls: Tls) -> grpc.aio.Channel:
    """A channel to a relay: plaintext, or TLS with rsctl's TLS settings (--tls, --ca-file, --cert-file)."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *KEEPALIVE_OPTIONS, *RECONNECT_OPTIONS]
    if not tls.enabled:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.credentials(), options=options)


@dataclass(frozen=True)
class StreamEnd:
    """How a stream ended: OK, or the status the relay (or the transport, or this side) gave it."""

    code: grpc.StatusCode
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.code)

    def describe(self) -> str:
        """"CODE REASON: message" (the reason when the relay sent one), one printable line."""
        head = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        return clean(f"{head}: {self.message}" if self.message else head)

    @classmethod
    def of(cls, err: grpc.RpcError) -> "StreamEnd":
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = err.details() if hasattr(err, "details") else ""
        return cls(code or grpc.StatusCode.UNKNOWN, status_details(err).reason, message or "")


CALL_FAILURES = (grpc.aio.AioRpcError, asyncio.InvalidStateError)
# grpc.aio's status for a call one of whose writes failed because the peer had just ended it: it replaces the
# status the peer sent (a relay's refusal or cut, with its reason) if that came first, and is replaced by it
# if it comes later
CORE_INTERNAL = "Internal error from Core"
SETTLE_S = 1.0
_first_status: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _Trailers:
    """The trailing metadata of a call, shaped like an RpcError for rsctl.errors.status_details."""

    def __init__(self, metadata) -> None:
        self.metadata = metadata

    def trailing_metadata(self):
        return self.metadata


def _at_once(coroutine):
    """The result of a coroutine that finishes without waiting (a finished call's status), else None."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    return None


def _remember_first_status(call) -> None:
    code, message, trailers = _at_once(call.code()), _at_once(call.details()), _at_once(call.trailing_metadata())
    if code is not None:
        _first_status[call] = StreamEnd(code, status_details(_Trailers(trailers or ())).reason, message or "")


def open_stream(method, metadata) -> grpc.aio.StreamStreamCall:
    """Start a bidirectional stream, remembering the first status grpc.aio gives it (see end_of)."""
    call = method(metadata=metadata)
    call.add_done_callback(_remember_first_status)
    return call


def _is_core_internal(code, message) -> bool:
    return code == grpc.StatusCode.INTERNAL and message == CORE_INTERNAL


async def end_of(call, err: grpc.RpcError) -> StreamEnd:
    """How `call` (started with open_stream) ended, given the error it raised: the peer's own status even when
    a failed write of ours made grpc.aio report INTERNAL (the status it had first, or the one that arrives
    within SETTLE_S)."""
    end = StreamEnd.of(err)
    if not _is_core_internal(end.code, end.message):
        return end
    first = _first_status.get(call)
    if first is not None and not _is_core_internal(first.code, first.message):
        return first
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while loop.time() < deadline:
        await asyncio.sleep(0.02)
        code, message = await call.code(), await call.details()
        if not _is_core_internal(code, message):
            return StreamEnd(code, status_details(_Trailers(await call.trailing_metadata())).reason, message or "")
    return end


class Lines:
    """Progress lines on stdout and problems on stderr, each flushed at once."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def say(self, text: str) -> None:
        self._write(self.out.stdout, text)

    def problem(self, text: str) -> None:
        self._write(self.out.stderr, text)

    @staticmethod
    def _write(stream, text: str) -> None:
        print(clean(text), file=stream)
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


# --- the pump ------------------------------------------------------------------------------------------

_EOF_SENT, _CALL_ENDED, _LOCAL_FAILED = "eof sent", "call ended", "local connection failed"


async def _upstream(reader: asyncio.StreamReader, call, request_type: Callable) -> str:
    """TCP -> gRPC: data in chunks of at most 256 KiB (the relay refuses larger); at TCP EOF close_write, then the request side ends."""
    try:
        while True:
            try:
                chunk = await reader.read(CHUNK_BYTES)
            except OSError:
                return _LOCAL_FAILED
            if not chunk:
                break
            await call.write(request_type(data=chunk))
        await call.write(request_type(close_write=True))
        await call.done_writing()
        return _EOF_SENT
    except CALL_FAILURES:  # the call ended; the downstream side reports how
        return _CALL_ENDED


async def _downstream(call, writer: asyncio.StreamWriter) -> StreamEnd:
    """gRPC -> TCP: data written (waiting for the TCP side to take it), close_write as a TCP half-close,
    until the response stream ends; how it ended is the result."""
    eof_written = False
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                break
            kind = message.WhichOneof("kind")
            if kind == "data" and not eof_written:
                writer.write(message.data)
                await writer.drain()
            elif kind == "close_write" and not eof_written:
                eof_written = True
                if writer.can_write_eof():
                    writer.write_eof()
    except grpc.aio.AioRpcError as err:
        return await end_of(call, err)
    except OSError as exc:  # the local side went away: end the stream too
        call.cancel()
        return StreamEnd(grpc.StatusCode.CANCELLED, message=f"the local connection failed ({exc.strerror or exc})")
    return StreamEnd(await call.code(), message=await call.details() or "")


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, call, request_type: Callable) -> StreamEnd:
    """Carry one TCP connection over one started gRPC stream, both ways, unchanged, until the response stream
    ends (OK or not); then the TCP connection is closed at once. A failing local side cancels the call."""
    up = asyncio.create_task(_upstream(reader, call, request_type))
    down = asyncio.create_task(_downstream(call, writer))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if not down.done() and up.result() == _LOCAL_FAILED:
            call.cancel()
            down.cancel()
            return StreamEnd(grpc.StatusCode.CANCELLED, message="the local connection failed")
        return await down
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        call.cancel()  # a no-op when the call is over
        await close_writer(writer)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection; a peer that is already gone is no error."""
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event):
    """In the main thread, SIGINT and SIGTERM set `stop` (a clean end) instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        yield
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
