"""`rsctl connector run` (rsctl/connector_check.py, rsctl/connector_agent.py): the local refusals before any
dialing, the check agreeing with the service's own, the attach stream's statuses against a fake relay, the
window's end, and `connector get` writing the public key."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import random
import re
import signal
import stat

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from remotesupport.connections.v1 import connections_pb2, connections_pb2_grpc
from rsctl import connector_check
from services.kit import stfk
from services.kit.stfk import SIGNING_CONTEXT
from rsctl.connector_agent import Backoff, new_instance_id, split_host_port
from services.connections.connector_file import ConnectorInvalid, ConnectorSigner
from tests.unit.rsctl_relay_support import files, no_run_left_behind  # noqa: F401 - fixtures
from tests.unit.rsctl_relay_support import (
    ATTACH_KEY, CONNECTION, Cli, CountingServer, FakeRelay, Files, now, until)

STEP = dt.timedelta(minutes=10)


@pytest.fixture
async def counting():
    server = await CountingServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def relay(files):
    fake = await FakeRelay(files.signer).start()
    yield fake
    await fake.stop()


def connector(files, *args, environ=None) -> Cli:
    return Cli(["connector", "run", *map(str, args)], {"RSCTL_CONFIG_DIR": str(files.folder / "config"),
                                                       **(environ or {})})


def _lines(content: bytes) -> list[bytes]:
    return content.split(b"\n")


def _altered(files: Files) -> bytes:
    """A real file whose ticket was changed (another target) and re-encoded, the signature kept."""
    magic, body, signature, _ = _lines(files.signer.issue(files.ticket(target="127.0.0.1:22")))
    ticket = connections_pb2.ConnectorTicket.FromString(base64.b64decode(body))
    ticket.target = "10.0.0.1:3389"
    return b"\n".join([magic, base64.b64encode(ticket.SerializeToString(deterministic=True)), signature, b""])


def _forged(files: Files) -> bytes:
    """A ticket naming the pinned key's id, signed with another key."""
    ticket = files.ticket()
    ticket.key_id = files.signer.key_id
    body = ticket.SerializeToString(deterministic=True)
    signature = Ed25519PrivateKey.generate().sign(SIGNING_CONTEXT + body)
    return b"\n".join([b"STFK1", base64.b64encode(body), base64.b64encode(signature), b""])


def _of_another_key(files: Files) -> bytes:
    return ConnectorSigner(Ed25519PrivateKey.generate()).issue(files.ticket())


REFUSALS = {
    # name: (content maker, extra args, exit code, label, message part)
    "garbage": (lambda f: b"hello, world\n", [], 8, "CONNECTOR_FILE_INVALID",
                "this is not a service connector file (expected the STFK1 format)"),
    "damaged": (lambda f: b"STFK1\n!!!!\n" + base64.b64encode(b"x" * 64) + b"\n", [], 8, "CONNECTOR_FILE_INVALID",
                "the file is damaged"),
    "altered": (_altered, [], 8, "CONNECTOR_FILE_INVALID",
                "the signature does not match the pinned public key"),
    "forged": (_forged, [], 8, "CONNECTOR_FILE_INVALID",
               "the signature does not match the pinned public key"),
    "another key": (_of_another_key, [], 8, "CONNECTOR_FILE_INVALID",
                    "the signature does not match the pinned public key: the file was signed with key"),
    "expired": (lambda f: f.signer.issue(f.ticket(not_before=now() - 2 * STEP, not_after=now() - STEP)), [], 6,
                "CONNECTOR_FILE_EXPIRED", "the file expired at"),
    "not yet valid": (lambda f: f.signer.issue(f.ticket(not_before=now() + STEP, not_after=now() + 2 * STEP)), [],
                      6, "CONNECTOR_FILE_NOT_YET_VALID", "the file is not valid yet: valid from"),
    "other window": (lambda f: f.signer.issue(f.ticket()), ["--window", "systems/100/connections/w2"], 6,
                     "CONNECTOR_FILE_WRONG_WINDOW",
                     f"the file is for connection {CONNECTION}, not systems/100/connections/w2"),
    "no target": (lambda f: f.signer.issue(f.ticket(target="", code="GOTOASSIST")), [], 6, "FAILED_PRECONDITION",
                  "connection type GOTOASSIST has no network target"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
async def test_a_file_it_will_not_run_is_refused_before_any_dialing(files, counting, name):
    make, extra, code, label, message = REFUSALS[name]
    content = make(files)
    path = files.write(content)
    cli = connector(files, path, "--relay", counting.address, *extra)
    assert await cli.exit_code() == code, cli.text
    await asyncio.sleep(0.3)  # a connection attempt would have been accepted by now
    assert counting.accepted == 0
    assert cli.out.getvalue() == ""
    first = cli.err.getvalue().splitlines()[0]
    assert first.startswith(f"rsctl: {label}: ") and message in first, first
    assert ATTACH_KEY not in cli.text
    assert not [part for part in _lines(content)[1:] if len(part) > 8 and part.decode("latin-1") in cli.text]


async def test_another_key_names_both_keys(files, counting):
    other = ConnectorSigner(Ed25519PrivateKey.generate())
    cli = connector(files, files.write(other.issue(files.ticket())), "--relay", counting.address)
    assert await cli.exit_code() == 8
    assert other.key_id in cli.err.getvalue() and files.signer.key_id in cli.err.getvalue()


async def test_a_wrong_pinned_key_is_refused(files, counting, tmp_path):
    wrong = tmp_path / "wrong.pub"
    wrong.write_text(ConnectorSigner(Ed25519PrivateKey.generate()).public_key_pem)
    cli = connector(files, files.file(), "--public-key", wrong, "--relay", counting.address)
    assert await cli.exit_code() == 8
    assert "does not match the pinned public key" in cli.err.getvalue()
    assert counting.accepted == 0


async def test_without_a_public_key_it_refuses(files, counting):
    path = files.file()
    path.with_name(path.name + ".pub").unlink()
    cli = connector(files, path, "--relay", counting.address)
    assert await cli.exit_code() == 2
    assert cli.err.getvalue().startswith("rsctl: usage: no public key to verify the file with")
    assert counting.accepted == 0


async def test_a_public_key_that_is_not_one_is_a_file_error(files, counting):
    path = files.file()
    path.with_name(path.name + ".pub").write_text("not a key\n")
    cli = connector(files, path, "--relay", counting.address)
    assert await cli.exit_code() == 1
    assert "is not a PEM public key" in cli.err.getvalue() and counting.accepted == 0


async def test_a_file_without_relays_needs_relay(files):
    cli = connector(files, files.file(relays=()))
    assert await cli.exit_code() == 2
    assert "the file names no relay to dial; give --relay HOST:PORT" in cli.err.getvalue()


@pytest.mark.parametrize("window", [CONNECTION, "systems/100/connections/w1", "w1"])
def test_the_window_may_be_named_in_full_or_short(window):
    assert connector_check.window_matches(CONNECTION, window)
    assert not connector_check.window_matches(CONNECTION, "w11") and not connector_check.window_matches(
        CONNECTION, "customers/9/systems/100/connections/w1")


def _corpus(files: Files) -> list[bytes]:
    valid = files.signer.issue(files.ticket())
    magic, body, signature, _ = _lines(valid)
    out = [valid, valid.rstrip(b"\n"), _altered(files), _forged(files), _of_another_key(files)]
    for position in (0, 10, -1):
        raw = bytearray(base64.b64decode(body))
        raw[position] ^= 0x01
        out.append(b"\n".join([magic, base64.b64encode(bytes(raw)), signature, b""]))
    raw = bytearray(base64.b64decode(signature))
    raw[5] ^= 0x80
    out.append(b"\n".join([magic, body, base64.b64encode(bytes(raw)), b""]))
    out += [b"garbage", b"STFK1\n", b"STFK2\nAAAA\nAAAA\n", b"STFK1\nAAAA\nAAAA\n", b"STFK1\nAAAA\nAAAA\nAAAA\n",
            b"\x00" * 100, b"STFK1\n\n\n", b"x" * (16 * 1024 + 1)]
    return out


def test_the_local_check_accepts_exactly_what_the_service_accepts(files):
    key = load_pem_public_key(files.signer.public_key_pem.encode())
    for content in _corpus(files):
        try:
            expected = files.signer.open(content)
        except ConnectorInvalid:
            expected = None
        try:
            got = connector_check.open_signed(content, key).ticket
        except connector_check.Refused as refused:
            assert refused.exit_code == 8 and refused.label == "CONNECTOR_FILE_INVALID"
            got = None
        assert got == expected, content[:40]
    assert stfk.key_id_of(key) == files.signer.key_id


def test_a_checked_file_does_not_show_its_ticket(files):
    checked = connector_check.open_signed(files.signer.issue(files.ticket()),
                                          load_pem_public_key(files.signer.public_key_pem.encode()))
    assert ATTACH_KEY not in repr(checked) and files.signer.key_id in repr(checked)


# --- attached -------------------------------------------------------------------------------------------


async def test_it_stops_at_the_windows_end(files, counting):
    """A valid file dials (the counting server is no relay: it reconnects, with a line), and the local timer
    ends it at not_after."""
    path = files.file(not_after=now() + dt.timedelta(seconds=2.5))
    cli = connector(files, path, "--relay", counting.address)
    assert await cli.exit_code() == 0, cli.text
    assert counting.accepted >= 1
    assert re.search(r"the window ended at \S+Z; the connector stops", cli.out.getvalue())
    assert f"relay {counting.address}: UNAVAILABLE" in cli.err.getvalue() and "reconnecting in" in cli.err.getvalue()
    assert ATTACH_KEY not in cli.text


async def test_it_attaches_and_a_final_detach_ends_it_with_0(files, relay):
    cli = connector(files, files.file(relays=[relay.address]))
    line = await cli.line("attached to relay")
    assert line == f"attached to relay {relay.address} for {CONNECTION} until " + line.rsplit(" ", 1)[1]
    hello = relay.hellos[0]
    assert hello.connector_file == files.folder.joinpath("stfk.oez").read_bytes()
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", hello.instance_id)
    await relay.detach("the window ended at 2026-12-01T08:00:00Z")
    assert await cli.exit_code() == 0, cli.text
    assert f"relay {relay.address}: the window ended at 2026-12-01T08:00:00Z (WINDOW_NOT_OPEN); the connector stops" \
        in cli.out.getvalue()
    assert ATTACH_KEY not in cli.text


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_it_cleanly(files, relay, number):
    cli = connector(files, files.file(relays=[relay.address]))
    await cli.line("attached to relay")
    await cli.signal(number)
    assert await cli.exit_code() == 0, cli.text
    assert "stopped; the connector detaches from its relays" in cli.out.getvalue()
    await until(lambda: not relay.attached)  # its attach stream ended with it


FINAL = [(grpc.StatusCode.FAILED_PRECONDITION, "WINDOW_NOT_OPEN", 6),
         (grpc.StatusCode.PERMISSION_DENIED, "CONNECTOR_FILE_INVALID", 4),
         (grpc.StatusCode.FAILED_PRECONDITION, "CONNECTOR_FILE_EXPIRED", 6),
         (grpc.StatusCode.FAILED_PRECONDITION, "CONNECTOR_FILE_NOT_YET_VALID", 6),
         (grpc.StatusCode.ALREADY_EXISTS, "CONNECTOR_ALREADY_ATTACHED", 6)]  # as the relay refuses a copy


@pytest.mark.parametrize("code,reason,exit_code", FINAL)
async def test_a_final_refusal_ends_it_with_the_relays_message(files, relay, code, reason, exit_code):
    relay.attach_script = [(code, reason, "the relay says no")]
    cli = connector(files, files.file(relays=[relay.address]))
    assert await cli.exit_code() == exit_code, cli.text
    err = cli.err.getvalue().splitlines()
    assert err[0] == f"rsctl: {code.name}: relay {relay.address} refused the connector: the relay says no"
    assert err[1] == f"  reason {reason}"
    assert len(relay.hellos) == 1  # no retry


async def test_a_final_refusal_from_one_relay_ends_it_for_all(files, relay):
    other = await FakeRelay(files.signer).start()
    try:
        relay.attach_script = [(grpc.StatusCode.FAILED_PRECONDITION, "CONNECTOR_ALREADY_ATTACHED", "a copy is on")]
        relay.hold_attach = asyncio.Event()
        cli = connector(files, files.file(relays=["127.0.0.1:1"]), "--relay", other.address, "--relay", relay.address)
        await cli.line(f"attached to relay {other.address}")
        assert other.attached
        relay.hold_attach.set()
        assert await cli.exit_code() == 6, cli.text
        assert "a copy is on" in cli.err.getvalue()
        assert other.hellos[0].instance_id == relay.hellos[0].instance_id  # one instance, every relay
        await until(lambda: not other.attached)  # its stream to the other relay ended with it
    finally:
        await other.stop()


@pytest.mark.parametrize("first", [
    (grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", "relay restarting"),
    (grpc.StatusCode.FAILED_PRECONDITION, "CONNECTOR_NOT_ATTACHED", "not a final reason"),
    "attach-then-end",
])
async def test_anything_else_reconnects_with_the_same_instance(files, relay, first):
    relay.attach_script = [first, first, "attach"]
    cli = connector(files, files.file(relays=[relay.address]))
    await until(lambda: len(relay.hellos) == 3 and relay.attached)
    await cli.line("attached to relay")
    assert len({h.instance_id for h in relay.hellos}) == 1
    reconnect_lines = [line for line in cli.err.getvalue().splitlines() if "reconnecting in" in line]
    assert len(reconnect_lines) == 1  # at most one line every few seconds
    await relay.detach()
    assert await cli.exit_code() == 0


async def test_a_non_final_detach_reconnects(files, relay):
    cli = connector(files, files.file(relays=[relay.address]))
    await cli.line("attached to relay")
    await relay.detach("relay draining", final=False)
    await until(lambda: len(relay.hellos) == 2 and relay.attached)
    assert "the relay detached the connector: relay draining (WINDOW_NOT_OPEN); reconnecting in" in cli.err.getvalue()
    await relay.detach()
    assert await cli.exit_code() == 0


def test_backoff_doubles_to_5_seconds_with_jitter():
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    for delay, base in zip(delays, [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]):
        assert base / 2 <= delay <= base
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next() <= 0.2


def test_instance_ids_and_targets():
    ids = {new_instance_id() for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"[A-Za-z0-9_-]{32}", i) for i in ids)
    assert split_host_port("erp.example.com:3200") == ("erp.example.com", 3200)
    assert split_host_port("[::1]:22") == ("::1", 22)
    for bad in ("host", "host:", ":22", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            split_host_port(bad)


# --- connector get ----------------------------------------------------------------------------------------


class FakeConnections(connections_pb2_grpc.ConnectionsServiceServicer):
    def __init__(self, files: Files, public_key: str, not_after: dt.datetime | None) -> None:
        self.files, self.public_key, self.not_after = files, public_key, not_after

    async def GetServiceConnector(self, request, context):
        ticket = self.files.ticket(not_after=self.not_after)
        content = self.files.signer.issue(ticket)
        ticket.ClearField("attach_key")
        return connections_pb2.GetServiceConnectorResponse(service_connector=connections_pb2.ServiceConnector(
            file_name="stfk.oez", content=content, ticket=ticket, signing_public_key=self.public_key))


async def _get(files, public_key, *args, not_after=None):
    server = grpc.aio.server()
    connections_pb2_grpc.add_ConnectionsServiceServicer_to_server(FakeConnections(files, public_key, not_after),
                                                                  server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        cli = Cli(["--address", f"127.0.0.1:{port}", "connector", "get", CONNECTION, *map(str, args)],
                  {"RSCTL_TOKEN": "rs_test_token", "RSCTL_CONFIG_DIR": str(files.folder / "config")})
        return await cli.exit_code(), cli
    finally:
        await server.stop(None)


async def test_get_writes_the_public_key_beside_the_file(files, counting):
    code, cli = await _get(files, files.signer.public_key_pem, "-o", files.folder / "dl" / "stfk.oez",
                           not_after=now() + dt.timedelta(seconds=2.5))
    assert code == 0, cli.text
    path = files.folder / "dl" / "stfk.oez"
    pub = files.folder / "dl" / "stfk.oez.pub"
    assert pub.read_text() == files.signer.public_key_pem
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"Wrote {pub}: the signing public key (key {files.signer.key_id})" in cli.out.getvalue()
    # the pair it wrote is what `connector run` pins by default: it gets past the local checks and dials
    run = connector(files, path, "--relay", counting.address, "--window", "w1")
    assert await run.exit_code() == 0, run.text
    assert counting.accepted >= 1 and "the window ended at" in run.out.getvalue()


async def test_get_writes_the_public_key_where_asked(files):
    code, cli = await _get(files, files.signer.public_key_pem, "-o", files.folder / "f.oez", "--public-key-out",
                           files.folder / "keys" / "relay.pem")
    assert code == 0, cli.text
    assert (files.folder / "keys" / "relay.pem").read_text() == files.signer.public_key_pem
    assert not (files.folder / "f.oez.pub").exists()


async def test_get_refuses_a_public_key_the_file_does_not_verify_with(files):
    other = ConnectorSigner(Ed25519PrivateKey.generate()).public_key_pem
    code, cli = await _get(files, other, "-o", files.folder / "f.oez")
    assert code == 8 and "does not verify with the public key the service sent" in cli.err.getvalue()
    assert not (files.folder / "f.oez").exists() and not (files.folder / "f.oez.pub").exists()
