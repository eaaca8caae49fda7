"""The relay's two peers, driven from the test over the real protocol: a minimal Service Connector (attach,
answer dials by connecting to the target, pump bytes) and an engineer's tunnel (one stream, bytes in and out).
rsctl's own connector and tunnel are tested end to end; these keep the relay's tests independent of them."""
from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field

import grpc

from remotesupport.connections.v1 import relay_pb2 as rp
from remotesupport.connections.v1 import relay_pb2_grpc


async def send(call, message) -> None:
    """Write `message`; if the relay has answered the call already, do nothing (its status comes from read())."""
    try:
        await call.write(message)
    except (asyncio.InvalidStateError, grpc.RpcError):
        pass


@dataclass
class TestConnector:
    """Attaches with `content` and connects every dial to its target (or refuses, with `refuse=True`)."""

    __test__ = False  # not a test class

    channel: grpc.aio.Channel
    content: bytes
    instance_id: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    refuse: bool = False
    dials: list[rp.DialRequest] = field(default_factory=list)
    detached: rp.ConnectorDetached | None = None
    _call: object = None
    _task: asyncio.Task | None = None
    _sessions: set = field(default_factory=set)

    async def attach(self) -> rp.ConnectorAttached:
        """Attach; raises the relay's refusal as grpc.RpcError."""
        stub = relay_pb2_grpc.RelayServiceStub(self.channel)
        self._call = stub.AttachConnector()
        await send(self._call, rp.AttachConnectorRequest(hello=rp.ConnectorHello(
            connector_file=self.content, instance_id=self.instance_id)))
        first = await self._call.read()
        if first is grpc.aio.EOF:  # a refusal raises from read(); EOF is an OK end without an answer
            raise AssertionError("the attach stream ended without an answer")
        assert first.WhichOneof("kind") == "attached", first
        self._task = asyncio.create_task(self._serve(stub))
        return first.attached

    async def _serve(self, stub) -> None:
        while True:
            message = await self._call.read()
            if message is grpc.aio.EOF:
                return
            if message.WhichOneof("kind") == "detached":
                self.detached = message.detached
                return
            self.dials.append(message.dial)
            task = asyncio.create_task(self._session(stub, message.dial))
            self._sessions.add(task)
            task.add_done_callback(self._sessions.discard)

    async def _session(self, stub, dial: rp.DialRequest) -> None:
        call = stub.AcceptTunnel()
        if self.refuse:
            await call.write(rp.AcceptTunnelRequest(start=rp.AcceptTunnelStart(
                session=dial.session, dial_key=dial.dial_key, connected=False, problem="refused by the test")))
            await call.done_writing()
            with contextlib.suppress(grpc.RpcError):
                await call
            return
        host, port = dial.target.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        await call.write(rp.AcceptTunnelRequest(start=rp.AcceptTunnelStart(
            session=dial.session, dial_key=dial.dial_key, connected=True)))
        await pump(call, reader, writer, rp.AcceptTunnelRequest)

    async def wait_detached(self, timeout: float = 5.0) -> rp.ConnectorDetached | None:
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.detached

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        for task in (self._task, *self._sessions):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def pump(call, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request_type) -> None:
    """TCP <-> one relay stream (either side's), with half-closes, until both directions are over."""
    async def up() -> None:
        while data := await reader.read(65536):
            await call.write(request_type(data=data))
        await call.write(request_type(close_write=True))
        await call.done_writing()

    async def down() -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            kind = message.WhichOneof("kind")
            if kind == "data":
                writer.write(message.data)
                await writer.drain()
            elif kind == "close_write" and writer.can_write_eof():
                writer.write_eof()

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        writer.close()


class Tunnel:
    """One engineer's OpenTunnel stream, used directly (no TCP on the engineer's side)."""

    def __init__(self, channel: grpc.aio.Channel, token: str, connection: str, incident: str = "") -> None:
        self.call = relay_pb2_grpc.RelayServiceStub(channel).OpenTunnel(
            metadata=(("authorization", f"Bearer {token}"),))
        self.start = rp.OpenTunnelStart(connection=connection, incident=incident)
        self.rest = bytearray()

    async def open(self) -> rp.TunnelAdmitted:
        """Send the start; the admission, or the refusal raised as grpc.RpcError."""
        await send(self.call, rp.OpenTunnelRequest(start=self.start))
        first = await self.call.read()
        if first is grpc.aio.EOF:  # a refusal raises from read()
            raise AssertionError("the tunnel ended without an answer")
        assert first.WhichOneof("kind") == "admitted", first
        return first.admitted

    async def send(self, data: bytes) -> None:
        await self.call.write(rp.OpenTunnelRequest(data=data))

    async def receive(self, size: int, timeout: float = 10.0) -> bytes:
        """Exactly `size` bytes from the target (fewer only if the stream ends)."""
        got = bytearray()
        while len(got) < size:
            message = await asyncio.wait_for(self.call.read(), timeout)
            if message is grpc.aio.EOF:
                break
            if message.WhichOneof("kind") == "data":
                got += message.data
        return bytes(got)

    async def status(self, timeout: float = 10.0) -> grpc.StatusCode:
        """How the stream ended: reads what is left (grpc gives the status after the last message), then the
        code; the data read on the way is in `rest`."""
        async def end() -> grpc.StatusCode:
            with contextlib.suppress(grpc.RpcError):
                while (message := await self.call.read()) is not grpc.aio.EOF:
                    if message.WhichOneof("kind") == "data":
                        self.rest += message.data
            return await self.call.code()
        return await asyncio.wait_for(end(), timeout)

    async def close_write(self) -> None:
        await self.call.write(rp.OpenTunnelRequest(close_write=True))
        await self.call.done_writing()
