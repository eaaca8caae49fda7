"""Two replicas of every service on the same PostgreSQL databases behave as one.

The supervisor starts authz, connections, depot and the gateway twice each (replica 0 and replica 1), as
real processes; replica i of each service calls replica i of the others, so the test drives two complete
stacks that share only the databases (and the var/ directory with the service tokens and development keys).
Concurrent load goes through both gateways. Checked: no lost or duplicated writes, one winner per etag,
grants written on one authz replica decided at once by the other, one winner of two approvals of the same
pending grant on both replicas, a key rotation started on one replica used by the other, one automatic close
per connection window, one purge per expired logon-data entry, and VerifyLog and VerifyIdentityLog passing on
both replicas. Users are made as customers make them: the platform admin makes the first user administrator,
which makes the others; every user sets its password with the code the supervisor's mail sink received.
PostgreSQL only (RS_TEST_POSTGRES_URL)."""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import os
import time
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as apb
from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.depot.v1 import depot_pb2_grpc
from services.kit.clock import UTC
from services.kit.mailsink import read_messages
from services.kit.supervisor import ORDER, Supervisor
from services.kit.validate import to_timestamp
from tests.conftest import require_backend
from tests.e2e.conftest import free_ports
from tests.harness import TEST_PASSWORD, Databases, code_in, email_of

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
SWEEP_S = 0.3
EVERYTHING = ("MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS", "EDIT_ALL_LOGIN_DATA")
_numbers = iter(range(int(time.time()) % 100000 * 1000, 10**10))


class Cluster:
    """Two replicas of each service as processes, on fresh PostgreSQL databases."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.var = tmp / "var"
        self.databases = Databases("postgres", tmp)
        env = dict(os.environ)
        env.update({"RS_VAR_DIR": str(self.var), "RS_AUTHZ_KDF_LOG2_N": "12", "PYTHONPATH": str(ROOT),
                    "RS_TLS": "0", "RS_DEPOT_SWEEP_INTERVAL_S": str(SWEEP_S),
                    "RS_CONNECTIONS_SWEEP_INTERVAL_S": str(SWEEP_S),
                    # correctness under concurrency is checked here, not latency: generous deadlines keep a
                    # busy 2-core CI machine from turning slow answers into refusals
                    "RS_AUTHZ_DEADLINE_S": "15", "RS_CALL_DEADLINE_S": "30"})
        for service in ("authz", "connections", "depot"):
            env[f"RS_{service.upper()}_DATABASE_URL"] = self.databases.new(service)
        ports = free_ports(2 * len(ORDER))
        self.supervisor = Supervisor(env=env, ports=dict(zip(ORDER, ports[:len(ORDER)])),
                                     replica_ports={s: [p] for s, p in zip(ORDER, ports[len(ORDER):])},
                                     log_dir=tmp / "logs")

    def address(self, service: str, replica: int) -> str:
        return self.supervisor.replica_address(service, replica)

    def log_lines(self, service: str) -> list[dict]:
        out = []
        for name in (f"{service}.log", f"{service}#1.log"):
            path = self.tmp / "logs" / name
            for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
                if line.startswith("{"):
                    out.append(json.loads(line))
        return out

    def stop(self) -> None:
        self.supervisor.stop()
        self.databases.drop_all()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_backend("postgres")
    running = Cluster(tmp_path_factory.mktemp("replicas"))
    try:
        running.supervisor.start(timeout=90, parallel=True)
        assert sorted(running.supervisor.processes) == sorted([*ORDER, *(f"{s}#1" for s in ORDER), "mail"])
        yield running
    finally:
        running.stop()


class Stack:
    """What a client sees through one gateway replica (pass-through stubs), plus direct authz access."""

    def __init__(self, cluster: Cluster, replica: int) -> None:
        self.gateway = grpc.aio.insecure_channel(cluster.address("gateway", replica))
        self.authz_channel = grpc.aio.insecure_channel(cluster.address("authz", replica))
        self.authz = authz_pb2_grpc.AuthzServiceStub(self.gateway)
        self.depot = depot_pb2_grpc.LogonDepotServiceStub(self.gateway)
        self.connections = connections_pb2_grpc.ConnectionsServiceStub(self.gateway)
        self.authz_direct = authz_pb2_grpc.AuthzServiceStub(self.authz_channel)

    async def close(self) -> None:
        await self.gateway.close()
        await self.authz_channel.close()


class World:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stacks = [Stack(cluster, 0), Stack(cluster, 1)]
        self.admin = (cluster.var / "admin.token").read_text().strip()
        self.depot_token = (cluster.var / "secrets" / "depot.token").read_text().strip()
        self.customer = ""
        self.token = ""
        self.user = ""
        self.system = ""
        self.systems: list[str] = []
        self.admins: dict[str, list[tuple[str, str]]] = {}  # customer -> its user administrators (name, token)

    @staticmethod
    def md(token: str):
        return (("authorization", f"Bearer {token}"),)

    def stack(self, i: int) -> Stack:
        return self.stacks[i % 2]

    async def new_customer(self, via: int = 0) -> str:
        """A customer and its first user administrator, made by the platform admin."""
        number, user_id = str(next(_numbers)), f"S{next(_numbers):010d}"
        authz = self.stack(via).authz
        await authz.CreateCustomer(apb.CreateCustomerRequest(customer=apb.Customer(
            customer_number=number, display_name=f"Customer {number}")), metadata=self.md(self.admin))
        await self.create_user(user_id, number, self.admin, via)
        await authz.GrantAuthorization(apb.GrantAuthorizationRequest(
            user=f"users/{user_id}", authorization=apb.AUTHORIZATION_USER_ADMIN), metadata=self.md(self.admin))
        self.admins[number] = [(f"users/{user_id}", await self.enroll(user_id, via + 1))]
        return number

    async def create_user(self, user_id: str, customer: str, by: str, via: int) -> None:
        await self.stack(via).authz.CreateUser(apb.CreateUserRequest(user=apb.User(
            user_id=user_id, kind=apb.PRINCIPAL_KIND_CUSTOMER_USER, customer=f"customers/{customer}",
            display_name=f"User {user_id}", email=email_of(user_id))), metadata=self.md(by))

    async def enroll(self, user_id: str, via: int) -> str:
        """The user sets its password with the code mailed to it (through replica `via`) and logs in."""
        code = code_in(read_messages(self.cluster.supervisor.mail_dir, email_of(user_id)))
        authz = self.stack(via).authz
        await authz.SetPassword(apb.SetPasswordRequest(user_id=user_id, code=code, new_password=TEST_PASSWORD))
        return (await authz.Login(apb.LoginRequest(user_id=user_id, password=TEST_PASSWORD))).access_token

    async def new_user(self, customer: str, grants=(), via: int = 0) -> tuple[str, str]:
        """A user made by the customer's first user administrator through replica `via`, with `grants` (approved
        through the other replica by another user administrator where four eyes apply), enrolled there."""
        user_id, (_, by) = f"S{next(_numbers):010d}", self.admins[customer][0]
        await self.create_user(user_id, customer, by, via)
        for name in grants:
            authorization = apb.Authorization.Value(f"AUTHORIZATION_{name}")
            grant = (await self.stack(via).authz.GrantAuthorization(apb.GrantAuthorizationRequest(
                user=f"users/{user_id}", authorization=authorization), metadata=self.md(by))).grant
            if grant.state == apb.GRANT_STATE_PENDING_APPROVAL:
                approver = next(t for n, t in self.admins[customer] if n not in (grant.user, grant.granted_by))
                await self.stack(via + 1).authz.ApproveAuthorization(apb.ApproveAuthorizationRequest(
                    user=grant.user, authorization=authorization), metadata=self.md(approver))
        token = await self.enroll(user_id, via + 1)
        if "USER_ADMIN" in grants:
            self.admins[customer].append((f"users/{user_id}", token))
        return f"users/{user_id}", token

    async def new_system(self, via: int = 0) -> str:
        number = str(next(_numbers))
        sid = f"R{len(self.systems):02d}"
        self.systems.append(sid)
        response = await self.stack(via).connections.CreateSystem(cpb.CreateSystemRequest(
            parent=f"customers/{self.customer}", system=cpb.System(
                installation_number="20012345", system_id=sid, system_number=number, description="replicas")),
            metadata=self.md(self.token))
        return response.system.name

    async def create_entry(self, i: int, *, expire: dt.datetime | None = None, system: str | None = None,
                           secret: str | None = None) -> dpb.LogonData:
        expire = expire or dt.datetime.now(UTC) + dt.timedelta(days=3)
        response = await self.stack(i).depot.CreateLogonData(dpb.CreateLogonDataRequest(
            parent=system or self.system, secret=secret or f"Secret-{i:03d}!", logon_data=dpb.LogonData(
                kind=dpb.LOGON_DATA_KIND_SYSTEM_USER, user_name=f"U{i:03d}", client="001",
                expire_time=to_timestamp(expire))), metadata=self.md(self.token))
        return response.logon_data

    async def entries(self, via: int, system: str | None = None) -> list[dpb.LogonData]:
        out, token = [], ""
        while True:
            page = await self.stack(via).depot.ListLogonData(dpb.ListLogonDataRequest(
                parent=system or self.system, page_size=100, page_token=token), metadata=self.md(self.token))
            out.extend(page.logon_data)
            token = page.next_page_token
            if not token:
                return out

    async def events(self, via: int) -> list[dpb.LogEvent]:
        out, token = [], ""
        while True:
            page = await self.stack(via).depot.ListLogEvents(dpb.ListLogEventsRequest(
                parent=f"customers/{self.customer}", page_size=500, page_token=token), metadata=self.md(self.token))
            out.extend(page.events)
            token = page.next_page_token
            if not token:
                return out

    async def verify_log(self) -> None:
        for stack in self.stacks:
            verdict = await stack.depot.VerifyLog(dpb.VerifyLogRequest(parent=f"customers/{self.customer}"),
                                                  metadata=self.md(self.token))
            assert verdict.valid, verdict.problem


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(cluster):
    w = World(cluster)
    try:
        w.customer = await w.new_customer(via=1)
        w.user, w.token = await w.new_user(w.customer, EVERYTHING, via=0)
        w.system = await w.new_system(via=1)
        yield w
    finally:
        for stack in w.stacks:
            await stack.close()


CONCURRENCY = 8


async def bounded(*calls, limit: int = CONCURRENCY) -> list:
    """Run the calls concurrently, at most `limit` at a time (both replicas get load, the machine keeps up)."""
    gate = asyncio.Semaphore(limit)

    async def one(call):
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def outcomes(*calls) -> list[grpc.StatusCode]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    out = []
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            out.append(result.code())
        elif isinstance(result, BaseException):
            raise result
        else:
            out.append(grpc.StatusCode.OK)
    return out


async def eventually(probe, timeout: float = 20.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


# --- authz ----------------------------------------------------------------------------------------------
async def test_grants_written_on_one_authz_replica_are_decided_at_once_by_the_other(world):
    user, token = await world.new_user(world.customer, (), via=1)
    resource = apb.ResourceAttributes(customer=f"customers/{world.customer}")

    async def allowed(replica: int) -> bool:
        response = await world.stack(replica).authz_direct.Check(apb.CheckRequest(
            subject_token=token, permission="connections.systems.write", resource=resource),
            metadata=world.md(world.depot_token))
        return response.allowed

    grant = apb.GrantAuthorizationRequest(user=user, authorization=apb.AUTHORIZATION_MAINTAIN_SYSTEM_DATA)
    revoke = apb.RevokeAuthorizationRequest(user=user, authorization=apb.AUTHORIZATION_MAINTAIN_SYSTEM_DATA)
    user_admin = world.md(world.admins[world.customer][0][1])
    for round_ in range(6):
        writer, reader = round_ % 2, (round_ + 1) % 2
        assert not await allowed(reader)
        await world.stack(writer).authz_direct.GrantAuthorization(grant, metadata=user_admin)
        assert await allowed(reader), f"round {round_}: a grant on replica {writer} is not seen by {reader}"
        await world.stack(reader).authz_direct.RevokeAuthorization(revoke, metadata=user_admin)
        assert not await allowed(writer), f"round {round_}: a revoke on replica {reader} is not seen by {writer}"
    # a logout on one replica ends the token on the other
    await world.stack(0).authz.Logout(apb.LogoutRequest(), metadata=world.md(token))
    response = await world.stack(1).authz_direct.Check(apb.CheckRequest(
        subject_token=token, permission="connections.types.read"), metadata=world.md(world.depot_token))
    assert not response.authenticated


async def test_two_approvals_of_one_pending_grant_on_both_replicas_let_exactly_one_win(world):
    """Three user administrators: the first requests EDIT_ALL_LOGIN_DATA for a user, the other two approve it
    at the same moment, one on each authz replica: one approval puts it in effect, the other finds nothing
    pending; both replicas' identity logs verify."""
    customer = await world.new_customer(via=0)
    (_, second), (_, third) = [await world.new_user(customer, ["USER_ADMIN"], via=i) for i in (0, 1)]
    first = world.admins[customer][0][1]
    for round_ in range(4):
        user, _ = await world.new_user(customer, (), via=round_)
        request = await world.stack(round_).authz_direct.GrantAuthorization(apb.GrantAuthorizationRequest(
            user=user, authorization=apb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=world.md(first))
        assert request.grant.state == apb.GRANT_STATE_PENDING_APPROVAL
        approve = apb.ApproveAuthorizationRequest(user=user, authorization=apb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA)
        codes = await outcomes(*(world.stack(i).authz_direct.ApproveAuthorization(approve, metadata=world.md(t))
                                 for i, t in ((0, second), (1, third))))
        assert sorted(c.name for c in codes) == ["NOT_FOUND", "OK"], (round_, codes)
        listed = await world.stack(round_ + 1).authz_direct.ListAuthorizations(apb.ListAuthorizationsRequest(
            user=user), metadata=world.md(first))
        assert [(g.authorization, g.state) for g in listed.grants] == [
            (apb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA, apb.GRANT_STATE_ACTIVE)], round_
    events = []
    for stack in world.stacks:
        verdict = await stack.authz_direct.VerifyIdentityLog(apb.VerifyIdentityLogRequest(
            parent=f"customers/{customer}"), metadata=world.md(first))
        assert verdict.valid, verdict.problem
        page = await stack.authz_direct.ListIdentityEvents(apb.ListIdentityEventsRequest(
            parent=f"customers/{customer}", page_size=1000), metadata=world.md(first))
        events.append([(e.sequence, e.action, e.hash) for e in page.events])
    assert events[0] == events[1]
    assert sum(action == "GRANT_APPROVED" for _, action, _ in events[0]) == 4 + 1  # and the third's USER_ADMIN


# --- depot ----------------------------------------------------------------------------------------------
async def test_concurrent_creates_through_both_replicas_are_neither_lost_nor_duplicated(world):
    system = await world.new_system(via=0)
    created = await bounded(*(world.create_entry(i, system=system) for i in range(40)))
    assert len({e.name for e in created}) == 40
    for via in (0, 1):
        listed = await world.entries(via, system)
        assert sorted(e.user_name for e in listed) == [f"U{i:03d}" for i in range(40)]
        assert {e.name for e in listed} == {e.name for e in created}
    creates = [e for e in await world.events(1) if e.action == dpb.LOG_ACTION_CREATE and e.system == system]
    assert sorted(e.logon_data for e in creates) == sorted(e.name for e in created)
    await world.verify_log()


async def test_concurrent_updates_with_the_same_etag_let_exactly_one_win(world):
    system = await world.new_system(via=1)
    entries = await bounded(*(world.create_entry(i, system=system) for i in range(12)))
    for entry in entries:
        calls = []
        for via in (0, 1):
            request = dpb.UpdateLogonDataRequest(
                logon_data=dpb.LogonData(name=entry.name, notes=f"written via replica {via}", etag=entry.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["notes"]))
            calls.append(world.stack(via).depot.UpdateLogonData(request, metadata=world.md(world.token)))
        codes = await outcomes(*calls)
        assert sorted(c.name for c in codes) == ["ABORTED", "OK"], f"{entry.name}: {codes} (a lost update)"
        winner = codes.index(grpc.StatusCode.OK)
        current = await world.stack(1 - winner).depot.GetLogonData(dpb.GetLogonDataRequest(name=entry.name),
                                                                   metadata=world.md(world.token))
        assert current.logon_data.notes == f"written via replica {winner}"
    await world.verify_log()


async def test_a_key_rotation_on_one_replica_is_used_by_the_other(world):
    system = await world.new_system(via=0)
    before = await bounded(*(world.create_entry(i, system=system) for i in range(20)))
    status = await world.stack(1).depot.GetKeyStatus(dpb.GetKeyStatusRequest(), metadata=world.md(world.admin))
    rotated = await world.stack(0).depot.RotateKey(dpb.RotateKeyRequest(), metadata=world.md(world.admin))
    assert rotated.key.version == status.active_version + 1
    seen = await world.stack(1).depot.GetKeyStatus(dpb.GetKeyStatusRequest(), metadata=world.md(world.admin))
    assert seen.active_version == rotated.key.version
    fresh = await world.create_entry(100, system=system)  # through replica 0
    fresh_1 = await world.create_entry(101, system=system)  # through replica 1
    assert fresh.key_version == fresh_1.key_version == rotated.key.version
    # while both replicas re-wrap, customers overwrite secrets through both: no overwrite may be undone
    overwrites = [world.stack(i).depot.UpdateLogonData(dpb.UpdateLogonDataRequest(
        logon_data=dpb.LogonData(name=e.name), update_mask=field_mask_pb2.FieldMask(paths=["secret"]),
        secret=f"Rotated-{i:03d}!"), metadata=world.md(world.token)) for i, e in enumerate(before)]
    await bounded(*overwrites)

    async def rewrapped():
        now = await world.stack(1).depot.GetKeyStatus(dpb.GetKeyStatusRequest(), metadata=world.md(world.admin))
        return all(v.entry_count == 0 for v in now.versions if v.version < rotated.key.version)

    assert await eventually(rewrapped), "re-wrapping did not finish"
    for i, entry in enumerate(before):
        revealed = await world.stack(i + 1).depot.RevealLogonData(dpb.RevealLogonDataRequest(name=entry.name),
                                                                  metadata=world.md(world.token))
        assert revealed.secret == f"Rotated-{i:03d}!", f"{entry.name}: an overwrite was undone by re-wrapping"
    await world.verify_log()


async def test_the_expiry_sweeps_of_both_replicas_purge_each_entry_once(world):
    system = await world.new_system(via=1)
    expire = dt.datetime.now(UTC) + dt.timedelta(seconds=8)
    entries = await bounded(*(world.create_entry(i, system=system, expire=expire) for i in range(60)))
    assert dt.datetime.now(UTC) < expire, "creating the entries took longer than their lifetime"
    names = {e.name for e in entries}
    await asyncio.sleep(max(0.0, (expire - dt.datetime.now(UTC)).total_seconds()))

    async def all_purged():
        purged = {e.logon_data for e in await world.events(0) if e.action == dpb.LOG_ACTION_PURGE}
        return names <= purged

    assert await eventually(all_purged), "the sweeps did not purge every expired entry"
    await asyncio.sleep(6 * SWEEP_S)  # a few more sweeps of both replicas: nothing may be purged twice
    events = [e for e in await world.events(1) if e.logon_data in names]
    purges = collections.Counter(e.logon_data for e in events if e.action == dpb.LOG_ACTION_PURGE)
    expiries = collections.Counter(e.logon_data for e in events if e.action == dpb.LOG_ACTION_EXPIRE)
    assert set(purges) == names and set(purges.values()) == {1}, \
        f"purged more than once: {[n for n, c in purges.items() if c > 1]}"
    assert set(expiries) == names and set(expiries.values()) == {1}, \
        f"expiry logged more than once: {[n for n, c in expiries.items() if c > 1]}"
    assert await world.entries(0, system) == []
    swept = sum(line.get("msg", "").startswith("expiry sweep deleted") for line in world.cluster.log_lines("depot"))
    assert swept >= 1
    await world.verify_log()


# --- connections ----------------------------------------------------------------------------------------
async def test_the_auto_close_sweeps_of_both_replicas_close_each_window_once(world):
    system = await world.new_system(via=0)
    await world.stack(1).connections.SetUpConnection(cpb.SetUpConnectionRequest(
        parent=system, connection_type="connectionTypes/SSH", parameters={"host": "replicas.example.com"}),
        metadata=world.md(world.token))
    slot = dt.timedelta(milliseconds=200)
    opened, previous_end = [], dt.datetime.now(UTC)
    for i in range(20):
        # consecutive, non-overlapping time frames starting soon; both replicas ask for the same one
        start = max(previous_end, dt.datetime.now(UTC) + dt.timedelta(seconds=1))
        previous_end = start + slot
        request = cpb.OpenConnectionRequest(parent=system, connection_type="connectionTypes/SSH",
                                            start_time=to_timestamp(start), end_time=to_timestamp(start + slot),
                                            reason=f"slot {i}")
        calls = [world.stack(via).connections.OpenConnection(request, metadata=world.md(world.token))
                 for via in (0, 1)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(won) == 1 and len(lost) == 1, f"slot {i}: {results}"
        assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION
        opened.append(won[0].connection.name)

    async def all_closed():
        response = await world.stack(0).connections.ListConnections(cpb.ListConnectionsRequest(
            parent=system, page_size=100), metadata=world.md(world.token))
        return len(response.connections) == 20 and all(c.HasField("close_time") for c in response.connections)

    assert await eventually(all_closed), "the sweeps did not record every window's end"
    await asyncio.sleep(6 * SWEEP_S)
    closes = collections.Counter(line.get("connection") for line in world.cluster.log_lines("connections")
                                 if line.get("msg") == "connection expired")
    assert {name: closes[name] for name in opened} == {name: 1 for name in opened}
    by_replica = [sum(1 for line in _lines(world.cluster, name) if line.get("msg") == "connection expired"
                      and line.get("connection") in opened) for name in ("connections.log", "connections#1.log")]
    assert sum(by_replica) == 20
    for via in (0, 1):
        response = await world.stack(via).connections.ListConnections(cpb.ListConnectionsRequest(
            parent=system, page_size=100), metadata=world.md(world.token))
        for window in response.connections:
            assert window.state == cpb.CONNECTION_STATE_EXPIRED and not window.closer
            assert window.close_time == window.end_time


def _lines(cluster: Cluster, file_name: str) -> list[dict]:
    path = cluster.tmp / "logs" / file_name
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")] if path.exists() \
        else []


async def test_the_log_verifies_on_both_replicas_after_everything(world):
    await world.verify_log()
    events = await world.events(0)
    assert len(events) > 200
    assert [e.name for e in events] == [e.name for e in await world.events(1)]
    assert len({e.name for e in events}) == len(events)
    for previous, event in zip(events, events[1:]):
        assert event.previous_hash == previous.hash
