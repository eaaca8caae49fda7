"""The relay end to end (issue 16), with the real processes: the Supervisor starts authz, connections, the
relay, depot, the gateway and the mail sink; the customer's systems are real servers on loopback (an SSH
server, an HTTP server, a TCP echo server: tests/e2e/relay_targets.py); the customer runs `rsctl connector run`
and the engineer `rsctl tunnel`, both as real processes, and real clients (asyncssh, http.client, sockets) talk
to the tunnel's local port. Checked: SSH with the password revealed from the depot, HTTP Connect, 10 MB each way
byte-identical, an idle tunnel staying open (the clients' keepalive pings are welcome), the window's end (the
tunnel cut within 2 s, the connector exits 0, the session recorded WINDOW_ENDED), a relay killed with SIGKILL and
restarted (the tunnel ends at once, nothing is admitted that should not be, the connector re-attaches by itself,
the lost session ends RELAY_LOST), and two relay replicas on PostgreSQL (the connector on both, tunnels through
either, a copy of the file refused and its connector exiting 6).

SQLite only, but the replicas (PostgreSQL only, RS_TEST_POSTGRES_URL)."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import asyncssh
import grpc
import pytest

from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.connections.v1 import relay_pb2 as rp
from remotesupport.connections.v1 import relay_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dp
from tests.conftest import require_backend
from tests.e2e.relay_targets import HTTP_MARKER, SSH_USER, Targets
from tests.e2e.relay_world import START_TIMEOUT_S, Line, RelayWorld, md, now, relay_addresses, start_suite
from tests.helpers import status_details

pytestmark = pytest.mark.e2e
SSH_PASSWORD = "Ssh-Pa55word-of-the-depot!"
CUT_BOUND_S = 2.0      # the bound: a live tunnel is cut within 2 s of its window's end
REPLICA_TTL_S = 5.0    # RS_RELAY_REPLICA_TTL_S's default
RELAY_LOST_BOUND_S = 3 * REPLICA_TTL_S  # from a replica's death to its sessions' RELAY_LOST record
MB = 1024 * 1024
COPY_EXIT_S = 20.0     # how long a refused copy of a connector file may take to give up
IDLE_S = 10.0          # longer than a few keepalive pings of the relay clients (every 2 s)
ENDED, ACTIVE, REFUSED = cn.SESSION_STATE_ENDED, cn.SESSION_STATE_ACTIVE, cn.SESSION_STATE_REFUSED
NORMAL_ENDS = {cn.SESSION_END_REASON_CLIENT_CLOSED, cn.SESSION_END_REASON_TARGET_CLOSED}


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def targets():
    running = Targets(SSH_PASSWORD).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="class")
def world(tmp_path_factory):
    """One relay on SQLite, with the customer's people."""
    tmp = tmp_path_factory.mktemp("relay-e2e-sqlite")
    suite = start_suite("sqlite", tmp)
    built = RelayWorld(suite, tmp)
    try:
        yield built.make_people()
    finally:
        built.stop_procs()
        suite.stop()


@pytest.fixture(scope="class")
def replicas(tmp_path_factory):
    """Two relay replicas on PostgreSQL."""
    require_backend("postgres")
    tmp = tmp_path_factory.mktemp("relay-e2e-replicas")
    suite = start_suite("postgres", tmp, relay_replicas=2)
    built = RelayWorld(suite, tmp)
    try:
        yield built.make_people()
    finally:
        built.stop_procs()
        suite.stop()


# --- helpers ------------------------------------------------------------------------------------------------


def echo_round_trip(tunnel, payload: bytes = b"ping through the relay\n", timeout: float = 30.0) -> socket.socket:
    """Open a connection through the tunnel and see `payload` come back; the open socket."""
    sock = tunnel.connect(timeout)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, f"the tunnel closed after {got!r}:\n{tunnel.proc.describe()}"
        got += chunk
    assert got == payload
    return sock


def wait_closed(sock: socket.socket, timeout: float) -> float | None:
    """Read (and drop) until the peer closes the connection; the wall-clock time it did, None if it did not
    within `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.time()
        except (ConnectionResetError, BrokenPipeError):
            return time.time()
        except socket.timeout:
            return None
    return None


def chat_until_closed(sock: socket.socket, timeout: float) -> tuple[float | None, int]:
    """Keep the connection busy (a line every 0.1 s, echoed back) until the peer closes it; the wall-clock time
    it was seen closed (None: not within `timeout`) and how many echoes came back before."""
    deadline, echoes = time.monotonic() + timeout, 0
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"tick\n")
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.time(), echoes
        if not data:
            return time.time(), echoes
        echoes += data.count(b"\n")
        time.sleep(0.1)
    return None, echoes


def own_session(world: RelayWorld, line: Line, principal: str = "engineer", state=None) -> list[cn.Session]:
    return [s for s in world.sessions(line) if s.principal == world.users[principal]
            and (state is None or s.state == state)]


def open_tunnel_directly(relay: str, token: str, window: str) -> grpc.RpcError:
    """OpenTunnel with a raw gRPC stream: the error the relay answers the start with."""
    with grpc.insecure_channel(relay) as channel:
        stub = relay_pb2_grpc.RelayServiceStub(channel)
        call = stub.OpenTunnel(iter([rp.OpenTunnelRequest(start=rp.OpenTunnelStart(connection=window))]),
                               metadata=md(token), timeout=30)
        with pytest.raises(grpc.RpcError) as err:
            for _ in call:
                pass
        return err.value


def assert_refused(err: grpc.RpcError, code: grpc.StatusCode, reason: str) -> None:
    assert err.code() == code, f"{err.code()}: {err.details()}"
    assert status_details(err)[0] == reason, err.details()


def _wait_active_with_bytes(world: RelayWorld, line: Line, timeout: float = 15.0) -> cn.Session:
    """The engineer's ACTIVE session of the window, once its byte counts (renewed at every check) are > 0."""
    deadline = time.monotonic() + timeout
    while True:
        found = own_session(world, line, "engineer", ACTIVE)
        if found and found[0].bytes_to_target > 0 and found[0].bytes_from_target > 0:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no ACTIVE session with bytes both ways within {timeout:g}s: {found}")
        time.sleep(0.2)


# --- one relay, SQLite --------------------------------------------------------------------------------------


class TestOneRelay:
    def test_ssh_with_the_password_revealed_from_the_depot(self, world, targets):
        ssh = targets.ssh
        line = world.new_line("SSH", {"host": "127.0.0.1", "port": str(ssh.port)}, engineer=None)
        entry = world.store_password(line, SSH_USER, SSH_PASSWORD)
        # The engineer may neither reveal the password nor open a tunnel before it processes the incident.
        with pytest.raises(grpc.RpcError) as err:
            world.depot.RevealLogonData(dp.RevealLogonDataRequest(name=entry, reason=line.incident),
                                        metadata=md(world.tokens["engineer"]))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        connector = world.run_connector(world.connector_file(line))
        assert_refused(open_tunnel_directly(world.suite.supervisor.address("relay"), world.tokens["engineer"],
                                            line.window), grpc.StatusCode.PERMISSION_DENIED, "NO_SUPPORT_ASSIGNMENT")
        world.conn.AssignProcessor(cn.AssignProcessorRequest(name=line.incident),
                                   metadata=md(world.tokens["engineer"]))
        revealed = world.depot.RevealLogonData(dp.RevealLogonDataRequest(name=entry, reason=line.incident),
                                               metadata=md(world.tokens["engineer"]))
        assert revealed.user_name == SSH_USER
        tunnel = world.run_tunnel(line)

        async def session_while_connected():
            async with asyncssh.connect("127.0.0.1", tunnel.port, username=SSH_USER, password=revealed.secret,
                                        known_hosts=None, client_keys=None, agent_path=None,
                                        preferred_auth="password", connect_timeout=30) as conn:
                whoami = await asyncio.wait_for(conn.run("whoami", check=True), 30)
                echoed = await asyncio.wait_for(conn.run("echo through the relay", check=True), 30)
                host = await asyncio.wait_for(conn.run("hostname", check=True), 30)
                # While connected: the session is listed, ACTIVE, with the engineer and bytes both ways.
                listed = await asyncio.to_thread(_wait_active_with_bytes, world, line)
                return whoami.stdout, echoed.stdout, host.stdout, conn.get_server_host_key(), listed

        whoami, echoed, host, host_key, listed = asyncio.run(session_while_connected())
        assert (whoami, echoed, host) == (f"{SSH_USER}\n", "through the relay\n", f"{ssh.hostname}\n")
        assert host_key.public_data == ssh.host_key.public_data  # the very server the set-up points at
        assert ssh.logins == [SSH_USER] and ssh.commands[-3:] == ["whoami", "echo through the relay", "hostname"]
        assert listed.principal == world.users["engineer"] and listed.incident == line.incident
        assert listed.target == f"127.0.0.1:{ssh.port}" and listed.connection == line.window
        assert listed.connection_type == "connectionTypes/SSH" and listed.relay
        tunnel.admitted()  # rsctl tunnel said so too
        # After the client disconnected: ENDED, normally, with the byte counts kept.
        ended, _ = world.wait_session(listed.name, lambda s: s.state == ENDED, 15, "ENDED")
        assert ended.end_reason in NORMAL_ENDS, cn.SessionEndReason.Name(ended.end_reason)
        assert ended.bytes_to_target >= listed.bytes_to_target > 0
        assert ended.bytes_from_target >= listed.bytes_from_target > 0
        assert ended.HasField("end_time")
        assert connector.process.poll() is None and tunnel.proc.process.poll() is None
        logs = world.suite.logs() + "".join(p.out + p.err for p in world.procs)
        assert SSH_PASSWORD not in logs  # the password reached no log and no output of rsctl

    def test_http_connect_url_through_the_tunnel(self, world, targets):
        line = world.new_line("HTTP_CONNECT_URL", {"url": f"http://127.0.0.1:{targets.http.port}/"})
        world.run_connector(world.connector_file(line))
        tunnel = world.run_tunnel(line)
        client = http.client.HTTPConnection("127.0.0.1", tunnel.port, timeout=30)
        try:
            client.request("GET", "/", headers={"Host": f"127.0.0.1:{targets.http.port}"})
            response = client.getresponse()
            body = response.read().decode()
            assert response.status == 200, body
            assert HTTP_MARKER in body and f"host 127.0.0.1:{targets.http.port}" in body
            client.request("GET", "/missing")  # the same TCP connection (keep-alive) carries a second request
            missing = client.getresponse()
            missing.read()
            assert missing.status == 404
        finally:
            client.close()
        assert targets.http.paths[-2:] == ["/", "/missing"]
        [session] = tunnel.admitted()
        got = world.session(session)
        assert got.target == f"127.0.0.1:{targets.http.port}"
        assert got.connection_type == "connectionTypes/HTTP_CONNECT_URL"

    def test_ten_megabytes_each_way_arrive_byte_identical(self, world, targets):
        echo = targets.echo
        line = world.new_line("SSH", {"host": "127.0.0.1", "port": str(echo.port)})
        world.run_connector(world.connector_file(line))
        tunnel = world.run_tunnel(line)
        payload = os.urandom(10 * MB)
        sent_hash = hashlib.sha256(payload).hexdigest()
        sock = tunnel.connect(60)
        before = len(echo.connections)

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # the half-close travels to the echo server, which then closes

        sender = threading.Thread(target=send)
        sender.start()
        received, digest = 0, hashlib.sha256()
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
            digest.update(chunk)
        sender.join(60)
        sock.close()
        assert received == len(payload) and digest.hexdigest() == sent_hash  # back to the engineer, unchanged
        seen = echo.connections[before]
        assert seen.eof and seen.received == len(payload) and seen.digest.hexdigest() == sent_hash  # to the target
        [name] = tunnel.admitted()
        ended, _ = world.wait_session(name, lambda s: s.state == ENDED, 15, "ENDED")
        assert ended.end_reason in NORMAL_ENDS, cn.SessionEndReason.Name(ended.end_reason)
        assert ended.bytes_to_target == len(payload) and ended.bytes_from_target == len(payload)

    def test_an_idle_tunnel_stays_open(self, world, targets):
        line = world.new_line("SSH", {"host": "127.0.0.1", "port": str(targets.echo.port)})
        connector = world.run_connector(world.connector_file(line))
        tunnel = world.run_tunnel(line)
        sock = echo_round_trip(tunnel)
        time.sleep(IDLE_S)  # an engineer reading: nothing flows for a while
        try:
            sock.sendall(b"still there?\n")
            answer = sock.recv(65536)
        except OSError as exc:
            answer = repr(exc).encode()
        sock.close()
        assert answer == b"still there?\n", (
            f"an idle tunnel did not survive {IDLE_S:g}s without traffic (got {answer!r}):\n{tunnel.proc.describe()}")
        [name] = tunnel.admitted()
        assert world.wait_session(name, lambda s: s.state == ENDED, 15, "ENDED")[0].end_reason in NORMAL_ENDS
        assert "reconnecting" not in connector.err, connector.describe()  # its idle attach stream stayed up too

    def test_the_window_end_cuts_the_tunnel_within_2s_and_stops_the_connector(self, world, targets):
        line = world.new_line("SSH", {"host": "127.0.0.1", "port": str(targets.echo.port)},
                              length=dt.timedelta(seconds=20))
        connector = world.run_connector(world.connector_file(line))
        tunnel = world.run_tunnel(line)
        sock = echo_round_trip(tunnel)
        [name] = tunnel.admitted()
        left = (line.end - now()).total_seconds()
        assert left > 1, f"setting up took too long: the window ends in {left:.1f}s"
        closed_at, echoes = chat_until_closed(sock, left + CUT_BOUND_S + 3)  # the tunnel in use until the end
        sock.close()
        end = line.end.timestamp()
        assert closed_at is not None, f"the tunnel's connection was still open {CUT_BOUND_S + 3:g}s after the end"
        assert closed_at >= end - 0.05, (f"cut {end - closed_at:.2f}s before the window's end (after {echoes} "
                                         f"echoes): {world.session(name)}\n{tunnel.proc.describe()}\n"
                                         f"{connector.describe()}")
        assert closed_at - end <= CUT_BOUND_S, f"cut {closed_at - end:.2f}s after the window's end"
        code = connector.wait_exit(max(1.0, end + 10 - time.time()))
        assert code == 0, connector.describe()
        assert "the connector stops" in connector.out and "ended" in connector.out, connector.describe()
        assert f"session {name} ended: SESSION_ENDED" in tunnel.proc.err, tunnel.proc.describe()
        # Once the window is over the relay admits nobody through it, not even its engineer.
        assert_refused(open_tunnel_directly(world.suite.supervisor.address("relay"), world.tokens["engineer"],
                                            line.window), grpc.StatusCode.FAILED_PRECONDITION, "WINDOW_NOT_OPEN")
        ended, _ = world.wait_session(name, lambda s: s.state == ENDED, 10, "ENDED")
        assert ended.bytes_from_target == ended.bytes_to_target > 0
        # The record says the window's time frame ran out (not that the connector went, although the connector
        # stops at the same moment by its own clock).
        assert ended.end_reason == cn.SESSION_END_REASON_WINDOW_ENDED, (
            f"{cn.SessionEndReason.Name(ended.end_reason)} ({ended.detail}); the connector printed:\n{connector.out}")

    def test_a_relay_killed_with_sigkill_ends_the_tunnel_and_recovers(self, world, targets):
        supervisor = world.suite.supervisor
        line = world.new_line("SSH", {"host": "127.0.0.1", "port": str(targets.echo.port)})
        connector = world.run_connector(world.connector_file(line))
        tunnel = world.run_tunnel(line)
        sock = echo_round_trip(tunnel)
        [killed] = tunnel.admitted()
        assert world.session(killed).state == ACTIVE
        killed_at = time.monotonic()
        supervisor.stop("relay", sig=signal.SIGKILL)  # kill -9 of the relay's process
        closed_at = wait_closed(sock, CUT_BOUND_S)
        sock.close()
        assert closed_at is not None, "the engineer's TCP connection stayed open after the relay was killed"
        supervisor.start(("relay",), timeout=START_TIMEOUT_S)
        restarted_at = time.monotonic()
        # Nothing is admitted that should not be: an engineer without the incident is still refused.
        assert_refused(open_tunnel_directly(supervisor.address("relay"), world.tokens["unassigned"], line.window),
                       grpc.StatusCode.PERMISSION_DENIED, "NO_SUPPORT_ASSIGNMENT")
        refused_cli = world.run_tunnel(line, "unassigned", "--once")
        with refused_cli.connect() as probe:
            assert wait_closed(probe, 30) is not None
        assert refused_cli.proc.wait_exit(30) == 4, refused_cli.proc.describe()
        assert "refused: PERMISSION_DENIED NO_SUPPORT_ASSIGNMENT" in refused_cli.proc.err, refused_cli.proc.describe()
        # The connector re-attaches by itself, and a new connection through the same tunnel works.
        connector.wait_for(r"attached to relay ", 30, count=2)
        deadline = time.monotonic() + 15
        while True:
            try:
                echo_round_trip(tunnel, b"after the restart\n").close()
                break
            except (AssertionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        recovered_s = time.monotonic() - restarted_at
        assert connector.process.poll() is None, connector.describe()
        assert len(tunnel.admitted(2)) == 2
        # The killed session's record ends RELAY_LOST once the dead replica's lease (the replica TTL) ran out: the
        # TTL, then up to half of it until the restarted replica's next sweep, and the restart itself.
        lost, _ = world.wait_session(killed, lambda s: s.state == ENDED,
                                     max(1.0, killed_at + RELAY_LOST_BOUND_S - time.monotonic()), "ended RELAY_LOST")
        lost_s = time.monotonic() - killed_at
        assert lost.end_reason == cn.SESSION_END_REASON_RELAY_LOST, cn.SessionEndReason.Name(lost.end_reason)
        refusals = own_session(world, line, "unassigned", REFUSED)
        assert refusals and {s.refusal_reason for s in refusals} == {"NO_SUPPORT_ASSIGNMENT"}
        print(f"relay restart: new tunnel after {recovered_s:.1f}s; RELAY_LOST recorded {lost_s:.1f}s after the kill")


# --- two relay replicas, PostgreSQL -------------------------------------------------------------------------


@pytest.mark.postgres
class TestTwoRelayReplicas:
    def test_connector_on_both_replicas_tunnels_through_either_and_a_copy_is_refused(self, replicas, targets):
        world = replicas
        relays = relay_addresses(world.suite)
        assert len(relays) == 2
        line = world.new_line("SSH", {"host": "127.0.0.1", "port": str(targets.echo.port)})
        path = world.connector_file(line)
        connector = world.run_connector(path, attached=2)
        attached_to: set[str] = set()
        deadline = time.monotonic() + 30
        while attached_to != set(relays) and time.monotonic() < deadline:
            attached_to = {m.group(1) for m in connector.wait_for(r"attached to relay (\S+) ", 5, 2)}
            time.sleep(0.1)
        assert attached_to == set(relays), connector.describe()  # the file names both replicas
        carried_by = set()
        for relay in relays:
            tunnel = world.run_tunnel(line, relay=relay)
            echo_round_trip(tunnel, f"through {relay}\n".encode()).close()
            [name] = tunnel.admitted()
            carried_by.add(world.wait_session(name, lambda s: s.state == ENDED, 15, "ENDED")[0].relay)
        assert len(carried_by) == 2  # two replicas carried them
        # A second connector with a copy of the file is refused while the first runs, and exits non-zero.
        copy = path.with_name("copy-" + path.name)
        shutil.copy(path, copy)
        shutil.copy(f"{path}.pub", f"{copy}.pub")
        second = world.run_connector(copy, attached=0, label="connector-copy")
        try:
            code = second.process.wait(COPY_EXIT_S)
        except subprocess.TimeoutExpired:
            code = None
        assert "CONNECTOR_ALREADY_ATTACHED" in second.err, second.describe()  # the relays refused it
        assert "attached to relay" not in second.out, second.describe()
        assert connector.process.poll() is None, connector.describe()
        tunnel = world.run_tunnel(line, relay=relays[1])
        echo_round_trip(tunnel, b"the first connector still serves\n").close()
        assert code is not None and code != 0, (
            f"a second connector with a copy of the file was refused (ALREADY_EXISTS CONNECTOR_ALREADY_ATTACHED) "
            f"but did not exit within {COPY_EXIT_S:g}s; it keeps reconnecting:\n{second.describe()}")
        assert code == 6, second.describe()  # ALREADY_EXISTS: rsctl's documented exit code 6
