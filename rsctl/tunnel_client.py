"""The engineer's side of the relay (`rsctl tunnel WINDOW`): a listener on the engineer's own machine
(loopback unless asked otherwise); each TCP connection it accepts becomes one OpenTunnel stream to the relay,
carried with the engineer's bearer token. The relay admits it (the window is open, the engineer processes an
in-process incident of the system, the customer's connector is attached) or refuses it; after admission it
may cut it at any time, and the TCP connection is closed at once.

Per relay status: any error before `admitted` is a refusal (printed as "refused: CODE REASON: message"; that TCP
connection is closed, the listener keeps serving); an error after it is a cut ("session S ended: REASON:
message"); OK after admission is a normal end.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import uuid
from dataclasses import dataclass, field

import grpc

from remotesupport.connections.v1 import relay_pb2, relay_pb2_grpc
from rsctl.client import Tls
from rsctl.errors import FAILURE, OK, usage
from rsctl.tunnel_pump import (CALL_FAILURES, Lines, StreamEnd, close_writer, end_of, open_stream, pump,
                               relay_channel, stop_on_signals)

ADMISSION_TIMEOUT_S = 30.0
DEFAULT_LISTEN = "127.0.0.1:0"


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_listen(text: str, allow_any: bool) -> tuple[str, int]:
    """(host, port) of --listen (HOST:PORT or PORT); a host that is not loopback needs --listen-any."""
    host, sep, port = text.strip().rpartition(":")
    host = (host if sep else "127.0.0.1").removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise usage(f"--listen {text!r} is not HOST:PORT (e.g. 127.0.0.1:2222, or 127.0.0.1:0 for any free port)")
    if host == "localhost":
        host = "127.0.0.1"
    if not allow_any and not _is_loopback(host):
        raise usage(f"--listen {text!r} is not a loopback address: anyone who reaches it would use your session; "
                    "add --listen-any to mean it")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Tunnel:
    """One `rsctl tunnel`: the window, the relay, the token, the listener; `once` serves one connection."""

    connection: str
    incident: str
    relay: str
    token: str = field(repr=False)
    lines: Lines = field(repr=False)
    tls: Tls = field(default_factory=Tls)
    listen: tuple[str, int] = ("127.0.0.1", 0)
    once: bool = False
    admission_timeout: float = ADMISSION_TIMEOUT_S
    active: set = field(default_factory=set, init=False, repr=False)
    addresses: list[str] = field(default_factory=list, init=False)
    _result: int = field(default=FAILURE, init=False)

    async def serve(self, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> int:
        """Listen and carry connections until `stop` (SIGINT/SIGTERM in the main thread): 0. With `once`, after
        one connection: 0 when it was admitted and ended normally, else the exit code of how it ended."""
        stop = stop or asyncio.Event()
        channel = relay_channel(self.relay, self.tls)
        stub = relay_pb2_grpc.RelayServiceStub(channel)
        server = await asyncio.start_server(lambda r, w: self._accepted(stub, r, w, server, stop), *self.listen)
        self.addresses = [host_port(*sock.getsockname()[:2]) for sock in server.sockets]
        self._announce()
        if ready is not None:
            ready.set()
        try:
            with stop_on_signals(stop):
                await stop.wait()
        finally:
            server.close()
            for task in set(self.active):
                task.cancel()
            await asyncio.gather(*self.active, return_exceptions=True)
            await channel.close()
        return self._result if self.once else OK

    def _announce(self) -> None:
        where = ", ".join(self.addresses)
        port = self.addresses[0].rsplit(":", 1)[1]
        host = self.addresses[0].rsplit(":", 1)[0]
        self.lines.say(f"listening on {where} for {self.connection}; point your client at it")
        self.lines.say(f"  e.g. ssh -p {port} <user>@{host.strip('[]')}, http://{host}:{port}/ in a browser, "
                       f"or SAP GUI with application server {host.strip('[]')} and the port {port}")

    def _accepted(self, stub, reader, writer, server, stop: asyncio.Event) -> None:
        if self.once:
            if self.active or stop.is_set():  # one connection only
                writer.close()
                return
            server.close()  # listen no more
        task = asyncio.create_task(self._carry(stub, reader, writer))
        self.active.add(task)
        task.add_done_callback(self.active.discard)
        if self.once:
            task.add_done_callback(lambda _: stop.set())

    async def _carry(self, stub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One TCP connection: admission, then the pump; its outcome is kept for --once."""
        metadata = (("authorization", f"Bearer {self.token}"), ("x-request-id", f"rsctl-{uuid.uuid4().hex[:20]}"))
        call = open_stream(stub.OpenTunnel, metadata)
        try:
            admitted = await self._admission(call)
            if admitted is None:
                return
            self.lines.say(f"session {admitted.session} admitted to {admitted.target}")
            end = await pump(reader, writer, call, relay_pb2.OpenTunnelRequest)
            if end.ok:
                self.lines.say(f"session {admitted.session} closed")
                self._result = OK
            else:
                self.lines.problem(f"session {admitted.session} ended: {end.reason or end.code.name}: "
                                   f"{end.message}")
                self._result = end.exit_code
        finally:
            call.cancel()
            await close_writer(writer)

    async def _admission(self, call) -> relay_pb2.TunnelAdmitted | None:
        """Send the start and wait for `admitted`; None (and a printed refusal) when the relay refuses."""
        start = relay_pb2.OpenTunnelStart(connection=self.connection, incident=self.incident)
        try:
            with contextlib.suppress(*CALL_FAILURES):  # the call ended: read() says how
                await call.write(relay_pb2.OpenTunnelRequest(start=start))
            first = await asyncio.wait_for(call.read(), self.admission_timeout)
        except grpc.aio.AioRpcError as err:
            return self._refused(await end_of(call, err))
        except asyncio.TimeoutError:
            return self._refused(StreamEnd(grpc.StatusCode.DEADLINE_EXCEEDED,
                                           message=f"the relay did not admit the session within "
                                                   f"{self.admission_timeout:g} s"))
        if first is grpc.aio.EOF or first.WhichOneof("kind") != "admitted":
            return self._refused(StreamEnd(grpc.StatusCode.UNKNOWN,
                                           message="the relay did not answer with an admission"))
        return first.admitted

    def _refused(self, end: StreamEnd) -> None:
        self.lines.problem(f"refused: {end.describe()}")
        self._result = end.exit_code if end.exit_code != OK else FAILURE
        return None
