"""authz's decision path (services.authz.decisions, its statement in services.authz.store): one statement per
decision, read on the event-loop thread for SQLite files in WAL mode and through the async engine otherwise — and
either way every committed write (revocation, expiry, disable, grant, revoke, assignment end, a write by another
process) decides the very next decision. On SQLite and on PostgreSQL."""
from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url

from services.authz import assignments, grants, policy, sessions, store, users
from services.authz.decisions import DecisionService
from services.authz.kdf import KdfPool
from services.authz.passwords import token_hash
from services.authz.server import MIGRATIONS
from services.authz.store import LocalSqliteReader, Store
from services.authz.tables import TokenRow
from services.kit import permissions as P
from services.kit.auth import Resource
from services.kit.clock import UTC, ManualClock
from services.kit.db import Database, migrate
from services.kit.localsqlite import LocalUnavailable
from services.kit.mail import Mailer, SmtpSettings
from services.kit.mailsink import Sink
from services.kit.principals import CUSTOMER_USER, PLATFORM_ADMIN, SUPPORT_ENGINEER
from tests.harness import Databases, email_of

CUSTOMER, USER, ENGINEER, USER_ADMIN = "1000000001", "S0000000001", "eng-one", "S0000000009"
PLATFORM, ADMINISTRATOR = users.Actor("admin", PLATFORM_ADMIN), users.Actor(USER_ADMIN, CUSTOMER_USER)
CODE_TTL = dt.timedelta(days=1)
SYSTEM = f"customers/{CUSTOMER}/systems/1"
INCIDENT = f"customers/{CUSTOMER}/incidents/1"
OWN_ENTRY = Resource(customer=f"customers/{CUSTOMER}", installation="1", system=SYSTEM, owner=f"users/{USER}")


class World:
    """authz's store on a fresh database: a customer, its user administrator (made by the platform admin), a
    customer user holding EDIT_MY (and MAINTAIN for installation 1) granted by that administrator, an engineer;
    enrollment codes go to a real SMTP sink."""

    def __init__(self, db: Database, clock: ManualClock, url: str, mail_dir: Path) -> None:
        self.db, self.clock, self.url = db, clock, url
        self.store = Store(db)
        self.decisions = DecisionService(self.store, clock)
        self.kdf = KdfPool(log2_n=4, workers=1, queue=0)
        self.sink = Sink(mail_dir)
        self.mailer = Mailer(SmtpSettings(port=self.sink.port))
        self.user_token = self.engineer_token = ""

    async def create_user(self, user_id: str, kind: str, customer: str, by: users.Actor) -> None:
        await users.create_user(self.store, self.clock, self.mailer, CODE_TTL, by, user_id=user_id, kind=kind,
                                customer=customer, display_name=user_id, email=email_of(user_id),
                                initial_password="")

    async def grant(self, authorization: str, installations: list[str], user_id: str = USER,
                    by: users.Actor = ADMINISTRATOR) -> None:
        await grants.grant(self.store, self.clock, self.mailer, by, user_id, authorization, installations)

    async def set_disabled(self, disabled: bool) -> None:
        await users.update_user(self.store, self.clock, ADMINISTRATOR, USER, ["disabled"], display_name="", email="",
                                disabled=disabled, new_password="", caller_is_self_only=False, kdf=self.kdf)

    async def setup(self) -> "World":
        st, clock = self.store, self.clock
        self.sink.start()
        await users.create_customer(st, clock, PLATFORM, CUSTOMER, "c")
        await self.create_user(USER_ADMIN, CUSTOMER_USER, CUSTOMER, PLATFORM)
        await self.grant(policy.USER_ADMIN, [], USER_ADMIN, PLATFORM)
        await self.create_user(USER, CUSTOMER_USER, CUSTOMER, ADMINISTRATOR)
        await self.create_user(ENGINEER, SUPPORT_ENGINEER, "", PLATFORM)
        await self.grant(policy.EDIT_MY, [])
        await self.grant(policy.MAINTAIN, ["1"])
        self.user_token, _ = await sessions.mint_token(st, clock, USER, dt.timedelta(hours=1))
        self.engineer_token, _ = await sessions.mint_token(st, clock, ENGINEER, dt.timedelta(hours=1))
        return self

    async def close(self) -> None:
        self.kdf.close()
        await self.store.close()
        self.sink.stop()

    async def allowed(self, token: str, permission: str = P.LOGON_REVEAL, resource: Resource = OWN_ENTRY) -> bool:
        return (await self.decisions.check(token, permission, resource)).allowed


def _database(backend: str, tmp_path: Path, label: str = "authz") -> tuple[Database, Databases, str]:
    databases = Databases(backend, tmp_path)
    url = databases.new(label)
    migrate(url, MIGRATIONS)
    return Database(url), databases, url


@pytest.fixture
async def world(backend, tmp_path):
    db, databases, url = _database(backend, tmp_path)
    w = World(db, ManualClock(dt.datetime(2030, 1, 1, tzinfo=UTC)), url, tmp_path / "mail")
    try:
        yield await w.setup()
    finally:
        await w.close()
        databases.drop_all()


async def test_sqlite_files_are_read_locally_and_postgres_through_the_engine(world, backend):
    assert (world.store.local is not None) == (backend == "sqlite")
    assert await world.allowed(world.user_token)
    if backend == "sqlite":
        assert getattr(world.store.local._local, "conn", None) is not None, "the local read answered"


async def test_every_committed_write_decides_the_next_decision(world):
    w = world
    assert await w.allowed(w.user_token)
    await grants.revoke(w.store, w.clock, ADMINISTRATOR, USER, policy.EDIT_MY)  # grant revoked
    assert not await w.allowed(w.user_token)
    await w.grant(policy.EDIT_MY, [])  # granted again
    assert await w.allowed(w.user_token)
    await w.set_disabled(True)  # user disabled
    decision = await w.decisions.check(w.user_token, P.LOGON_REVEAL, OWN_ENTRY)
    assert not decision.allowed and not decision.authenticated
    await w.set_disabled(False)
    assert await w.allowed(w.user_token)
    await sessions.logout(w.store, w.user_token)  # token revoked
    assert not (await w.decisions.check(w.user_token, P.LOGON_REVEAL, OWN_ENTRY)).authenticated


async def test_a_token_stops_at_its_expiry_instant(world):
    w = world
    token, expires = await sessions.mint_token(w.store, w.clock, USER, dt.timedelta(minutes=5))
    w.clock.set(expires - dt.timedelta(microseconds=1))
    assert await w.allowed(token)
    w.clock.set(expires)
    assert not (await w.decisions.check(token, P.LOGON_REVEAL, OWN_ENTRY)).authenticated


async def test_assignments_are_read_when_the_permission_needs_them_and_end_at_once(world):
    w = world
    reveal = Resource(customer=f"customers/{CUSTOMER}", system=SYSTEM)
    assert not await w.allowed(w.engineer_token, P.LOGON_REVEAL, reveal)
    await assignments.set_assignment(w.store, w.clock, INCIDENT, ENGINEER, SYSTEM, CUSTOMER)
    decision = await w.decisions.check(w.engineer_token, P.LOGON_REVEAL, reveal)
    assert decision.allowed and decision.incidents == (INCIDENT,)
    assert await w.allowed(w.engineer_token, P.INCIDENTS_READ, Resource(customer=f"customers/{CUSTOMER}"))
    await assignments.delete_assignment(w.store, INCIDENT)  # the incident left the vendor
    assert not await w.allowed(w.engineer_token, P.LOGON_REVEAL, reveal)


async def test_bulk_decisions_share_one_read_and_keep_their_order(world):
    w = world
    other_customer = Resource(customer="customers/1000000002", owner=f"users/{USER}")
    out = await w.decisions.check_bulk(w.user_token, [
        (P.LOGON_REVEAL, OWN_ENTRY), (P.LOGON_REVEAL, other_customer), (P.SYSTEMS_WRITE, OWN_ENTRY),
        (P.SYSTEMS_WRITE, Resource(customer=f"customers/{CUSTOMER}", installation="2")),
        (P.SYSTEMS_READ, OWN_ENTRY)])
    assert [d.allowed for d in out] == [True, False, True, False, True]
    assert len({d.decision_id for d in out}) == 5
    assert [d.authenticated for d in await w.decisions.check_bulk("", [(P.SESSION, Resource())] * 2)] == [False] * 2


async def test_decisions_read_together_get_the_rows_of_their_own_statements(world):
    """Under load the engine reads waiting decisions in one statement (services.authz.overload): each gets the
    rows its own statement would have read - with or without assignments, one token or a pair, unknown tokens
    none."""
    w = world
    await assignments.set_assignment(w.store, w.clock, INCIDENT, ENGINEER, SYSTEM, CUSTOMER)
    user, engineer = token_hash(w.user_token), token_hash(w.engineer_token)
    keys = [(False, user, None), (True, engineer, None), (False, engineer, None), (True, user, engineer),
            (False, engineer, user), (False, user, user), (True, "unknown", None)]
    together = await w.store._engine_decision_rows(keys)
    async with w.store._autocommit.connect() as conn:
        for with_assignments, hashed, hashed2 in keys:
            hashes = "one" if hashed2 is None else "pair"
            params = {"h": hashed} if hashed2 is None else {"h": hashed, "h2": hashed2}
            alone = (await conn.execute(store.decision_statement(with_assignments, hashes), params)).all()
            assert sorted(map(tuple, alone), key=repr) == sorted(together[(with_assignments, hashed, hashed2)],
                                                                 key=repr), (with_assignments, hashed, hashed2)
    assert together[(True, engineer, None)] != together[(False, engineer, None)]  # the assignment row
    assert together[(True, "unknown", None)] == []


async def test_a_write_by_another_process_is_seen_at_once(backend, tmp_path):
    if backend != "sqlite":
        pytest.skip("another process writing the same SQLite file")
    db, databases, url = _database(backend, tmp_path)
    w = World(db, ManualClock(dt.datetime(2030, 1, 1, tzinfo=UTC)), url, tmp_path / "mail")
    try:
        await w.setup()
        assert await w.allowed(w.user_token)
        path = make_url(url).database
        script = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                  "c.execute('UPDATE tokens SET revoked = 1'); c.commit(); c.close()")
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script, path], check=True)
        assert not (await w.decisions.check(w.user_token, P.LOGON_REVEAL, OWN_ENTRY)).authenticated
    finally:
        await w.close()


async def test_the_local_connection_cannot_write(world, backend):
    if backend != "sqlite":
        pytest.skip("SQLite only")
    w = world
    assert await w.allowed(w.user_token)
    conn = w.store.local._local.conn
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("UPDATE tokens SET revoked = 1")
    assert await w.allowed(w.user_token)
    assert not conn.in_transaction, "no read transaction stays open between decisions"


async def test_a_file_in_rollback_mode_is_put_in_wal_mode_as_the_engine_does_and_memory_is_not_read_locally(
        tmp_path):
    path = tmp_path / "rollback.db"
    migrate(f"sqlite:///{path}", MIGRATIONS)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode=DELETE").fetchall() == [("delete",)]
    reader = LocalSqliteReader(str(path))
    assert reader.rows(False, "no such hash") == [] and reader.usable
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    reader.close()
    assert LocalSqliteReader.for_database(Database("sqlite:///:memory:")) is None


async def test_a_failed_local_read_falls_back_to_the_engine(world, backend):
    if backend != "sqlite":
        pytest.skip("SQLite only")
    w = world

    class Broken:
        def execute(self, *_a, **_k):
            raise sqlite3.OperationalError("database is locked")

        def close(self):
            return None

    local = w.store.local
    assert await w.allowed(w.user_token)
    local._local.conn = Broken()
    assert await w.allowed(w.user_token)  # answered by the engine
    assert local._local.conn is None
    with pytest.raises(LocalUnavailable):  # the engine answers for a while
        local.rows(False, "x")
    local._resume_at = 0.0
    assert await w.allowed(w.user_token) and local._local.conn is not None, "then the local read resumes"
    async with w.db.unit_of_work() as session:
        await session.execute(update(TokenRow).values(revoked=True))
    local._local.conn = Broken()
    assert not await w.allowed(w.user_token)


def test_the_statement_is_one_indexed_lookup_per_table():
    from sqlalchemy import create_engine

    from services.authz.tables import Base
    from services.kit.localsqlite import compile_sql
    conn = sqlite3.connect(":memory:")
    Base.metadata.create_all(create_engine("sqlite://", creator=lambda: conn))
    for flag in (False, True):
        text = compile_sql(store.decision_statement(flag))
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + text, {"h": "x"}))
        assert "SCAN" not in plan, plan
