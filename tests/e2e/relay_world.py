"""What the relay's end-to-end tests share: the real suite (the Supervisor's six processes, optionally with a
second relay replica), the people (a customer made as the README makes it: the platform admin creates it and
its first user administrator, who creates the others; support engineers made by the platform admin; each sets
its password with the code from its mail), a customer's system with a set-up pointing at one of the target
servers and an open window, and the two rsctl commands of the relay run as real processes: `rsctl connector
run` (the customer's side) and `rsctl tunnel` (the engineer's)."""
from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.depot.v1 import depot_pb2_grpc
from tests.e2e.conftest import E2E, free_ports

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a long enough password 1"
START_TIMEOUT_S = 90.0
_numbers = itertools.count(random.randint(100, 899) * 10_000)
_sids = (f"{a}{b}{c}" for a, b, c in itertools.product("RST", "ABCDEFGHJK", "0123456789"))


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def md(token: str):
    return (("authorization", f"Bearer {token}"),)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def start_suite(backend: str, tmp: Path, relay_replicas: int = 1) -> E2E:
    """The Supervisor's processes (authz, connections, relay, depot, gateway, the mail sink) on free ports, with
    `relay_replicas` relay replicas (the connections service's RS_RELAY_ADDRESSES names them all)."""
    suite = E2E(backend, tmp)
    if relay_replicas > 1:
        suite.supervisor.replica_ports = {"relay": free_ports(relay_replicas - 1)}
    suite.supervisor.start(timeout=START_TIMEOUT_S)
    suite.channel = grpc.insecure_channel(suite.gateway)
    return suite


def relay_addresses(suite: E2E) -> list[str]:
    supervisor = suite.supervisor
    return [supervisor.replica_address("relay", i) for i in range(supervisor.replica_count("relay"))]


# --- rsctl processes ----------------------------------------------------------------------------------------


class Proc:
    """A long-running rsctl process whose stdout and stderr go to files (read while it runs)."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path, label: str) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.label = label
        self.args = args
        self.out_path, self.err_path = logs / f"{label}.out", logs / f"{label}.err"
        self._out, self._err = open(self.out_path, "wb"), open(self.err_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "rsctl", *args], env=env, stdout=self._out,
                                        stderr=self._err, stdin=subprocess.DEVNULL, cwd=logs)

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def describe(self) -> str:
        return (f"rsctl {' '.join(self.args)} (exit {self.process.poll()})\n--- stdout\n{self.out[-3000:]}"
                f"\n--- stderr\n{self.err[-3000:]}")

    def wait_for(self, pattern: str, timeout: float = 30.0, count: int = 1) -> list[re.Match]:
        """Wait until stdout has `count` matches of `pattern`; fails (with the output) otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.out))
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                found = list(re.finditer(pattern, self.out))  # a last line written before it exited
                if len(found) >= count:
                    return found
                raise AssertionError(f"{self.label} exited before printing {pattern!r}:\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label} did not print {pattern!r} {count}x within {timeout:g}s:\n"
                                     f"{self.describe()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} did not exit within {timeout:g}s:\n{self.describe()}") from None

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        self._err.close()


@dataclass
class Tunnel:
    """A running `rsctl tunnel` and its local port."""

    proc: Proc
    port: int

    def connect(self, timeout: float = 30.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def admitted(self, count: int = 1, timeout: float = 30.0) -> list[str]:
        """The names of the first `count` sessions it printed as admitted."""
        found = self.proc.wait_for(r"session (\S+) admitted to (\S+)", timeout, count)
        return [m.group(1) for m in found]


# --- people and systems -------------------------------------------------------------------------------------


@dataclass
class Line:
    """A customer's system with a set-up of one type, an open window of it, and an incident."""

    system: str
    window: str
    incident: str
    end: dt.datetime


class RelayWorld:
    """The customer, its users and two support engineers, on a running suite; helpers for windows and rsctl."""

    def __init__(self, suite: E2E, tmp: Path) -> None:
        self.suite = suite
        self.tmp = tmp
        self.authz = authz_pb2_grpc.AuthzServiceStub(suite.channel)
        self.conn = connections_pb2_grpc.ConnectionsServiceStub(suite.channel)
        self.depot = depot_pb2_grpc.LogonDepotServiceStub(suite.channel)
        self.customer = str(next(_numbers) + 1_000_000)
        self.tokens: dict[str, str] = {}
        self.users: dict[str, str] = {}
        self.procs: list[Proc] = []
        self._labels = itertools.count(1)

    # people
    def enroll(self, user_id: str) -> str:
        code = self.suite.code_for(f"{user_id}@relay.example")
        self.authz.SetPassword(az.SetPasswordRequest(user_id=user_id, code=code, new_password=PASSWORD))
        return self.authz.Login(az.LoginRequest(user_id=user_id, password=PASSWORD)).access_token

    def create_user(self, label: str, by: str, grants=(), *, engineer: bool = False) -> str:
        user_id = f"eng.{label}.{self.customer}" if engineer else f"S{next(_numbers):010d}"
        self.authz.CreateUser(az.CreateUserRequest(user=az.User(
            user_id=user_id, display_name=label, email=f"{user_id}@relay.example",
            kind=az.PRINCIPAL_KIND_SUPPORT_ENGINEER if engineer else az.PRINCIPAL_KIND_CUSTOMER_USER,
            customer="" if engineer else f"customers/{self.customer}")), metadata=md(by))
        for grant in grants:
            made = self.authz.GrantAuthorization(az.GrantAuthorizationRequest(
                user=f"users/{user_id}", authorization=az.Authorization.Value(f"AUTHORIZATION_{grant}")),
                metadata=md(by)).grant
            assert made.state == az.GRANT_STATE_ACTIVE, made
        self.users[label], self.tokens[label] = f"users/{user_id}", self.enroll(user_id)
        return self.tokens[label]

    def make_people(self) -> "RelayWorld":
        admin = self.suite.admin_token
        self.authz.CreateCustomer(az.CreateCustomerRequest(customer=az.Customer(
            customer_number=self.customer, display_name="Relay Corp")), metadata=md(admin))
        useradmin = self.create_user("useradmin", admin, ["USER_ADMIN"])
        self.create_user("basis", useradmin, ["OPEN_REMOTE_CONNECTIONS", "MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS"])
        self.create_user("keeper", useradmin, ["EDIT_MY_LOGIN_DATA"])
        for engineer in ("engineer", "unassigned"):
            self.create_user(engineer, admin, engineer=True)
        return self

    # systems, windows, incidents
    def new_line(self, code: str, parameters: dict[str, str], *, length: dt.timedelta = dt.timedelta(hours=2),
                 engineer: str | None = "engineer") -> Line:
        """A new system with a set-up of `code`, a window of it open from now for `length`, and an incident
        taken by `engineer` (None: nobody takes it)."""
        basis = md(self.tokens["basis"])
        system = self.conn.CreateSystem(cn.CreateSystemRequest(parent=f"customers/{self.customer}", system=cn.System(
            installation_number="20012345", system_id=next(_sids), system_number=str(next(_numbers)),
            description="relay e2e")), metadata=basis).system.name
        self.conn.SetUpConnection(cn.SetUpConnectionRequest(parent=system, connection_type=f"connectionTypes/{code}",
                                                            parameters=parameters), metadata=basis)
        end = now() + length
        window = self.conn.OpenConnection(cn.OpenConnectionRequest(
            parent=system, connection_type=f"connectionTypes/{code}", end_time=ts(end), reason="relay e2e"),
            metadata=basis).connection
        assert window.state == cn.CONNECTION_STATE_OPEN, window
        incident = self.conn.CreateIncident(cn.CreateIncidentRequest(parent=f"customers/{self.customer}",
                                                                     incident=cn.Incident(
            system=system, title="Dumps in billing", priority=cn.INCIDENT_PRIORITY_HIGH)), metadata=basis).incident
        if engineer:
            taken = self.conn.AssignProcessor(cn.AssignProcessorRequest(name=incident.name),
                                              metadata=md(self.tokens[engineer])).incident
            assert taken.status == cn.INCIDENT_STATUS_IN_PROCESS_AT_VENDOR, taken
        return Line(system, window.name, incident.name, end)

    def sessions(self, line: Line, principal: str = "basis") -> list[cn.Session]:
        return list(self.conn.ListSessions(cn.ListSessionsRequest(parent=line.system, connection=line.window),
                                           metadata=md(self.tokens[principal])).sessions)

    def session(self, name: str, principal: str = "basis") -> cn.Session:
        return self.conn.GetSession(cn.GetSessionRequest(name=name), metadata=md(self.tokens[principal])).session

    def wait_session(self, name: str, done, timeout: float, what: str) -> tuple[cn.Session, float]:
        """Poll GetSession until done(session); the session and how long it took."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            session = self.session(name)
            if done(session):
                return session, time.monotonic() - started
            if time.monotonic() > deadline:
                raise AssertionError(f"session {name} not {what} within {timeout:g}s: {session}")
            time.sleep(0.2)

    # rsctl
    def env(self, principal: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
                    "RSCTL_CONFIG_DIR": str(self.tmp / "rsctl-config"), "RSCTL_ADDRESS": self.suite.gateway,
                    "RSCTL_RELAY_ADDRESS": self.suite.supervisor.address("relay")})
        env.pop("RSCTL_TOKEN", None)
        if principal:
            env["RSCTL_TOKEN"] = self.tokens[principal]
        return env

    def rsctl(self, principal: str | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rsctl", *args], env=self.env(principal), capture_output=True,
                              text=True, timeout=timeout, cwd=self.tmp, stdin=subprocess.DEVNULL)

    def connector_file(self, line: Line) -> Path:
        """`rsctl connector get WINDOW -o FILE` as the customer: FILE (and FILE.pub)."""
        path = self.tmp / f"stfk-{line.window.rsplit('/', 1)[1]}.oez"
        result = self.rsctl("basis", "connector", "get", line.window, "-o", str(path))
        assert result.returncode == 0, result.stderr
        assert path.exists() and Path(f"{path}.pub").exists(), result.stdout
        return path

    def spawn(self, principal: str | None, label: str, *args: str) -> Proc:
        proc = Proc(list(args), self.env(principal), self.tmp / "procs", f"{next(self._labels):02d}-{label}")
        self.procs.append(proc)
        return proc

    def run_connector(self, path: Path, *, attached: int = 1, label: str = "connector") -> Proc:
        """`rsctl connector run FILE --public-key FILE.pub` (no token: the customer's network), attached to
        `attached` relays."""
        proc = self.spawn(None, label, "connector", "run", str(path), "--public-key", f"{path}.pub")
        if attached:
            proc.wait_for(r"attached to relay ", START_TIMEOUT_S, attached)
        return proc

    def run_tunnel(self, line: Line, principal: str = "engineer", *extra: str, relay: str | None = None) -> Tunnel:
        """`rsctl tunnel WINDOW --listen 127.0.0.1:PORT` as `principal`, listening."""
        port = free_ports(1)[0]
        args = ["tunnel", line.window, "--listen", f"127.0.0.1:{port}", *extra]
        if relay:
            args += ["--relay-address", relay]
        proc = self.spawn(principal, f"tunnel-{principal}", *args)
        proc.wait_for(rf"listening on 127\.0\.0\.1:{port}\b", START_TIMEOUT_S)
        return Tunnel(proc, port)

    def stop_procs(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs.clear()

    # depot
    def store_password(self, line: Line, user: str, secret: str, kind=dp.LOGON_DATA_KIND_SERVER_OS_USER) -> str:
        entry = self.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=line.system, secret=secret,
                                                                     logon_data=dp.LogonData(
            kind=kind, user_name=user, server="127.0.0.1", expire_time=ts(now() + dt.timedelta(days=7)),
            connection_type="connectionTypes/SSH")), metadata=md(self.tokens["keeper"])).logon_data
        return entry.name
