"""What the tests of rsctl's relay clients share: connector files signed with a fresh key, rsctl run as a
process, small TCP servers, and a fake RelayService (a grpc.aio servicer
that implements the three streams simply, pairing one OpenTunnel with one AcceptTunnel). The real relay's
tests are elsewhere; this fake checks the clients against the contract, nothing more."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from remotesupport.connections.v1 import relay_pb2, relay_pb2_grpc
from services.connections.connector_file import ConnectorSigner, new_ticket

UTC = dt.timezone.utc
CONNECTION = "customers/1234/systems/100/connections/w1"
SYSTEM = "customers/1234/systems/100"
ATTACH_KEY = "attach-key-must-never-be-printed-0123456789"
# the relay accepts the connectors' keepalive pings (every 2 s, also without calls)
SERVER_OPTIONS = [("grpc.keepalive_permit_without_calls", 1),
                  ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000), ("grpc.http2.max_ping_strikes", 0)]


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class Files:
    """Connector files signed by one fresh key, written under `folder`."""

    folder: Path
    signer: ConnectorSigner = field(default_factory=lambda: ConnectorSigner(Ed25519PrivateKey.generate()))

    def ticket(self, *, target="127.0.0.1:1", relays=(), connection=CONNECTION, code="SSH",
               not_before=None, not_after=None):
        start = not_before or now() - dt.timedelta(minutes=5)
        end = not_after or now() + dt.timedelta(hours=1)
        ticket = new_ticket(connection, SYSTEM, f"connectionTypes/{code}", "", start, end, start)
        ticket.relay_addresses.extend(relays)
        ticket.attach_key = ATTACH_KEY
        ticket.target = target
        return ticket

    def write(self, content: bytes, name="stfk.oez", public_key: str | None = None) -> Path:
        """The file, with the signer's public key beside it as <name>.pub (or `public_key`)."""
        path = self.folder / name
        path.write_bytes(content)
        path.with_name(name + ".pub").write_text(public_key if public_key is not None else self.signer.public_key_pem)
        return path

    def file(self, name="stfk.oez", **ticket_fields) -> Path:
        return self.write(self.signer.issue(self.ticket(**ticket_fields)), name)


# --- rsctl as a process -----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """`python -m rsctl ARGV` as its own process (its own event loop and signals, as for a user), with only
    `environ` of RSCTL_*; its stdout and stderr are collected while it runs. Every run still going when its
    test ends is killed by `kill_leftovers()`."""

    running: list["Cli"] = []

    def __init__(self, argv: list[str], environ: dict[str, str]) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSCTL_")} | environ
        self._process = asyncio.create_task(asyncio.create_subprocess_exec(
            sys.executable, "-m", "rsctl", *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT))
        self._readers: list[asyncio.Task] = []
        Cli.running.append(self)

    async def process(self) -> asyncio.subprocess.Process:
        process = await self._process
        if not self._readers:
            self._readers = [asyncio.create_task(self._collect(process.stdout, self.out)),
                             asyncio.create_task(self._collect(process.stderr, self.err))]
        return process

    @staticmethod
    async def _collect(stream: asyncio.StreamReader, into: io.StringIO) -> None:
        while line := await stream.readline():
            into.write(line.decode(errors="replace"))

    async def line(self, text: str, timeout: float = 10.0) -> str:
        """The first stdout or stderr line containing `text`, waiting for it."""
        process = await self.process()
        for _ in range(int(timeout / 0.02)):
            for line in self.text.splitlines():
                if text in line:
                    return line
            if process.returncode is not None and all(r.done() for r in self._readers):
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"no line with {text!r}; stdout={self.out.getvalue()!r} stderr={self.err.getvalue()!r}")

    async def exit_code(self, timeout: float = 15.0) -> int:
        process = await self.process()
        code = await asyncio.wait_for(process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def signal(self, number: int) -> None:
        (await self.process()).send_signal(number)

    @property
    def text(self) -> str:
        return self.out.getvalue() + self.err.getvalue()


async def kill_leftovers() -> None:
    """Kill the runs a test left running (a failed test), by their own process handles."""
    while Cli.running:
        cli = Cli.running.pop()
        process = await cli.process()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.gather(*cli._readers, return_exceptions=True)


# --- TCP servers ------------------------------------------------------------------------------------------


class CountingServer:
    """A TCP server that counts the connections it accepts and closes them."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> "CountingServer":
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    def _accept(self, reader, writer) -> None:
        self.accepted += 1
        writer.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        self.server.close()


class EchoServer(CountingServer):
    """Echoes what it receives; at the client's EOF it sends TRAILER and closes (so a test sees close_write
    travel both ways)."""

    TRAILER = b"<echo saw EOF>"

    def _accept(self, reader, writer) -> None:
        self.accepted += 1
        asyncio.ensure_future(self._echo(reader, writer))

    async def _echo(self, reader, writer) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.write(self.TRAILER)
        await writer.drain()
        writer.close()


async def until(condition, timeout: float = 10.0) -> None:
    """Wait until `condition()` holds."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not come true in time")


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the fake relay ---------------------------------------------------------------------------------------


def status(code: grpc.StatusCode, reason: str, message: str) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="remotesupport"))
    return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=message,
                                                  details=[detail]))


@dataclass
class Accepted:
    """The connector's side of one session, as the fake relay holds it."""

    start: relay_pb2.AcceptTunnelStart
    context: grpc.aio.ServicerContext
    done: asyncio.Event = field(default_factory=asyncio.Event)


class FakeRelay(relay_pb2_grpc.RelayServiceServicer):
    """The three streams, simply. `attach_script` says what each attach attempt gets, in turn (the last one
    repeats): "attach", "attach-then-end" (OK without detaching), or a (code, reason, message) refusal.
    `refuse_tunnels` (code, reason, message) refuses every OpenTunnel; `cut_after` (bytes, code, reason, message)
    cuts a session once that many bytes came from the engineer."""

    def __init__(self, signer: ConnectorSigner) -> None:
        self.signer = signer
        self.attach_script: list = ["attach"]
        self.refuse_tunnels: tuple | None = None
        self.cut_after: tuple | None = None
        self.hold_attach: asyncio.Event | None = None  # when set: attach attempts wait for it
        self.hellos: list[relay_pb2.ConnectorHello] = []
        self.tunnel_metadata: list[dict[str, str]] = []
        self.accept_starts: list[relay_pb2.AcceptTunnelStart] = []
        self.attached: list[asyncio.Queue] = []
        self.target = ""
        self._pending: dict[str, asyncio.Future] = {}
        self._numbers = itertools.count(1)
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> "FakeRelay":
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        relay_pb2_grpc.add_RelayServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.server.stop(None)

    # --- AttachConnector
    async def AttachConnector(self, request_iterator, context):
        hello = (await context.read()).hello
        self.hellos.append(hello)
        action = self.attach_script[min(len(self.hellos), len(self.attach_script)) - 1]
        if self.hold_attach is not None:
            await self.hold_attach.wait()
        if isinstance(action, tuple):
            await context.abort_with_status(status(*action))
        ticket = self.signer.open(hello.connector_file)
        self.target = ticket.target
        await context.write(relay_pb2.AttachConnectorResponse(attached=relay_pb2.ConnectorAttached(
            connection=ticket.connection, relay="fake-relay", not_after=ticket.not_after)))
        if action == "attach-then-end":
            return
        queue: asyncio.Queue = asyncio.Queue()
        self.attached.append(queue)
        try:
            while (message := await queue.get()) is not None:
                await context.write(message)
                if message.WhichOneof("kind") == "detached":
                    return
        finally:
            self.attached.remove(queue)

    async def detach(self, message="the window ended at its end time", final=True) -> None:
        for queue in list(self.attached):
            await queue.put(relay_pb2.AttachConnectorResponse(detached=relay_pb2.ConnectorDetached(
                reason="WINDOW_NOT_OPEN", message=message, final=final)))

    async def dial(self, target: str) -> str:
        """Ask the attached connector to dial `target`; returns the session's dial key."""
        number = next(self._numbers)
        key = f"dial-key-{number}"
        self._pending[key] = asyncio.get_running_loop().create_future()
        await self.attached[-1].put(relay_pb2.AttachConnectorResponse(dial=relay_pb2.DialRequest(
            session=f"{SYSTEM}/sessions/s{number}", target=target, dial_key=key)))
        return key

    async def accepted(self, key: str, timeout: float = 15.0) -> Accepted:
        return await asyncio.wait_for(asyncio.shield(self._pending[key]), timeout)

    # --- AcceptTunnel
    async def AcceptTunnel(self, request_iterator, context):
        start = (await context.read()).start
        self.accept_starts.append(start)
        accepted = Accepted(start, context)
        future = self._pending.get(start.dial_key)
        if future is None or future.done():
            await context.abort_with_status(status(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED",
                                                   "no such dial"))
        future.set_result(accepted)
        if start.connected:
            await accepted.done.wait()

    # --- OpenTunnel
    async def OpenTunnel(self, request_iterator, context):
        self.tunnel_metadata.append({k: v for k, v in context.invocation_metadata()})
        start = (await context.read()).start
        if self.refuse_tunnels:
            await context.abort_with_status(status(*self.refuse_tunnels))
        if not self.attached or start.connection != CONNECTION:
            await context.abort_with_status(status(grpc.StatusCode.FAILED_PRECONDITION, "CONNECTOR_NOT_ATTACHED",
                                                   "the customer's connector is not attached"))
        key = await self.dial(self.target)
        accepted = await self.accepted(key)
        if not accepted.start.connected:
            await context.abort_with_status(status(grpc.StatusCode.FAILED_PRECONDITION, "TARGET_UNREACHABLE",
                                                   f"the connector could not connect: {accepted.start.problem}"))
        await context.write(relay_pb2.OpenTunnelResponse(admitted=relay_pb2.TunnelAdmitted(
            session=accepted.start.session, target=self.target)))
        directions = [asyncio.ensure_future(self._engineer_to_connector(context, accepted.context)),
                      asyncio.ensure_future(self._connector_to_engineer(accepted.context, context))]
        try:
            for finished in asyncio.as_completed(directions):
                await finished  # a cut (an abort) ends the whole session at once
        finally:
            for direction in directions:
                direction.cancel()
            accepted.done.set()

    async def _engineer_to_connector(self, engineer, connector) -> None:
        carried = 0
        while (message := await engineer.read()) is not grpc.aio.EOF:
            if message.WhichOneof("kind") == "data":
                carried += len(message.data)
                if self.cut_after and carried >= self.cut_after[0]:
                    await engineer.abort_with_status(status(*self.cut_after[1:]))
                await connector.write(relay_pb2.AcceptTunnelResponse(data=message.data))
            elif message.WhichOneof("kind") == "close_write":
                await connector.write(relay_pb2.AcceptTunnelResponse(close_write=True))

    @staticmethod
    async def _connector_to_engineer(connector, engineer) -> None:
        while (message := await connector.read()) is not grpc.aio.EOF:
            if message.WhichOneof("kind") == "data":
                await engineer.write(relay_pb2.OpenTunnelResponse(data=message.data))
            elif message.WhichOneof("kind") == "close_write":
                await engineer.write(relay_pb2.OpenTunnelResponse(close_write=True))


# --- the fixtures both test modules use (imported by name into each) ------------------------------------------


@pytest.fixture(autouse=True)
async def no_run_left_behind():
    """Every rsctl process a test started is gone after it."""
    yield
    await kill_leftovers()


@pytest.fixture
def files(tmp_path):
    return Files(tmp_path)
