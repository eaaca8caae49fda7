"""`rsctl tunnel` and the connector's sessions through a fake relay (tests/unit/rsctl_relay_support.py): bytes
go through unchanged both ways, half-closes travel, the connector refuses a dial for another target without
connecting anywhere, and refusals and cuts reach the engineer as the relay's status."""
from __future__ import annotations

import asyncio
import io
import os
import re
import signal

import grpc
import pytest

from rsctl.client import Addresses
from rsctl.errors import CliError
from rsctl.output import Output
from rsctl.tunnel_client import Tunnel, parse_listen
from rsctl.tunnel_pump import CORE_INTERNAL, Lines, end_of, open_stream
from services.kit import certs
from tests.unit.rsctl_relay_support import files, no_run_left_behind  # noqa: F401 - fixtures
from tests.unit.rsctl_relay_support import (
    ATTACH_KEY, CONNECTION, SYSTEM, Cli, CountingServer, EchoServer, FakeRelay, free_port, status, until)

TOKEN = "rs_engineer_token_not_to_be_printed"
MEGABYTE = 1024 * 1024


@pytest.fixture
async def relay(files):
    fake = await FakeRelay(files.signer).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def echo():
    server = await EchoServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def other():
    server = await CountingServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def start_connector(files, relay):
    """Start `rsctl connector run` for a file whose target is the given address; detached at the end."""
    running: list[Cli] = []

    async def start(target: str) -> Cli:
        path = files.file(target=target, relays=[relay.address])
        cli = Cli(["connector", "run", str(path)], {"RSCTL_CONFIG_DIR": str(files.folder / "config")})
        running.append(cli)
        await cli.line("attached to relay")
        return cli

    yield start
    await relay.detach()
    for cli in running:
        assert await cli.exit_code() == 0, cli.text
        assert ATTACH_KEY not in cli.text


def tunnel_cli(files, relay, *args) -> Cli:
    """`rsctl tunnel WINDOW --once`, the gateway address pointed at nothing (the relay is not the gateway)."""
    return Cli(["tunnel", CONNECTION, "--once", "--address", "127.0.0.1:1", "--relay-address", relay.address,
                *args], {"RSCTL_TOKEN": TOKEN, "RSCTL_CONFIG_DIR": str(files.folder / "config")})


async def listening_port(cli: Cli) -> int:
    line = await cli.line("listening on")
    match = re.fullmatch(rf"listening on 127\.0\.0\.1:(\d+) for {CONNECTION}; point your client at it", line)
    assert match, line
    return int(match.group(1))


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, and read until EOF, both at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send():
        for offset in range(0, len(data), 100_000):
            writer.write(data[offset:offset + 100_000])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    received = await asyncio.wait_for(reader.read(-1), 20)
    await sender
    writer.close()
    return received


async def test_bytes_go_through_unchanged_both_ways(files, relay, echo, start_connector):
    connector = await start_connector(echo.address)
    cli = tunnel_cli(files, relay)
    port = await listening_port(cli)
    assert f"ssh -p {port} <user>@127.0.0.1" in cli.out.getvalue()
    data = os.urandom(MEGABYTE)
    received = await exchange(port, data)
    # the echo saw the engineer's EOF (close_write one way), wrote after it, and its close came back (the other)
    assert received == data + EchoServer.TRAILER
    assert await cli.exit_code() == 0, cli.text
    session = f"{SYSTEM}/sessions/s1"
    assert f"session {session} admitted to {echo.address}" in cli.out.getvalue()
    assert f"session {session} closed" in cli.out.getvalue()
    assert echo.accepted == 1
    sent = relay.tunnel_metadata[0]
    assert sent["authorization"] == f"Bearer {TOKEN}" and sent["x-request-id"].startswith("rsctl-")
    assert relay.accept_starts[0].connected and relay.accept_starts[0].dial_key == "dial-key-1"
    await connector.line(f"session {session} closed")
    assert TOKEN not in cli.text


async def test_many_sessions_run_at_once(files, relay, echo, start_connector):
    await start_connector(echo.address)
    stop, ready = asyncio.Event(), asyncio.Event()
    out, err = io.StringIO(), io.StringIO()
    tunnel = Tunnel(CONNECTION, "", relay.address, TOKEN, Lines(Output(out, err, False)))
    serving = asyncio.create_task(tunnel.serve(stop, ready))
    await ready.wait()
    port = int(tunnel.addresses[0].rsplit(":", 1)[1])
    payloads = [os.urandom(200_000 + n) for n in range(4)]
    results = await asyncio.gather(*(exchange(port, p) for p in payloads))
    assert results == [p + EchoServer.TRAILER for p in payloads]
    await until(lambda: out.getvalue().count(" closed\n") == 4)
    stop.set()
    assert await serving == 0
    assert echo.accepted == 4 and len(set(re.findall(r"sessions/s\d+ admitted", out.getvalue()))) == 4


async def test_a_dial_for_another_target_is_refused_without_connecting(relay, echo, other, start_connector):
    connector = await start_connector(echo.address)
    key = await relay.dial(other.address)
    accepted = await relay.accepted(key)
    assert accepted.start.connected is False and accepted.start.dial_key == key
    assert accepted.start.problem == f"the relay asked for {other.address}; this connector reaches only {echo.address}"
    await asyncio.sleep(0.3)
    assert other.accepted == 0 and echo.accepted == 0
    assert "refused: the relay asked for" in await connector.line("rsctl: warning: session")


async def test_an_unreachable_target_is_reported_to_the_engineer(files, relay, start_connector):
    closed = f"127.0.0.1:{free_port()}"
    await start_connector(closed)
    cli = tunnel_cli(files, relay)
    port = await listening_port(cli)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 15) == b""  # closed
    writer.close()
    assert await cli.exit_code() == 6
    assert (f"refused: FAILED_PRECONDITION TARGET_UNREACHABLE: the connector could not connect: connection refused "
            f"by {closed}") in cli.err.getvalue()
    assert relay.accept_starts[-1].connected is False
    assert relay.accept_starts[-1].problem == f"connection refused by {closed}"


async def test_a_refusal_closes_that_connection_and_the_listener_keeps_serving(relay):
    relay.refuse_tunnels = (grpc.StatusCode.PERMISSION_DENIED, "NO_SUPPORT_ASSIGNMENT",
                            "you process no in-process incident of the system")
    stop, ready = asyncio.Event(), asyncio.Event()
    out, err = io.StringIO(), io.StringIO()
    tunnel = Tunnel(CONNECTION, "customers/1234/incidents/7", relay.address, TOKEN, Lines(Output(out, err, False)))
    serving = asyncio.create_task(tunnel.serve(stop, ready))
    await ready.wait()
    host, port = tunnel.addresses[0].rsplit(":", 1)
    for _ in range(2):
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    await until(lambda: err.getvalue().count("\n") == 2)
    assert err.getvalue().splitlines() == [
        "refused: PERMISSION_DENIED NO_SUPPORT_ASSIGNMENT: you process no in-process incident of the system"] * 2
    assert not serving.done()
    stop.set()
    assert await serving == 0
    assert len(relay.tunnel_metadata) == 2


async def test_not_attached_exits_with_the_refusals_code(files, relay):
    cli = tunnel_cli(files, relay, "--incident", "7", "--customer", "1234")
    port = await listening_port(cli)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    assert await cli.exit_code() == 6
    assert ("refused: FAILED_PRECONDITION CONNECTOR_NOT_ATTACHED: the customer's connector is not attached"
            in cli.err.getvalue())


async def test_a_cut_closes_the_connection_at_once(files, relay, echo, start_connector):
    relay.cut_after = (100_000, grpc.StatusCode.PERMISSION_DENIED, "SESSION_ENDED", "the window was closed")
    await start_connector(echo.address)
    cli = tunnel_cli(files, relay)
    port = await listening_port(cli)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(os.urandom(300_000))  # no EOF: only the cut ends it
    await writer.drain()
    received = await asyncio.wait_for(reader.read(-1), 5)
    assert len(received) < 300_000
    writer.close()
    assert await cli.exit_code() == 4, cli.text
    assert f"session {SYSTEM}/sessions/s1 ended: SESSION_ENDED: the window was closed" in cli.err.getvalue()


async def test_stopping_ends_live_sessions_and_exits_0(relay, echo, start_connector):
    await start_connector(echo.address)
    stop, ready = asyncio.Event(), asyncio.Event()
    out, err = io.StringIO(), io.StringIO()
    tunnel = Tunnel(CONNECTION, "", relay.address, TOKEN, Lines(Output(out, err, False)))
    serving = asyncio.create_task(tunnel.serve(stop, ready))
    await ready.wait()
    reader, writer = await asyncio.open_connection(*tunnel.addresses[0].rsplit(":", 1))
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
    stop.set()
    assert await asyncio.wait_for(serving, 10) == 0
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_ctrl_c_stops_the_command_with_0(files, relay, echo, start_connector):
    await start_connector(echo.address)
    cli = Cli(["tunnel", CONNECTION, "--relay-address", relay.address],
              {"RSCTL_TOKEN": TOKEN, "RSCTL_CONFIG_DIR": str(files.folder / "config")})
    port = await listening_port(cli)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
    await cli.signal(signal.SIGINT)
    assert await cli.exit_code() == 0, cli.text
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_the_relay_is_reached_over_tls_with_rsctls_settings(files, tmp_path):
    ca, ca_key = certs.make_ca("test CA")
    leaf, key = certs.issue(ca, ca_key, "relay", dns=("localhost",))
    (tmp_path / "ca.pem").write_bytes(certs.cert_pem(ca))
    relay = FakeRelay(files.signer)
    relay.refuse_tunnels = (grpc.StatusCode.FAILED_PRECONDITION, "WINDOW_NOT_OPEN", "the window is closed")
    relay.server = grpc.aio.server()
    from remotesupport.connections.v1 import relay_pb2_grpc
    relay_pb2_grpc.add_RelayServiceServicer_to_server(relay, relay.server)
    port = relay.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(certs.key_pem(key), certs.cert_pem(leaf))]))
    await relay.server.start()
    try:
        cli = Cli(["tunnel", CONNECTION, "--once", "--relay-address", f"localhost:{port}", "--ca-file",
                   str(tmp_path / "ca.pem")], {"RSCTL_TOKEN": TOKEN, "RSCTL_CONFIG_DIR": str(tmp_path / "cfg")})
        listen = await listening_port(cli)
        reader, writer = await asyncio.open_connection("127.0.0.1", listen)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert await cli.exit_code() == 6
        assert "refused: FAILED_PRECONDITION WINDOW_NOT_OPEN: the window is closed" in cli.err.getvalue()
        assert relay.tunnel_metadata[0]["authorization"] == f"Bearer {TOKEN}"
    finally:
        await relay.server.stop(None)


async def test_it_needs_a_session_and_a_loopback_listener(files, relay):
    environ = {"RSCTL_CONFIG_DIR": str(files.folder / "config")}
    cli = Cli(["tunnel", CONNECTION, "--relay-address", relay.address], environ)
    assert await cli.exit_code() == 3 and "not logged in" in cli.err.getvalue()
    cli = Cli(["tunnel", CONNECTION, "--listen", "0.0.0.0:0"], {**environ, "RSCTL_TOKEN": TOKEN})
    assert await cli.exit_code() == 2 and "is not a loopback address" in cli.err.getvalue()
    cli = Cli(["tunnel", CONNECTION, "--json"], {**environ, "RSCTL_TOKEN": TOKEN})
    assert await cli.exit_code() == 2
    assert relay.tunnel_metadata == []


def test_listen_addresses():
    assert parse_listen("127.0.0.1:0", False) == ("127.0.0.1", 0)
    assert parse_listen("localhost:2222", False) == ("127.0.0.1", 2222)
    assert parse_listen("[::1]:2222", False) == ("::1", 2222)
    assert parse_listen("2222", False) == ("127.0.0.1", 2222)
    assert parse_listen("0.0.0.0:2222", True) == ("0.0.0.0", 2222)
    for bad in ("0.0.0.0:2222", "10.1.2.3:22", "example.com:22"):
        with pytest.raises(CliError, match="not a loopback address"):
            parse_listen(bad, False)
    for bad in ("127.0.0.1:x", "127.0.0.1:70000"):
        with pytest.raises(CliError, match="is not HOST:PORT"):
            parse_listen(bad, False)


def test_the_relay_address_is_its_own():
    assert Addresses.resolve({}, None, {}).relay == "127.0.0.1:50055"
    assert Addresses.resolve({}, "gateway:50051", {}).relay == "127.0.0.1:50055"
    assert Addresses.resolve({"RSCTL_ADDRESS": "gw:1", "RSCTL_RELAY_ADDRESS": "relay:2"}, None, {}).relay == "relay:2"
    assert Addresses.resolve({"RSCTL_RELAY_ADDRESS": "relay:2"}, None, {}, relay="flag:3").relay == "flag:3"


class _EndingCall:
    """A call as grpc.aio shows it after a failed write: INTERNAL first, the peer's status a moment later."""

    def __init__(self, real: grpc.aio.AioRpcError) -> None:
        self.real, self.calls = real, 0

    async def code(self):
        self.calls += 1
        return self.real.code() if self.calls > 3 else grpc.StatusCode.INTERNAL

    async def details(self):
        return self.real.details() if self.calls > 3 else CORE_INTERNAL

    async def trailing_metadata(self):
        return self.real.trailing_metadata()


async def test_a_failed_write_does_not_hide_the_relays_status():
    details = status(grpc.StatusCode.PERMISSION_DENIED, "SESSION_ENDED", "the engineer's assignment ended")
    real = grpc.aio.AioRpcError(grpc.StatusCode.PERMISSION_DENIED, grpc.aio.Metadata(),
                                grpc.aio.Metadata(*details.trailing_metadata), details.details)
    internal = grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), CORE_INTERNAL)
    end = await end_of(_EndingCall(real), internal)
    assert (end.code, end.reason, end.message) == (grpc.StatusCode.PERMISSION_DENIED, "SESSION_ENDED",
                                                   "the engineer's assignment ended")
    other = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone")
    assert (await end_of(_EndingCall(real), other)).code == grpc.StatusCode.UNAVAILABLE


class _OverwrittenCall(_EndingCall):
    """A call whose peer's status came first and was then overwritten by INTERNAL for good."""

    def __init__(self, real: grpc.aio.AioRpcError) -> None:
        super().__init__(real)
        self.calls = 100  # the peer's status, while the done callbacks run

    def add_done_callback(self, callback) -> None:
        callback(self)
        self.calls = 0  # then INTERNAL, forever

    async def code(self):
        return self.real.code() if self.calls > 3 else grpc.StatusCode.INTERNAL


async def test_the_first_status_of_a_stream_wins_over_a_later_internal():
    details = status(grpc.StatusCode.PERMISSION_DENIED, "SESSION_ENDED", "the window was closed")
    real = grpc.aio.AioRpcError(grpc.StatusCode.PERMISSION_DENIED, grpc.aio.Metadata(),
                                grpc.aio.Metadata(*details.trailing_metadata), details.details)
    call = open_stream(lambda metadata: _OverwrittenCall(real), ())
    internal = grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), CORE_INTERNAL)
    assert await call.code() == grpc.StatusCode.INTERNAL
    end = await end_of(call, internal)
    assert (end.code, end.reason, end.message) == (grpc.StatusCode.PERMISSION_DENIED, "SESSION_ENDED",
                                                   "the window was closed")
