"""The relay group (issue 16): a support engineer's TCP connection carried by the real programs on loopback -
client -> `rsctl tunnel` (its listener) -> OpenTunnel -> the relay process -> AcceptTunnel -> `rsctl connector
run` -> TCP to the target - against the same bytes over a two-hop socat relay and over direct TCP.

Rows, measured side by side in one run:
1. bulk: one stream of BENCH_RELAY_BULK_MB (200) MB into a sink, direct / through two socat hops / through the
   tunnel: MB/s each, tunnel / socat (target >= 0.25), CPU per MB of every process on the path;
2. round trip of a 64-byte message on one connection, direct and through the tunnel (an echo; closed loop, one
   client): p50 / p99 and what the tunnel adds (target: <= 1 ms added at p50);
3. BENCH_RELAY_TUNNELS (100) concurrent tunnels, each a connection doing 64-byte round trips for the run's
   duration: round trips/s, p50 / p99 (target p99/p50 <= 3), errors (target 0), the relay's CPU per MB carried;
4. admission: BENCH_RELAY_SESSIONS (100) new sessions one after another, each from opening the TCP connection
   to the tunnel's listener to the first byte echoed back: p50 / p99 (no target in the issue).

The target is one process (`python -m bench.relay`, on uvloop): a connection whose first byte is b"S" is a
sink (it answers b"R", counts every byte until EOF, answers the count as 8 bytes big-endian and closes); any
other connection is an echo. The line (customer, system with an SSH set-up pointing at the target, open
window, connector file, an engineer processing an incident of the system) is made through the services' RPCs.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import stats

ROOT = Path(__file__).resolve().parents[1]
SOCAT = os.environ.get("BENCH_SOCAT", "/usr/bin/socat")
MESSAGE_BYTES = 64
BULK_CHUNK = 1 << 20
SINK, READY = b"S", b"R"
IO_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0
SETTLE_S = 1.0
SCENARIO_RTT, SCENARIO_MANY = "relay-rtt", "relay-tunnels"
LISTENING = re.compile(r"listening on (\[[0-9a-fA-F:.]+\]|[^\s:,]+):(\d+)")
F = "relay: "  # the prefix of this group's figures in the run's figures table
BULK_RATIO = "bulk: tunnel / socat two-hop (%)"
ADDED_P50 = "round trip: added p50 (µs)"


# --- pure helpers (tests/unit/test_bench_relay.py) ----------------------------------------------------------
def mb_per_s(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes); NaN without a positive duration."""
    if seconds is None or not seconds > 0:
        return math.nan
    return nbytes / 1e6 / seconds


def cpu_ms_per_mb(cpu_seconds: float, nbytes: int) -> float:
    """CPU milliseconds per MB (10^6 bytes) carried; NaN when nothing was carried."""
    if nbytes <= 0 or cpu_seconds is None or math.isnan(cpu_seconds):
        return math.nan
    return cpu_seconds * 1e3 / (nbytes / 1e6)


def added_ms(ours_s: float, base_s: float) -> float:
    """What `ours` adds to `base`, seconds in, milliseconds out; NaN when either is missing."""
    if ours_s is None or base_s is None or math.isnan(ours_s) or math.isnan(base_s):
        return math.nan
    return (ours_s - base_s) * 1e3


def listener_address(text: str) -> tuple[str, int] | None:
    """(host, port) of the first "listening on HOST:PORT" line `rsctl tunnel` printed, or None yet."""
    found = LISTENING.search(text)
    if found is None:
        return None
    return found.group(1).strip("[]"), int(found.group(2))


def listening_ports(proc_net_tcp: str) -> set[int]:
    """The local ports in state LISTEN (0A) in the text of /proc/net/tcp or /proc/net/tcp6."""
    ports = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def us(seconds: float):
    """Seconds as whole microseconds for the figures table; "-" when missing."""
    if seconds is None or math.isnan(seconds):
        return "-"
    return round(seconds * 1e6)


def rounded(value: float, digits: int | None = None):
    """`value` rounded for the figures table (an int without `digits`); "-" when missing."""
    if value is None or math.isnan(value):
        return "-"
    return round(value, digits) if digits is not None else round(value)


def rusage_cpu_seconds(usage) -> float:
    """User + system time of a `resource.struct_rusage` (what os.wait4 returns for a reaped child)."""
    return usage.ru_utime + usage.ru_stime


def _number(value, scale: float = 1.0) -> float:
    """A figure as a float times `scale`; NaN for a missing or non-numeric one ("-")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) * scale


def targets(figs: dict) -> list[dict]:
    """Issue 16's targets for the relay rows, each with the value of this run and its verdict (none when the
    group did not run)."""
    if F + "errors, all rows" not in figs:
        return []
    many = figs.get(F + "tunnels: connections", "?")
    rows = [
        ("relay bulk stream: tunnel MB/s / socat two-hop MB/s", _number(figs.get(F + BULK_RATIO), 0.01), ">=", 0.25),
        (f"relay round trip of {MESSAGE_BYTES} bytes: added p50 (ms)", _number(figs.get(F + ADDED_P50), 1e-3),
         "<=", 1.0),
        (f"relay {many} concurrent tunnels: p99/p50", _number(figs.get(F + "tunnels: p99/p50")), "<=", 3.0),
        ("relay rows: errors (tunnels, round trips, admissions, bulk)", _number(figs.get(F + "errors, all rows")),
         "<=", 0),
    ]
    return [{"name": name, "value": value, "op": op, "limit": limit,
             "verdict": stats.Target(name, op, limit).verdict(value), "unit": ""}
            for name, value, op, limit in rows]


@dataclass(frozen=True)
class Sizes:
    bulk_bytes: int
    tunnels: int
    sessions: int

    @classmethod
    def from_env(cls, quick: bool, environ=os.environ) -> "Sizes":
        return cls(int(float(environ.get("BENCH_RELAY_BULK_MB", "20" if quick else "200")) * 1_000_000),
                   int(environ.get("BENCH_RELAY_TUNNELS", "10" if quick else "100")),
                   int(environ.get("BENCH_RELAY_SESSIONS", "20" if quick else "100")))


# --- the target: sink or echo (its own process) ----------------------------------------------------------------
class _Target(asyncio.Protocol):
    """One connection: a sink when its first byte is b"S", else an echo."""

    def __init__(self) -> None:
        self.transport = None
        self.sink: bool | None = None
        self.count = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.sink is None:
            self.sink = data[:1] == SINK
            if self.sink:
                self.count = len(data) - 1
                self.transport.write(READY)
                return
        if self.sink:
            self.count += len(data)
        else:
            self.transport.write(data)

    def eof_received(self) -> bool:
        if self.sink:
            self.transport.write(self.count.to_bytes(8, "big"))
        return False  # close (after what is buffered is written)


async def _serve_target() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Target, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    await stop.wait()
    server.close()


def serve_target() -> None:
    """`python -m bench.relay`: the target on a free loopback port, printed on the first line."""
    try:
        import uvloop
        uvloop.run(_serve_target())
    except ImportError:
        asyncio.run(_serve_target())


# --- processes --------------------------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSCTL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


@dataclass
class Program:
    """A subprocess of the group, its output in a log file."""

    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None) -> Program:
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{name}.log"
    out = open(path, "ab")
    return Program(name, subprocess.Popen(argv, env=env or _env(), stdout=out, stderr=subprocess.STDOUT), path)


async def wait_output(program: Program, pattern: re.Pattern | str, timeout: float = START_TIMEOUT_S):
    """The first match of `pattern` in the program's output; raises if it exits or stays silent."""
    pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(program.output())
        if found:
            return found
        if program.process.poll() is not None:
            raise RuntimeError(f"{program.name} exited with code {program.process.returncode}: "
                               f"{program.output()[-600:]}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{program.name} did not print {pattern.pattern!r} within {timeout:.0f} s: "
                       f"{program.output()[-600:]}")


async def wait_listening(port: int, process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Until something listens on `port` (read from /proc/net/tcp: a probe connection would use up a
    one-connection socat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode}")
        if port in listening_ports(Path("/proc/net/tcp").read_text()):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def reap(program: Program, timeout: float = 10.0) -> float:
    """Wait for a child to exit by itself and return its CPU seconds (os.wait4's rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(program.pid, os.WNOHANG)
        if pid:
            program.process.returncode = os.waitstatus_to_exitcode(status)
            return rusage_cpu_seconds(usage)
        if time.monotonic() > deadline:
            program.process.kill()
            _, status, usage = os.wait4(program.pid, 0)
            program.process.returncode = os.waitstatus_to_exitcode(status)
            raise TimeoutError(f"{program.name} did not exit after its connection ended")
        time.sleep(0.01)


async def socat_two_hops(target_port: int, logs: Path) -> tuple[int, list[Program]]:
    """`socat TCP-LISTEN:a TCP:127.0.0.1:b` in front of `socat TCP-LISTEN:b TCP:<target>`, one connection
    each (no fork): the address of the first hop and the two processes."""
    from bench.peers import free_port
    first, second = free_port(), free_port()
    hops = []
    for name, listen, to in (("socat-b", second, target_port), ("socat-a", first, second)):
        program = spawn(name, [SOCAT, f"TCP-LISTEN:{listen},reuseaddr,bind=127.0.0.1", f"TCP:127.0.0.1:{to}"], logs)
        hops.append(program)
        await wait_listening(listen, program.process)
    return first, hops


# --- the line: made through the services' RPCs --------------------------------------------------------------
@dataclass
class Line:
    customer: str
    system: str
    window: str
    incident: str
    engineer: str
    engineer_token: str
    connector_file: Path
    public_key: Path


async def make_line(ours, target_port: int, workdir: Path) -> Line:
    """A customer whose user (maintain systems, open windows, create incidents) sets up SSH to the target and
    opens a window, its connector file and public key on disk, and an engineer processing an incident."""
    import grpc

    from bench import suite
    from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
    from remotesupport.connections.v1 import connections_pb2 as cp
    from remotesupport.connections.v1 import connections_pb2_grpc
    async with grpc.aio.insecure_channel(ours.address("authz")) as a, \
            grpc.aio.insecure_channel(ours.address("connections")) as c:
        authz = authz_pb2_grpc.AuthzServiceStub(a)
        conns = connections_pb2_grpc.ConnectionsServiceStub(c)
        admin = (ours.var / "admin.token").read_text().strip()
        people = suite.People(authz, admin, ours.supervisor.mail_dir)
        base = 6_000_000_000 + secrets.randbelow(900_000_000)
        customer = str(base)
        _user, token = await people.customer_with_user(customer, f"S{base:010d}", f"S{base + 1:010d}",
                                                       ["MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS",
                                                        "CREATE_INCIDENTS"])
        engineer_id = f"eng{base}"
        await authz.CreateUser(authz_pb2.CreateUserRequest(user=authz_pb2.User(
            user_id=engineer_id, kind=authz_pb2.PRINCIPAL_KIND_SUPPORT_ENGINEER, display_name="Bench engineer",
            email=suite.email_of(engineer_id))), metadata=suite.md(admin))
        engineer_token = await people.enroll(engineer_id)
        md = suite.md(token)
        system = (await conns.CreateSystem(cp.CreateSystemRequest(parent=f"customers/{customer}", system=cp.System(
            installation_number="20012345", system_id="RLY", system_number=str(base),
            description="bench relay target")), metadata=md)).system.name
        await conns.SetUpConnection(cp.SetUpConnectionRequest(
            parent=system, connection_type="connectionTypes/SSH",
            parameters={"host": "127.0.0.1", "port": str(target_port)}), metadata=md)
        window = (await conns.OpenConnection(cp.OpenConnectionRequest(
            parent=system, connection_type="connectionTypes/SSH",
            end_time=suite.ts(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)),
            reason="benchmark"), metadata=md)).connection.name
        connector = (await conns.GetServiceConnector(cp.GetServiceConnectorRequest(name=window),
                                                     metadata=md)).service_connector
        incident = (await conns.CreateIncident(cp.CreateIncidentRequest(
            parent=f"customers/{customer}", incident=cp.Incident(
                system=system, title="relay benchmark", description="bytes through the relay",
                priority=cp.INCIDENT_PRIORITY_HIGH)), metadata=md)).incident.name
        await conns.AssignProcessor(cp.AssignProcessorRequest(name=incident), metadata=suite.md(engineer_token))
    files = workdir / "connector"
    files.mkdir(parents=True, exist_ok=True)
    content, key = files / "stfk.oez", files / "stfk.oez.pub"
    content.write_bytes(connector.content)
    content.chmod(0o600)
    key.write_text(connector.signing_public_key)
    return Line(customer, system, window, incident, f"users/{engineer_id}", engineer_token, content, key)


async def start_connector(line: Line, relay: str, workdir: Path) -> Program:
    program = spawn("connector", [sys.executable, "-m", "rsctl", "connector", "run", str(line.connector_file),
                                  "--public-key", str(line.public_key), "--window", line.window, "--relay", relay],
                    workdir / "logs", _env(RSCTL_CONFIG_DIR=str(workdir / "rsctl-connector")))
    await wait_output(program, r"attached to relay")
    return program


async def start_tunnel(line: Line, relay: str, workdir: Path) -> tuple[Program, tuple[str, int]]:
    program = spawn("tunnel", [sys.executable, "-m", "rsctl", "--relay-address", relay, "tunnel", line.window,
                               "--incident", line.incident, "--listen", "127.0.0.1:0"],
                    workdir / "logs", _env(RSCTL_CONFIG_DIR=str(workdir / "rsctl-tunnel"),
                                           RSCTL_TOKEN=line.engineer_token))
    await wait_output(program, LISTENING)
    return program, listener_address(program.output())


# --- the client side ----------------------------------------------------------------------------------------
_PAYLOAD = b""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            raise ConnectionError(f"the connection ended after {len(got)} of {size} bytes")
        got += chunk
    return bytes(got)


def bulk_send(address: tuple[str, int], total: int) -> float:
    """Send `total` bytes into the sink at `address` (blocking; run in a thread): seconds from the sink's ready
    byte (the path is connected: admission excluded) to its count (every byte arrived)."""
    global _PAYLOAD
    if len(_PAYLOAD) != BULK_CHUNK:
        _PAYLOAD = os.urandom(BULK_CHUNK)
    view = memoryview(_PAYLOAD)
    with socket.create_connection(address, timeout=120) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(SINK)
        if _recv_exact(sock, 1) != READY:
            raise RuntimeError("the sink did not answer its ready byte")
        started = time.perf_counter()
        left = total
        while left:
            n = min(left, BULK_CHUNK)
            sock.sendall(view[:n])
            left -= n
        sock.shutdown(socket.SHUT_WR)
        counted = int.from_bytes(_recv_exact(sock, 8), "big")
        elapsed = time.perf_counter() - started
    if counted != total:
        raise RuntimeError(f"the sink counted {counted} of {total} bytes")
    return elapsed


def message(worker: int) -> bytes:
    """A 64-byte message that the target echoes (its first byte is not the sink's)."""
    return b"E" + worker.to_bytes(4, "big") + os.urandom(MESSAGE_BYTES - 5)


@dataclass
class EchoConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    payload: bytes

    @classmethod
    async def open(cls, address: tuple[str, int], worker: int = 0) -> "EchoConnection":
        reader, writer = await asyncio.open_connection(*address)
        connection = cls(reader, writer, message(worker))
        async with asyncio.timeout(30):  # through the tunnel: admission first
            await connection.round_trip()
        return connection

    async def round_trip(self) -> None:
        async with asyncio.timeout(IO_TIMEOUT_S):
            self.writer.write(self.payload)
            echoed = await self.reader.readexactly(MESSAGE_BYTES)
        if echoed != self.payload:
            raise RuntimeError("the echo differs from the message")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


async def admission(address: tuple[str, int]) -> float:
    """Seconds from opening a connection to the first byte echoed back."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(*address)
    try:
        async with asyncio.timeout(30):
            writer.write(b"E")
            await reader.readexactly(1)
        return time.perf_counter() - started
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


# --- the group ----------------------------------------------------------------------------------------------
class RelayGroup:
    """The four rows against one line, the real relay of `ours`, and rsctl's connector and tunnel."""

    def __init__(self, bench, ours) -> None:
        self.bench, self.ours = bench, ours
        self.sizes = Sizes.from_env(bench.quick)
        self.workdir = bench.workdir / "relay"
        self.figs = bench.scale_figures
        self.errors = 0
        self.programs: list[Program] = []
        self.pids: dict[str, int] = {}

    def log(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] relay: {text}", flush=True)

    async def run(self) -> None:
        """All four rows; a set-up that fails is recorded as the group's error (the other groups' figures are
        kept, and the relay's targets show it: N/A values and a failed errors target)."""
        try:
            await self._run()
        except Exception as exc:  # noqa: BLE001 - e.g. an rsctl program that exits, a refused set-up call
            self.errors += 1
            self.figs[F + "failed"] = f"{type(exc).__name__}: {exc}"[:300]
            self.log(f"the group failed: {type(exc).__name__}: {exc}")
        finally:
            self.figs[F + "errors, all rows"] = self.errors
            for program in reversed(self.programs):
                program.stop()

    async def _run(self) -> None:
        target = spawn("target", [sys.executable, "-m", "bench.relay"], self.workdir / "logs")
        self.programs.append(target)
        target_port = int((await wait_output(target, re.compile(r"^(\d+)$", re.M), 30)).group(1))
        relay = self.ours.address("relay")
        line = await make_line(self.ours, target_port, self.workdir)
        self.log(f"line {line.window} (target 127.0.0.1:{target_port}); starting rsctl connector and tunnel")
        connector = await start_connector(line, relay, self.workdir)
        self.programs.append(connector)
        tunnel, listener = await start_tunnel(line, relay, self.workdir)
        self.programs.append(tunnel)
        self.pids = {"relay": self.ours.pid("relay"), "tunnel": tunnel.pid, "connector": connector.pid,
                     "target": target.pid, "authz": self.ours.pid("authz"),
                     "connections": self.ours.pid("connections")}
        direct = ("127.0.0.1", target_port)
        self.figs[F + "RSS relay before (MiB)"] = rounded(stats.rss_mib(self.pids["relay"]), 1)
        for row, measure in (("bulk", self.bulk), ("round trip", self.round_trips), ("tunnels", self.many),
                             ("admission", self.admissions)):
            await asyncio.sleep(SETTLE_S)  # the previous row's sessions end and are recorded before this row
            await self._guarded(row, measure(direct, listener, target_port))
        self.figs[F + "RSS relay after (MiB)"] = rounded(stats.rss_mib(self.pids["relay"]), 1)

    async def _guarded(self, row: str, measured) -> None:
        """One row; a row that fails is an error of the group, recorded, and the next row still runs."""
        try:
            await measured
        except (OSError, RuntimeError, EOFError, TimeoutError) as exc:
            self.errors += 1
            self.figs[F + f"{row}: failed"] = f"{type(exc).__name__}: {exc}"[:200]
            self.log(f"{row} failed: {type(exc).__name__}: {exc}")

    # --- 1. bulk ---------------------------------------------------------------------------------------------
    async def _timed_bulk(self, address, pids: dict[str, int]) -> tuple[float, dict[str, float]]:
        before = stats.total_cpu_seconds(pids.values())
        seconds = await asyncio.to_thread(bulk_send, address, self.sizes.bulk_bytes)
        after = stats.total_cpu_seconds(pids.values())
        return seconds, {name: after[pid] - before[pid] for name, pid in pids.items()}

    async def bulk(self, direct, listener, target_port: int) -> None:
        total = self.sizes.bulk_bytes
        self.figs[F + "bulk: bytes"] = total
        by = lambda *names: {n: self.pids[n] for n in names}  # noqa: E731
        direct_s, _ = await self._timed_bulk(direct, by("target"))
        self.figs[F + "bulk: direct TCP (MB/s)"] = rounded(mb_per_s(total, direct_s), 1)
        first, hops = await socat_two_hops(target_port, self.workdir / "logs")
        self.programs += hops
        socat_s, _ = await self._timed_bulk(("127.0.0.1", first), by("target"))
        socat_cpu = sum(reap(hop) for hop in hops)
        self.figs[F + "bulk: socat two-hop (MB/s)"] = rounded(mb_per_s(total, socat_s), 1)
        self.figs[F + "bulk: socat CPU, both hops (ms/MB)"] = rounded(cpu_ms_per_mb(socat_cpu, total), 2)
        tunnel_s, cpu = await self._timed_bulk(listener, by("relay", "tunnel", "connector", "target"))
        self.figs[F + "bulk: tunnel + relay + connector (MB/s)"] = rounded(mb_per_s(total, tunnel_s), 1)
        ratio = stats.ratio(mb_per_s(total, tunnel_s), mb_per_s(total, socat_s))
        self.figs[F + BULK_RATIO] = rounded(ratio * 100, 1)
        for name in ("relay", "tunnel", "connector"):
            self.figs[F + f"bulk: {name} CPU (ms/MB)"] = rounded(cpu_ms_per_mb(cpu[name], total), 2)
        self.log(f"bulk {total / 1e6:.0f} MB: direct {mb_per_s(total, direct_s):.0f} MB/s, socat two-hop "
                 f"{mb_per_s(total, socat_s):.0f} MB/s, tunnel {mb_per_s(total, tunnel_s):.1f} MB/s "
                 f"(x{ratio:.3f} of socat)")

    # --- 2. round trip ---------------------------------------------------------------------------------------
    async def _closed_loop(self, address, clients: int, scenario: str, side: str, processes: dict[str, int],
                           touched: tuple[str, ...]):
        opened = await asyncio.gather(*(EchoConnection.open(address, w) for w in range(clients)),
                                      return_exceptions=True)
        connections = [c for c in opened if isinstance(c, EchoConnection)]
        if len(connections) < clients:
            await asyncio.gather(*(c.close() for c in connections))
            failure = next(c for c in opened if not isinstance(c, EchoConnection))
            raise RuntimeError(f"{clients - len(connections)} of {clients} connections did not open: "
                               f"{type(failure).__name__}: {failure}")
        try:
            async def op(w, _i):
                await connections[w].round_trip()

            [result] = await self.bench.measure(op, scenario=scenario, side=side, processes=processes,
                                                touched=touched, clients=[clients],
                                                note=f"{MESSAGE_BYTES}-byte round trips, {clients} connection(s)")
        finally:
            await asyncio.gather(*(c.close() for c in connections))
        self.errors += result.errors
        return result

    async def round_trips(self, direct, listener, _target_port: int) -> None:
        tunnel_pids = {n: self.pids[n] for n in ("relay", "tunnel", "connector", "target", "authz")}
        base = await self._closed_loop(direct, 1, SCENARIO_RTT, "direct", {"target": self.pids["target"]},
                                       ("target",))
        ours = await self._closed_loop(listener, 1, SCENARIO_RTT, "tunnel", tunnel_pids,
                                       ("relay", "tunnel", "connector"))
        for side, r in (("direct", base), ("tunnel", ours)):
            self.figs[F + f"round trip: {side} p50 (µs)"] = us(r.p50_s)
            self.figs[F + f"round trip: {side} p99 (µs)"] = us(r.p99_s)
        self.figs[F + ADDED_P50] = rounded(added_ms(ours.p50_s, base.p50_s) * 1e3)
        self.figs[F + "round trip: added p99 (µs)"] = rounded(added_ms(ours.p99_s, base.p99_s) * 1e3)

    # --- 3. many tunnels -------------------------------------------------------------------------------------
    async def many(self, direct, listener, _target_port: int) -> None:
        n = self.sizes.tunnels
        self.figs[F + "tunnels: connections"] = n
        tunnel_pids = {k: self.pids[k] for k in ("relay", "tunnel", "connector", "target", "authz", "connections")}
        base = await self._closed_loop(direct, n, SCENARIO_MANY, "direct", {"target": self.pids["target"]},
                                       ("target",))
        ours = await self._closed_loop(listener, n, SCENARIO_MANY, "tunnel", tunnel_pids,
                                       ("relay", "tunnel", "connector"))
        carried = 2 * MESSAGE_BYTES  # per round trip through the relay: the message up, its echo down
        self.figs[F + "tunnels: round trips/s"] = rounded(ours.throughput_rps)
        self.figs[F + "tunnels: direct round trips/s"] = rounded(base.throughput_rps)
        self.figs[F + "tunnels: p50 (µs)"] = us(ours.p50_s)
        self.figs[F + "tunnels: p99 (µs)"] = us(ours.p99_s)
        self.figs[F + "tunnels: p99/p50"] = rounded(stats.ratio(ours.p99_s, ours.p50_s), 2)
        self.figs[F + "tunnels: errors"] = ours.errors
        relay_us = ours.cpu_us_by_process["relay"]
        self.figs[F + "tunnels: relay CPU per round trip (µs)"] = rounded(relay_us)
        self.figs[F + "tunnels: relay CPU per MB carried (ms/MB)"] = rounded(relay_us * 1e-3 / (carried / 1e6))

    # --- 4. admission ----------------------------------------------------------------------------------------
    async def _admissions(self, address, count: int) -> tuple[list[float], int]:
        latencies, errors = [], 0
        for _ in range(count):
            try:
                latencies.append(await admission(address))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                errors += 1
        return latencies, errors

    async def admissions(self, direct, listener, _target_port: int) -> None:
        n = self.sizes.sessions
        base, base_errors = await self._admissions(direct, n)
        cpu0 = stats.total_cpu_seconds([self.pids["relay"]])
        ours, errors = await self._admissions(listener, n)
        cpu1 = stats.total_cpu_seconds([self.pids["relay"]])
        self.errors += errors + base_errors
        self.figs[F + "admission: sessions"] = n
        self.figs[F + "admission: errors"] = errors
        for side, values in (("direct connect + echo", base), ("tunnel", ours)):
            summary = stats.summarize(values)
            self.figs[F + f"admission: {side} p50 (µs)"] = us(summary.p50_s)
            self.figs[F + f"admission: {side} p99 (µs)"] = us(summary.p99_s)
        if ours:
            self.figs[F + "admission: relay CPU per session (µs)"] = rounded(
                (cpu1[self.pids["relay"]] - cpu0[self.pids["relay"]]) / len(ours) * 1e6)
        self.log(f"{n} admissions: p50 {self.figs[F + 'admission: tunnel p50 (µs)']} µs, "
                 f"p99 {self.figs[F + 'admission: tunnel p99 (µs)']} µs, {errors} errors")


async def run_group(bench, ours) -> None:
    """The relay group of `make bench` (bench/run.py): figures into bench.scale_figures, runs into bench.results."""
    await RelayGroup(bench, ours).run()


if __name__ == "__main__":
    serve_target()
