"""Our side: the four processes started by the same Supervisor as `make run` (free ports, a temporary var/,
SQLite, its mail sink writing to var/mail/), the benchmark's data created through the services' own RPCs as a
customer makes it (the platform admin creates the customer and its first user administrator, who creates the
benchmark's user and grants its authorizations; each user sets its password with the one-time code mailed to
it), and, for the scale scenarios, rows bulk-inserted straight into a service's SQLite database with SQLAlchemy
(setup, never the measured path)."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import grpc
from google.protobuf import timestamp_pb2
from sqlalchemy import create_engine, event, func, select, text

from bench import stats
from bench.peers import free_port, wait_port
from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2, connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2, depot_pb2_grpc
from services.kit.mailsink import read_messages
from services.kit.supervisor import ORDER, Supervisor, wait_serving

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench horse battery staple"
UTC = dt.timezone.utc
CODE = re.compile(r"one-time code: ([A-Z2-7]{5}(?:-[A-Z2-7]{5}){3})")  # services/authz/mails.py's code mail


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


@dataclass
class Fixture:
    """What the scenarios act on, created through the services' RPCs."""

    admin_token: str
    depot_service_token: str
    customer: str                 # customer number
    user: str                     # users/S...  (EDIT_MY_LOGIN_DATA + MAINTAIN_SYSTEM_DATA)
    token: str
    installation: str
    system: str                   # customers/{c}/systems/{n}: the reveal/create system
    entries: list[str] = field(default_factory=list)
    list_system: str = ""         # the system whose page is listed (1,000 then 1,000,000 entries)
    sweep_system: str = ""
    log_customer: str = ""        # a second customer whose log gets the 1,000,000 events
    log_user: str = ""
    log_token: str = ""


class OurSuite:
    """authz, connections, depot and gateway as four processes."""

    def __init__(self, workdir: Path, services=ORDER) -> None:
        self.workdir = workdir
        self.var = workdir / "var"
        self.services = tuple(services)
        # the supervisor's own mail sink (the set-up reads the users' one-time codes from it), never another server
        env = {k: v for k, v in os.environ.items() if k not in ("RS_SMTP_HOST", "RS_SMTP_PORT")}
        env.update({"RS_VAR_DIR": str(self.var), "RS_AUTHZ_KDF_LOG2_N": "12",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
                    "RS_DEPOT_SWEEP_INTERVAL_S": "3600",
                    # as in production by default (make run turns them on): a bench measures the calls alone
                    "RS_EVENT_MAILS": env.get("RS_EVENT_MAILS", "0")})
        ports = {s: free_port() for s in ORDER}
        self.supervisor = Supervisor(env=env, ports=ports, log_dir=workdir / "logs")

    def start(self) -> None:
        self.supervisor.start(self.services, timeout=120)

    def stop(self) -> None:
        self.supervisor.stop()

    def address(self, service: str) -> str:
        return self.supervisor.address(service)

    def pid(self, service: str) -> int:
        return self.supervisor.processes[service].pid

    def pids(self, *services: str) -> dict[str, int]:
        return {s: self.pid(s) for s in services}

    def rss(self) -> dict[str, float]:
        return {s: stats.rss_mib(p.pid) for s, p in self.supervisor.processes.items()}

    def db_path(self, service: str) -> Path:
        return self.var / f"{service}.db"

    def restart(self, service: str, **env: str) -> float:
        """Stop one service and start it again (with extra environment); returns seconds until SERVING."""
        self.supervisor.stop(service)
        self.supervisor.env.update(env)
        started = time.perf_counter()
        self.supervisor.start([service], timeout=300)
        return time.perf_counter() - started

    def popen_restart(self, service: str, **env: str) -> subprocess.Popen:
        """Stop one service and start it again without waiting (the caller watches what it does at start)."""
        self.supervisor.stop(service)
        self.supervisor.env.update(env)
        environment = self.supervisor.environment()
        out = open(self.workdir / "logs" / f"{service}.log", "ab")
        from services.kit.supervisor import MODULES
        process = subprocess.Popen([sys.executable, "-m", MODULES[service]], env=environment, stdout=out, stderr=out)
        self.supervisor.processes[service] = process
        return process

    def wait_serving(self, service: str, timeout: float = 300) -> None:
        wait_serving(self.address(service), timeout, self.supervisor.processes[service])

    # --- data through the RPCs --------------------------------------------------------------------------
    async def setup(self, entries: int = 100) -> Fixture:
        channels = {s: grpc.aio.insecure_channel(self.address(s)) for s in ("authz", "connections", "depot")}
        try:
            authz = authz_pb2_grpc.AuthzServiceStub(channels["authz"])
            conns = connections_pb2_grpc.ConnectionsServiceStub(channels["connections"])
            depot = depot_pb2_grpc.LogonDepotServiceStub(channels["depot"])
            admin = (self.var / "admin.token").read_text().strip()
            depot_token = (self.var / "secrets" / "depot.token").read_text().strip()
            base = 7_000_000_000 + secrets.randbelow(900_000_000)
            customer = str(base)
            people = People(authz, admin, self.supervisor.mail_dir)
            user, token = await people.customer_with_user(customer, f"S{base:010d}", f"S{base + 2:010d}",
                                                          ["EDIT_MY_LOGIN_DATA", "MAINTAIN_SYSTEM_DATA"])
            installation = "20012345"
            systems = []
            for i, sid in enumerate(("PRD", "QAS", "DEV")):
                response = await conns.CreateSystem(connections_pb2.CreateSystemRequest(
                    parent=f"customers/{customer}", system=connections_pb2.System(
                        installation_number=installation, system_id=sid, system_number=f"{base}{i}",
                        description=f"bench system {sid}")), metadata=md(token))
                systems.append(response.system.name)
            fixture = Fixture(admin, depot_token, customer, user, token, installation, systems[0],
                              list_system=systems[1], sweep_system=systems[2])
            for i in range(entries):
                created = await create_entry(depot, token, fixture.system, i)
                fixture.entries.append(created.logon_data.name)
            # one real entry in each of the other systems: the template of the bulk-inserted rows
            await create_entry(depot, token, fixture.list_system, 0)
            await create_entry(depot, token, fixture.sweep_system, 0)
            log_customer = str(base + 1)
            log_user, log_token = await people.customer_with_user(log_customer, f"S{base + 1:010d}",
                                                                  f"S{base + 3:010d}", ["EDIT_MY_LOGIN_DATA"])
            fixture.log_customer, fixture.log_user, fixture.log_token = log_customer, log_user, log_token
            return fixture
        finally:
            for channel in channels.values():
                await channel.close()


def email_of(user_id: str) -> str:
    return f"{user_id.lower()}@bench.example.com"


class People:
    """Customers and their users through authz's RPCs, as a customer makes them; the one-time codes are read from
    the mail sink's folder."""

    def __init__(self, authz, admin_token: str, mail_dir: Path) -> None:
        self.authz, self.admin, self.mail_dir = authz, admin_token, mail_dir

    async def create_user(self, user_id: str, customer: str, display_name: str, by: str) -> None:
        await self.authz.CreateUser(authz_pb2.CreateUserRequest(user=authz_pb2.User(
            user_id=user_id, kind=authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER, customer=f"customers/{customer}",
            display_name=display_name, email=email_of(user_id))), metadata=md(by))

    async def grant(self, user_id: str, name: str, by: str) -> None:
        await self.authz.GrantAuthorization(authz_pb2.GrantAuthorizationRequest(
            user=f"users/{user_id}", authorization=authz_pb2.Authorization.Value(f"AUTHORIZATION_{name}")),
            metadata=md(by))

    def code_for(self, user_id: str) -> str:
        for message in reversed(read_messages(self.mail_dir, email_of(user_id))):
            found = CODE.search(message.get_content())
            if found:
                return found.group(1)
        raise RuntimeError(f"no one-time code was mailed to {email_of(user_id)} (in {self.mail_dir})")

    async def enroll(self, user_id: str) -> str:
        """Set the user's password with its mailed code and log in: its token."""
        await self.authz.SetPassword(authz_pb2.SetPasswordRequest(user_id=user_id, code=self.code_for(user_id),
                                                                  new_password=PASSWORD))
        return (await self.authz.Login(authz_pb2.LoginRequest(user_id=user_id, password=PASSWORD))).access_token

    async def customer_with_user(self, customer: str, user_id: str, admin_id: str,
                                 grants: list[str]) -> tuple[str, str]:
        """A customer, its first user administrator `admin_id` (by the platform admin) and `user_id` with
        `grants` (by that administrator; none of them waits for four eyes): the user's name and token."""
        await self.authz.CreateCustomer(authz_pb2.CreateCustomerRequest(customer=authz_pb2.Customer(
            customer_number=customer, display_name=f"Bench customer {customer}")), metadata=md(self.admin))
        await self.create_user(admin_id, customer, "Bench user administrator", self.admin)
        await self.grant(admin_id, "USER_ADMIN", self.admin)
        user_admin = await self.enroll(admin_id)
        await self.create_user(user_id, customer, "Bench user", user_admin)
        for name in grants:
            await self.grant(user_id, name, user_admin)
        return f"users/{user_id}", await self.enroll(user_id)


def entry_request(parent: str, i: int) -> depot_pb2.CreateLogonDataRequest:
    expire = dt.datetime.now(UTC) + dt.timedelta(days=30)
    return depot_pb2.CreateLogonDataRequest(parent=parent, secret=f"pw-{i:06d}-{secrets.token_hex(6)}",
                                            logon_data=depot_pb2.LogonData(
                                                kind=depot_pb2.LOGON_DATA_KIND_SYSTEM_USER, user_name=f"BENCH{i:05d}",
                                                client="001", server="10.0.0.1", notes="benchmark entry",
                                                expire_time=ts(expire)))


async def create_entry(depot, token: str, parent: str, i: int):
    return await depot.CreateLogonData(entry_request(parent, i), metadata=md(token))


# --- bulk rows (setup of the scale scenarios) ---------------------------------------------------------------
def _engine(path: Path):
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()

    return engine


BATCH = 20_000


def checkpoint(engine) -> tuple[int, int, int]:
    """Fold the WAL back into the database file after a bulk insert, so the measured reads do not pay for a
    WAL of hundreds of MiB that only the setup wrote. Returns SQLite's (busy, log pages, checkpointed)."""
    with engine.connect() as conn:
        return tuple(conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one())


def bulk_entries(db: Path, system: str, count: int, *, expire_time: dt.datetime | None = None,
                 progress=None) -> float:
    """Insert `count` copies of the system's template entry (new ids; secrets left as the template's
    ciphertext, which would not decrypt under another id - listing and sweeping never decrypt). Returns seconds."""
    from services.depot.tables import EntryRow
    customer, number = system.split("/")[1], system.split("/")[3]
    table = EntryRow.__table__
    engine = _engine(db)
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            template = conn.execute(select(table).where(table.c.customer == customer, table.c.system_number == number)
                                    .order_by(table.c.pk).limit(1)).mappings().one()
        base = dict(template)
        base.pop("pk")
        if expire_time is not None:
            base["expire_time"] = expire_time
        done = 0
        while done < count:
            n = min(BATCH, count - done)
            rows = []
            for i in range(done, done + n):
                row = dict(base)
                row["entry_id"] = uuid.uuid4().hex
                row["user_name"] = f"BULK{i:07d}"
                row["etag"] = uuid.uuid4().hex[:16]
                rows.append(row)
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
            done += n
            if progress:
                progress(done, count)
        checkpoint(engine)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def count_entries(db: Path, system: str, expired_before: dt.datetime | None = None) -> int:
    from services.depot.tables import EntryRow
    customer, number = system.split("/")[1], system.split("/")[3]
    table = EntryRow.__table__
    engine = _engine(db)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(table).where(table.c.customer == customer,
                                                                  table.c.system_number == number)
            if expired_before is not None:
                query = query.where(table.c.expire_time <= expired_before)
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


def delete_expired(db: Path, system: str, expired_before: dt.datetime) -> int:
    """Remove what a timed-out sweep left (setup of the next scenario, not a measured path)."""
    from services.depot.tables import EntryRow
    customer, number = system.split("/")[1], system.split("/")[3]
    table = EntryRow.__table__
    engine = _engine(db)
    try:
        with engine.begin() as conn:
            return conn.execute(table.delete().where(table.c.customer == customer, table.c.system_number == number,
                                                     table.c.expire_time <= expired_before)).rowcount
    finally:
        engine.dispose()


def bulk_log_events(db: Path, customer: str, count: int, progress=None) -> float:
    """Append `count` correctly chained events to a customer's (empty) log, and its head, sealed with the
    depot's (dev) master key beside the database. Returns seconds."""
    from services.depot import barrier, chain, masterkeyfile
    from services.depot.tables import LogEventRow, LogHeadRow
    sealer = barrier.LogSealer(masterkeyfile.load_master_key(db.parent / "secrets" / "depot-master.key",
                                                             profile=masterkeyfile.PROFILE_DEV,
                                                             create_if_missing=False))
    table, heads = LogEventRow.__table__, LogHeadRow.__table__
    engine = _engine(db)
    started = time.perf_counter()
    start_time = dt.datetime.now(UTC) - dt.timedelta(days=365)
    previous = chain.GENESIS
    try:
        with engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(table).where(table.c.customer == customer)).scalar_one():
                raise RuntimeError(f"customer {customer} has a log already; bulk events need an empty one")
        done = 0
        while done < count:
            n = min(BATCH, count - done)
            rows = []
            for seq in range(done + 1, done + n + 1):
                ev = SimpleNamespace(
                    customer=customer, sequence=seq, action="REVEAL", outcome="SUCCESS",
                    actor=f"users/S{customer}", system=f"customers/{customer}/systems/1",
                    logon_data=f"customers/{customer}/systems/1/logonData/{seq:032x}", incident="",
                    detail="reason: benchmark", event_time=start_time + dt.timedelta(milliseconds=seq),
                    request_id=f"{seq:032x}", previous_hash=previous, hash="")
                ev.hash = chain.link(previous, ev)
                previous = ev.hash
                rows.append(vars(ev))
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
            done += n
            if progress:
                progress(done, count)
        with engine.begin() as conn:
            conn.execute(heads.insert(), [{"customer": customer, "last_sequence": count, "last_hash": previous,
                                           "seal": sealer.seal(customer, count, previous)}])
        checkpoint(engine)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def bulk_principals(db: Path, customer: str, count: int, progress=None) -> float:
    """Add `count` customer users to authz (each with a grant and a live token), as if they had logged in."""
    from services.authz.tables import GrantRow, PrincipalRow, TokenRow
    engine = _engine(db)
    now = dt.datetime.now(UTC)
    started = time.perf_counter()
    try:
        done = 0
        while done < count:
            n = min(BATCH, count - done)
            principals, tokens, grants = [], [], []
            for i in range(done, done + n):
                user_id = f"B{i:010d}"
                principals.append({"user_id": user_id, "kind": "CUSTOMER_USER", "customer": customer,
                                   "display_name": f"Bulk user {i}", "email": "", "disabled": False,
                                   "password_hash": None, "created_at": now, "updated_at": now})
                tokens.append({"token_hash": hashlib.sha256(f"bulk-token-{i}-{uuid.uuid4().hex}".encode()).hexdigest(),
                               "user_id": user_id, "expires_at": now + dt.timedelta(hours=12), "revoked": False,
                               "created_at": now})
                grants.append({"user_id": user_id, "authorization": "EDIT_MY_LOGIN_DATA", "customer": customer,
                               "installations": "", "granted_by": "users/admin", "granted_at": now})
            with engine.begin() as conn:
                conn.execute(PrincipalRow.__table__.insert(), principals)
                conn.execute(TokenRow.__table__.insert(), tokens)
                conn.execute(GrantRow.__table__.insert(), grants)
            done += n
            if progress:
                progress(done, count)
        checkpoint(engine)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def count_principals(db: Path) -> int:
    from services.authz.tables import PrincipalRow
    engine = _engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(PrincipalRow.__table__)).scalar_one()
    finally:
        engine.dispose()


# --- the probes (floor and chain) ---------------------------------------------------------------------------
@dataclass
class Probe:
    name: str
    process: subprocess.Popen
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_probe(name: str, workdir: Path, *, next_address: str = "", bare: bool = False) -> Probe:
    port = free_port()
    env = dict(os.environ, BENCH_PROBE_PORT=str(port), BENCH_PROBE_NEXT=next_address,
               BENCH_PROBE_BARE="1" if bare else "0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])))
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    out = open(workdir / "logs" / f"probe-{name}.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "bench.probe"], env=env, stdout=out, stderr=out)
    if bare:
        wait_port(port, 60, process)
    else:
        wait_serving(f"127.0.0.1:{port}", 60, process)
    return Probe(name, process, port)


def sqlite_size_mib(path: Path) -> float:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total / 2**20


__all__ = ["OurSuite", "Fixture", "md", "text"]
