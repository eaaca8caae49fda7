"""The depot's SQLite hot path (the store's LocalTx over services.kit.localsqlite): on a SQLite file the reveal
reads the entry on a query-only connection and appends its REVEAL event on a local writer, under the Store's
write lock; on PostgreSQL, and whenever the local connection raises LocalUnavailable, the engine does the same
work (the same unit of work, over EngineTx). Either way: the same secret, one REVEAL event, one unbroken chain."""
from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time

import grpc
import pytest

from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import access, audit, convert, masterkeyfile, reveal
from services.depot.keyring import KeyService
from services.depot.store import Store
from services.kit import names
from services.kit.errors import NotFound
from services.kit import localsqlite
from tests.helpers import expect_error
from tests.integration.depot.world import SAPROUTER, World, app, entry_id, fresh_customer, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")

A = dp.LogAction


def store(world: World):
    return app(world.suite).depot.store


def sqlite_only(world: World) -> None:
    if world.suite.backend != "sqlite":
        pytest.skip("the local connection exists only on a SQLite file")


@pytest.fixture
def engine_writes(world, monkeypatch) -> list:
    """Every unit of work the depot's Store runs through its engine (Store.write_on_engine) during the test."""
    target = store(world)
    original = target.write_on_engine
    calls: list = []

    async def counted(work):
        calls.append(work)
        return await original(work)

    monkeypatch.setattr(target, "write_on_engine", counted)
    return calls


async def reveals_of(world: World, name: str) -> list[dp.LogEvent]:
    return [e for e in await world.events(logon_data=name) if e.action == A.LOG_ACTION_REVEAL]


async def verify(world: World) -> dp.VerifyLogResponse:
    return await world.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{world.customer}"),
                                       metadata=world.md("edit_all"))


def head_sequence(world: World) -> int:
    rows = sql(world.suite, "SELECT last_sequence FROM log_heads WHERE customer = :c", c=world.customer)
    return rows[0][0] if rows else 0


def event_count(world: World) -> int:
    return sql(world.suite, "SELECT COUNT(*) FROM log_events WHERE customer = :c", c=world.customer)[0][0]


def entry_pk(world: World, name: str) -> int:
    return sql(world.suite, "SELECT pk FROM logon_data WHERE entry_id = :id", id=entry_id(name))[0][0]


class BrokenWriter:
    """A writer connection on a failing disk: every statement raises."""

    in_transaction = False

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.closed = False

    def execute(self, statement, *_args):
        self.statements.append(statement)
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        self.closed = True


class FailsOnHeadUpdate:
    """A real writer connection that fails on the log head's upsert, after the event row was inserted in the
    same transaction: only the rollback keeps that row out of the file."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.failed = False
        self.closed = False

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, statement, *args):
        if "log_heads" in statement and statement.lstrip().upper().startswith("INSERT"):
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(statement, *args)

    def close(self) -> None:
        self.closed = True
        self.conn.close()


# --- (a) which path each backend takes --------------------------------------------------------------------
async def test_sqlite_reveals_on_the_local_writer_and_postgres_on_the_engine(world, engine_writes):
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="local-secret")
    depot_store = store(world)
    if world.suite.backend == "sqlite":
        assert isinstance(depot_store.local, localsqlite.LocalSqlite)
        depot_store.local.close()  # start from no writer connection at all
        assert depot_store.local._writer is None
    else:
        assert depot_store.local is None
    engine_writes.clear()  # the create's

    revealed = await w.reveal("creator", entry.name, reason="first look")

    assert (revealed.secret, revealed.name, revealed.user_name) == ("local-secret", entry.name, "SUPPORT1")
    [event] = await reveals_of(w, entry.name)
    assert revealed.log_event == event.name == f"customers/{w.customer}/logEvents/{event.sequence}"
    assert event.detail == "reason: first look" and event.actor == w.users["creator"]
    if world.suite.backend == "sqlite":
        assert isinstance(depot_store.local._writer, sqlite3.Connection)
        assert engine_writes == []  # found, decided, logged and decrypted without the engine writing
    else:
        assert len(engine_writes) == 1


async def test_the_local_find_sees_an_entry_as_the_engine_does(world):
    sqlite_only(world)
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="s", notes="side by side")
    depot = app(world.suite).depot
    parts = names.parse("logon_data", entry.name, "name")
    async with store(world).read() as tx:
        engine_row = await tx.entry_by_id(parts["logon_data"])
    local_row = await access.find(depot, parts)  # on the local connection (a SQLite file)
    assert local_row is not None and type(local_row) is not type(engine_row)
    for column in ("pk", "entry_id", "customer", "system_number", "user_name", "notes", "key_version", "etag",
                   "wrapped_data_key", "secret_ciphertext", "expiry_logged", "creator"):
        assert getattr(local_row, column) == getattr(engine_row, column), column
    assert local_row.expire_time.replace(tzinfo=None) == engine_row.expire_time.replace(tzinfo=None)
    other_system = names.parse("logon_data", entry.name.replace(w.system, f"{w.system}9"), "name")
    assert await access.find(depot, other_system) is None  # the customer and system must match as well
    assert await access.find(depot, {**parts, "logon_data": "nosuchentry"}) is None


# --- (b) local writes and engine writes make one chain --------------------------------------------------------
async def test_local_reveals_mixed_with_engine_writes_leave_a_valid_log_in_order(world, engine_writes):
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="first-secret")
    entry = await w.update("creator", entry, ["notes"], notes="before the reveal")
    assert (await w.reveal("creator", entry.name, reason="r1")).secret == "first-secret"
    await expect_error(w.reveal("other_edit_my", entry.name, reason="not mine"), grpc.StatusCode.PERMISSION_DENIED,
                       "PERMISSION_DENIED")
    assert (await w.reveal("edit_all", entry.name, reason="r2")).secret == "first-secret"
    entry = await w.update("other_edit_my", entry, ["secret"], secret="second-secret")
    router = await w.create("edit_all", kind=SAPROUTER, secret="router-secret")
    assert (await w.reveal("creator", entry.name, reason="r3")).secret == "second-secret"
    assert (await w.reveal("edit_all", router.name)).secret == "router-secret"

    events = await w.events()
    assert [(e.action, e.actor, e.detail if e.action == A.LOG_ACTION_REVEAL else "") for e in events] == [
        (A.LOG_ACTION_CREATE, w.users["creator"], ""),
        (A.LOG_ACTION_UPDATE, w.users["creator"], ""),
        (A.LOG_ACTION_REVEAL, w.users["creator"], "reason: r1"),
        (A.LOG_ACTION_REVEAL_DENIED, w.users["other_edit_my"], ""),
        (A.LOG_ACTION_REVEAL, w.users["edit_all"], "reason: r2"),
        (A.LOG_ACTION_SECRET_OVERWRITE, w.users["other_edit_my"], ""),
        (A.LOG_ACTION_CREATE, w.users["edit_all"], ""),
        (A.LOG_ACTION_REVEAL, w.users["creator"], "reason: r3"),
        (A.LOG_ACTION_REVEAL, w.users["edit_all"], ""),
    ]
    assert [e.sequence for e in events] == list(range(1, 10))
    assert events[0].previous_hash == "" and all(b.previous_hash == a.hash for a, b in zip(events, events[1:]))
    assert all(e.request_id for e in events)
    assert (await verify(w)) == dp.VerifyLogResponse(valid=True, events_checked=9,
                                                     head=dp.LogHead(sequence=9, hash=events[-1].hash))
    assert head_sequence(w) == 9
    # on SQLite the creates and reveals are local and the engine wrote the two updates and the refusal;
    # on PostgreSQL the engine wrote all nine
    assert len(engine_writes) == (3 if world.suite.backend == "sqlite" else 9)


async def test_concurrent_local_reveals_and_engine_writes_never_fork_the_chain(world):
    w = await fresh_customer(world)
    entries = [await w.create("creator", secret=f"s{i}") for i in range(4)]
    results = await asyncio.gather(
        *[w.reveal("creator", e.name, reason=f"round {n}") for n in range(3) for e in entries],
        *[w.create("edit_all", kind=SAPROUTER, secret=f"r{i}") for i in range(4)],
        *[w.update("creator", e, ["notes"], notes="concurrently") for e in entries])
    assert [r.secret for r in results[:12]] == [f"s{i}" for _ in range(3) for i in range(4)]
    events = await w.events()
    assert [e.sequence for e in events] == list(range(1, 4 + 12 + 4 + 4 + 1))
    assert sum(e.action == A.LOG_ACTION_REVEAL for e in events) == 12
    assert {r.log_event for r in results[:12]} == {e.name for e in events if e.action == A.LOG_ACTION_REVEAL}
    assert (await verify(w)) == dp.VerifyLogResponse(valid=True, events_checked=24,
                                                     head=dp.LogHead(sequence=24, hash=events[-1].hash))


# --- (c) a failing local writer: the engine does the work, once ------------------------------------------------
async def test_a_failing_local_writer_falls_back_to_the_engine_and_logs_the_reveal_once(world, engine_writes,
                                                                                      monkeypatch):
    sqlite_only(world)
    monkeypatch.setattr(localsqlite, "PAUSE_S", 60.0)  # the pause outlasts this test however slow the machine
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="fallback-secret")
    local = store(world).local
    before = len(await reveals_of(w, entry.name))
    broken = BrokenWriter()
    local._writer = broken
    engine_writes.clear()

    revealed = await w.reveal("creator", entry.name, reason="disk trouble")

    assert revealed.secret == "fallback-secret"
    assert broken.statements == ["BEGIN IMMEDIATE"] and broken.closed  # tried once, then closed
    assert local._writer is None and local._resume_at > time.monotonic()
    assert len(engine_writes) == 1  # the engine did the reveal's unit of work
    after = await reveals_of(w, entry.name)
    assert len(after) == before + 1 and after[-1].name == revealed.log_event
    assert after[-1].detail == "reason: disk trouble"

    # within the pause the engine keeps answering, even though the writer could reconnect
    assert (await w.reveal("creator", entry.name)).secret == "fallback-secret"
    assert len(engine_writes) == 2 and local._writer is None

    local._resume_at = 0.0  # the pause is over: the local path is used again
    again = await w.reveal("creator", entry.name, reason="disk fine")
    assert again.secret == "fallback-secret"
    assert len(engine_writes) == 2 and isinstance(local._writer, sqlite3.Connection)
    assert len(await reveals_of(w, entry.name)) == before + 3
    assert (await verify(w)).valid


async def test_a_local_writer_failing_mid_transaction_is_rolled_back_and_the_engine_logs_once(world, engine_writes):
    sqlite_only(world)
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="mid-secret")
    local = store(world).local
    local._resume_at = 0.0
    assert (await w.reveal("creator", entry.name)).secret == "mid-secret"  # opens a real writer
    assert isinstance(local._writer, sqlite3.Connection)
    flaky = local._writer = FailsOnHeadUpdate(local._writer)
    engine_writes.clear()
    sequence_before = head_sequence(w)

    revealed = await w.reveal("creator", entry.name, reason="half written")

    assert revealed.secret == "mid-secret" and flaky.failed and flaky.closed
    assert len(engine_writes) == 1
    events = await w.events()
    assert [e.sequence for e in events] == list(range(1, sequence_before + 2))  # one event, no gap, no twin
    assert events[-1].action == A.LOG_ACTION_REVEAL and events[-1].name == revealed.log_event
    assert events[-1].detail == "reason: half written"
    assert (await verify(w)) == dp.VerifyLogResponse(valid=True, events_checked=sequence_before + 1, head=dp.LogHead(
        sequence=sequence_before + 1, hash=events[-1].hash))
    local._resume_at = 0.0


# --- (d) the entry went between the find and the write --------------------------------------------------------
async def test_an_entry_gone_before_the_local_write_raises_not_found_and_writes_nothing(world):
    sqlite_only(world)
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="gone")
    depot_store = store(world)
    depot = app(world.suite).depot
    depot_store.local._resume_at = 0.0
    missing_pk = sql(w.suite, "SELECT COALESCE(MAX(pk), 0) + 1000 FROM logon_data")[0][0]
    head, count = head_sequence(w), event_count(w)
    asked: list[str] = []
    gone = NotFound("logon data was deleted meanwhile")

    def event_fn(row):
        asked.append("event")
        return audit.Event(audit.REVEAL, w.users["creator"])

    def reveal_of(pk, now):
        return depot_store.write(lambda tx: reveal.logged_secret(tx, depot, pk, now, event_fn, lambda: gone),
                                 local=True)

    now = w.suite.clock.now()
    with pytest.raises(NotFound) as raised:
        await reveal_of(missing_pk, now)
    assert raised.value is gone
    assert asked == [] and (head_sequence(w), event_count(w)) == (head, count)
    assert not depot_store.local._writer.in_transaction  # rolled back, and still usable
    assert depot_store.local._resume_at == 0.0  # a NotFound is no failure of the connection

    # the same entry, expired by the time of the write: NOT_FOUND as well, nothing written
    pk = entry_pk(w, entry.name)
    later = entry.expire_time.ToDatetime(dt.timezone.utc)
    with pytest.raises(NotFound):
        await reveal_of(pk, later)
    assert asked == [] and (head_sequence(w), event_count(w)) == (head, count)

    # and an existing, unexpired entry goes through the same call: event appended, secret opened
    revealed = await reveal_of(pk, now)
    row, secret, sequence = revealed.row, revealed.secret, int(revealed.log_event.rsplit("/", 1)[1])
    assert (secret, row.entry_id, sequence) == ("gone", entry_id(entry.name), head + 1)
    assert asked == ["event"] and head_sequence(w) == head + 1
    assert (await verify(w)).valid


# --- (e) expired entries ---------------------------------------------------------------------------------------
async def test_an_expired_entry_revealed_over_rpc_is_not_found_and_not_revealed(world):
    w = await fresh_customer(world)
    clock = w.suite.clock
    entry = await w.create("creator", expire_time=w.expire_in(seconds=30), secret="short-lived")
    expires = entry.expire_time.ToDatetime(dt.timezone.utc)
    clock.set(expires - dt.timedelta(microseconds=1))
    assert (await w.reveal("creator", entry.name)).secret == "short-lived"

    clock.set(expires)
    for principal in ("creator", "edit_all"):
        err = await expect_error(w.reveal(principal, entry.name, reason="too late"), grpc.StatusCode.NOT_FOUND,
                                 "NOT_FOUND")
        assert "short-lived" not in err.details()
    actions = [e.action for e in await w.events(logon_data=entry.name)]
    assert actions == [A.LOG_ACTION_CREATE, A.LOG_ACTION_REVEAL, A.LOG_ACTION_EXPIRE]  # EXPIRE once, no REVEAL
    assert (await verify(w)).valid


# --- CreateLogonData on the local writer ----------------------------------------------------------------------
async def encryptions_of(world: World, version: int) -> int:
    status = await world.depot.GetKeyStatus(dp.GetKeyStatusRequest(), metadata=world.md("platform_admin"))
    return {k.version: k.encryptions for k in status.versions}[version]


async def test_a_create_is_one_local_transaction_on_sqlite_and_an_engine_one_on_postgres(world, engine_writes):
    w = await fresh_customer(world)
    status = await world.depot.GetKeyStatus(dp.GetKeyStatusRequest(), metadata=world.md("platform_admin"))
    before = await encryptions_of(world, status.active_version)

    entry = await w.create("creator", secret="made-locally")

    assert len(engine_writes) == (0 if world.suite.backend == "sqlite" else 1)
    assert entry.key_version == status.active_version and entry.has_secret
    assert await encryptions_of(world, status.active_version) == before + 1, "the encryption was claimed"
    [(installation,)] = sql(world.suite, "SELECT installation FROM known_systems WHERE customer = :c",
                            c=w.customer)
    assert installation == entry.installation, "the system is remembered for authorization"
    [created] = [e for e in await w.events(logon_data=entry.name)]
    assert (created.action, created.actor) == (A.LOG_ACTION_CREATE, w.users["creator"])
    assert (await w.reveal("creator", entry.name)).secret == "made-locally"
    assert (await verify(w)).valid


async def test_a_worn_key_is_rotated_and_the_local_create_runs_again_on_the_new_one(world, engine_writes):
    w = await fresh_customer(world)
    settings = app(world.suite).settings
    active = (await world.depot.GetKeyStatus(dp.GetKeyStatusRequest(),
                                             metadata=world.md("platform_admin"))).active_version
    limit = settings.key_usage_limit
    settings.key_usage_limit = 1
    try:
        entry = await w.create("creator", secret="after-rotation")
    finally:
        settings.key_usage_limit = limit
    assert entry.key_version == active + 1
    # the rotation is an engine write; the create ran twice: locally on SQLite, on the engine on PostgreSQL
    assert len(engine_writes) == (1 if world.suite.backend == "sqlite" else 3)
    assert (await w.reveal("creator", entry.name)).secret == "after-rotation"
    assert [e.action for e in await w.events(logon_data=entry.name)][0] == A.LOG_ACTION_CREATE


async def test_a_ring_key_another_process_added_is_loaded_by_the_local_create(world, engine_writes):
    sqlite_only(world)
    w = await fresh_customer(world)
    depot = app(world.suite).depot
    master = masterkeyfile.load_master_key(depot.settings.master_key_file, profile="dev", create_if_missing=False)
    other_store = Store.open(world.suite.db_url["depot"])  # a second depot process on the same file
    try:
        other = KeyService(master, depot.settings)
        await other.load(other_store, w.suite.clock.now())
        added = await other.rotate(other_store, w.suite.clock.now())
    finally:
        await other_store.close()
    assert added.version not in depot.keys.ring  # this process has not seen it
    engine_writes.clear()

    entry = await w.create("creator", secret="on the new key")

    assert entry.key_version == added.version and engine_writes == []  # loaded and used on the local writer
    assert (await w.reveal("creator", entry.name)).secret == "on the new key"



# --- ListLogonData's page on the local connection ---------------------------------------------------------------
async def test_a_list_page_reads_on_the_local_connection_what_the_engine_reads(world):
    """The page's statement on the local connection (a SQLite file) returns the rows the engine's returns: the
    system's unexpired entries after the cursor, in creation order, of one kind when asked, at most `limit`."""
    sqlite_only(world)
    w = await fresh_customer(world)
    short = await w.create("creator", expire_time=w.expire_in(seconds=30), user_name="SHORT")
    kept = [await w.create("creator", user_name=f"USER{i}") for i in range(3)]
    router = await w.create("creator", kind=SAPROUTER)
    w.suite.clock.set(short.expire_time.ToDatetime(dt.timezone.utc))  # `short` expires now: never listed
    target, now = store(world), w.suite.clock.now()
    system = names.parse("system", w.system, "parent")
    router_kind = convert.kind_name(SAPROUTER)
    cases = [("", 0, 10), ("", 0, 2), ("", entry_pk(w, kept[0].name), 10), (router_kind, 0, 10),
             (router_kind, entry_pk(w, router.name), 10)]
    for kind, after, limit in cases:
        local_rows = await target.entries_page(system["customer"], system["system"], now, kind, after, limit)
        async with target.read() as tx:
            engine_rows = await tx.entries_page(system["customer"], system["system"], now, kind, after, limit)
        assert all(type(r) is not type(e) for r, e in zip(local_rows, engine_rows))  # read locally indeed
        assert [(r.pk, r.entry_id, r.kind, r.user_name, r.expire_time.replace(tzinfo=None)) for r in local_rows] == \
            [(r.pk, r.entry_id, r.kind, r.user_name, r.expire_time.replace(tzinfo=None)) for r in engine_rows], \
            (kind, after, limit)
    assert [len(await target.entries_page(system["customer"], system["system"], now, kind, after, limit))
            for kind, after, limit in cases] == [4, 2, 3, 1, 0]
    listed = await w.depot.ListLogonData(dp.ListLogonDataRequest(parent=w.system), metadata=w.md("edit_all"))
    assert [e.name for e in listed.logon_data] == [e.name for e in kept] + [router.name]


async def test_the_known_installation_is_read_on_the_local_connection_as_the_engine_reads_it(world, monkeypatch):
    sqlite_only(world)
    w = await fresh_customer(world)
    await w.create("creator")
    target = store(world)
    system = names.parse("system", w.system, "parent")
    async with target.read() as tx:
        engine = await tx.known_installation(system["customer"], system["system"])
    assert engine  # the create confirmed the system's installation
    engine_reads = []
    monkeypatch.setattr(target, "read", lambda: engine_reads.append(1))  # any engine read fails the test
    assert await target.known_installation(system["customer"], system["system"]) == engine
    assert await target.known_installation(system["customer"], system["system"] + "9") == ""
    assert engine_reads == []
