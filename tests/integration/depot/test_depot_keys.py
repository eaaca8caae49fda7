"""The barrier at work in the running depot: tampered and moved ciphertexts, key rotation with entries on two
ring key versions and re-wrapping, the master key's start-up rules, a reveal that cannot be logged, and a
planted secret that must appear nowhere in plaintext."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

import grpc
import pytest
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import audit, barrier
from services.depot.masterkeyfile import load_at_start, load_master_key
from services.depot.settings import DepotSettings
from tests.helpers import expect_error
from tests.integration.depot.world import SAPROUTER, World, app, entry_id, restart_depot, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")

DATA_LOSS = grpc.StatusCode.DATA_LOSS


def stored(world: World, name: str) -> dict:
    [row] = sql(world.suite, "SELECT key_version, wrapped_data_key, secret_ciphertext, unreadable FROM logon_data "
                             "WHERE entry_id = :id", id=entry_id(name))
    return dict(row._mapping)


def store_columns(world: World, name: str, **columns) -> None:
    assignments = ", ".join(f"{c} = :{c}" for c in columns)
    sql(world.suite, f"UPDATE logon_data SET {assignments} WHERE entry_id = :id", id=entry_id(name), **columns)


def flip(blob: bytes, index: int) -> bytes:
    data = bytearray(blob)
    data[index] ^= 0x01
    return bytes(data)


async def key_status(world: World) -> dp.GetKeyStatusResponse:
    return await world.depot.GetKeyStatus(dp.GetKeyStatusRequest(), metadata=world.md("platform_admin"))


async def assert_data_loss_logged(world: World, name: str, principal: str = "edit_all") -> None:
    before = [e.name for e in await world.events(logon_data=name)]
    err = await expect_error(world.reveal(principal, name), DATA_LOSS, "DATA_LOSS")
    assert "failed authentication" in err.details()
    new = [e for e in await world.events(logon_data=name) if e.name not in before]
    assert [(e.action, e.outcome, e.actor) for e in new] == [
        (dp.LOG_ACTION_DECRYPT_FAILED, dp.LOG_OUTCOME_FAILED, world.users[principal])]  # and no REVEAL


# --- tampering ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("column, index", [("secret_ciphertext", -1), ("secret_ciphertext", 5),
                                           ("wrapped_data_key", 20), ("secret_ciphertext", 0)])
async def test_a_flipped_byte_is_data_loss_and_logged(world, column, index):
    entry = await world.create("creator", secret="flip-me")
    store_columns(world, entry.name, **{column: flip(stored(world, entry.name)[column], index)})
    await assert_data_loss_logged(world, entry.name)
    healed = await world.update("edit_all", await world.get("edit_all", entry.name), ["secret"], secret="fresh")
    assert healed.has_secret and (await world.reveal("creator", entry.name)).secret == "fresh"


async def test_a_ciphertext_moved_to_another_entry_is_data_loss(world):
    source = await world.create("creator", secret="source-secret")
    target = await world.create("creator", secret="target-secret")
    moved = stored(world, source.name)
    store_columns(world, target.name, key_version=moved["key_version"], wrapped_data_key=moved["wrapped_data_key"],
                  secret_ciphertext=moved["secret_ciphertext"])
    await assert_data_loss_logged(world, target.name, "creator")
    assert (await world.reveal("creator", source.name)).secret == "source-secret"
    other = await world.create("creator", system=world.other_system, secret="other-system")
    store_columns(world, other.name, key_version=moved["key_version"], wrapped_data_key=moved["wrapped_data_key"],
                  secret_ciphertext=moved["secret_ciphertext"])
    await assert_data_loss_logged(world, other.name, "creator")
    for damaged in (target, other):  # a damaged entry can still be deleted
        await world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=damaged.name), metadata=world.md("creator"))


async def test_an_unknown_key_version_is_data_loss(world):
    entry = await world.create("creator")
    store_columns(world, entry.name, key_version=999)
    await assert_data_loss_logged(world, entry.name)
    await world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name), metadata=world.md("creator"))


# --- rotation -----------------------------------------------------------------------------------------------
def versions_in_db(world: World) -> dict[int, int]:
    return {v: n for v, n in sql(world.suite, "SELECT key_version, COUNT(*) FROM logon_data GROUP BY key_version")}


async def test_rotation_with_entries_on_two_key_versions(world):
    old_active = (await key_status(world)).active_version
    on_old = [await world.create("creator", secret=f"old-{i}") for i in range(3)]
    rotated = (await world.depot.RotateKey(dp.RotateKeyRequest(), metadata=world.md("platform_admin"))).key
    assert (rotated.version, rotated.state, rotated.entry_count) == (old_active + 1, dp.KEY_STATE_ACTIVE, 0)
    on_new = [await world.create("creator", kind=SAPROUTER, secret=f"new-{i}") for i in range(2)]
    assert {e.key_version for e in on_old} == {old_active} and {e.key_version for e in on_new} == {rotated.version}

    status = await key_status(world)
    by_version = {v.version: v for v in status.versions}
    counts = versions_in_db(world)
    assert status.active_version == rotated.version and status.master_key_id
    assert by_version[rotated.version].entry_count == 2 and by_version[rotated.version].encryptions == 2
    assert by_version[old_active].state == dp.KEY_STATE_DECRYPT_ONLY
    assert by_version[old_active].entry_count == counts[old_active]
    for i, entry in enumerate(on_old):
        assert (await world.reveal("creator", entry.name)).secret == f"old-{i}"
    for i, entry in enumerate(on_new):
        assert (await world.reveal("creator", entry.name)).secret == f"new-{i}"

    # re-wrap in batches of two, with one damaged entry left behind where it is
    damaged = await world.create("creator", secret="damaged")
    assert damaged.key_version == rotated.version
    store_columns(world, damaged.name, key_version=old_active)  # now fails authentication under either key
    app(world.suite).settings.rewrap_batch = 2
    try:
        assert await app(world.suite).rewrap_once() == 2
        partly = {v.version: v.entry_count for v in (await key_status(world)).versions}
        assert partly[old_active] == counts[old_active] + 1 - 2
        while await app(world.suite).rewrap_once():
            pass
    finally:
        app(world.suite).settings.rewrap_batch = 200
    status = await key_status(world)
    by_version = {v.version: v for v in status.versions}
    assert by_version[old_active].entry_count == 1 and by_version[old_active].state == dp.KEY_STATE_DECRYPT_ONLY
    assert stored(world, damaged.name)["unreadable"]
    [event] = [e for e in await world.events(logon_data=damaged.name) if e.action == dp.LOG_ACTION_DECRYPT_FAILED]
    assert event.actor == "services/depot" and "key rotation" in event.detail
    for i, entry in enumerate(on_old):
        assert (await world.get("creator", entry.name)).key_version == rotated.version
        assert (await world.reveal("creator", entry.name)).secret == f"old-{i}"

    # overwriting the damaged entry's secret moves it too; the old key then protects nothing
    await world.update("creator", await world.get("creator", damaged.name), ["secret"], secret="repaired")
    by_version = {v.version: v for v in (await key_status(world)).versions}
    assert by_version[old_active].entry_count == 0 and by_version[old_active].state == dp.KEY_STATE_RETIRED
    assert await app(world.suite).rewrap_once() == 0


async def test_background_rewrap_starts_on_rotation(world):
    entry = await world.create("creator", secret="bg-secret")
    await restart_depot(world.suite, background=True, sweep_interval_s=3600)
    try:
        new = (await world.depot.RotateKey(dp.RotateKeyRequest(), metadata=world.md("platform_admin"))).key.version
        for _ in range(200):
            if (await world.get("creator", entry.name)).key_version == new:
                break
            await __import__("asyncio").sleep(0.02)
        assert (await world.get("creator", entry.name)).key_version == new
    finally:
        await restart_depot(world.suite)
    assert (await world.reveal("creator", entry.name)).secret == "bg-secret"


async def test_only_the_platform_admin_manages_keys(world):
    for principal in ("edit_all", "creator", "assigned_engineer", "other_customer"):
        await expect_error(world.depot.RotateKey(dp.RotateKeyRequest(), metadata=world.md(principal)),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
        await expect_error(world.depot.GetKeyStatus(dp.GetKeyStatusRequest(), metadata=world.md(principal)),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_automatic_rotation_at_the_usage_limit(world):
    active = (await key_status(world)).active_version
    app(world.suite).settings.key_usage_limit = 1
    try:
        entry = await world.create("creator", secret="limit")
    finally:
        app(world.suite).settings.key_usage_limit = barrier.DEFAULT_USAGE_LIMIT
    assert entry.key_version == active + 1


async def rewrap_to_the_end(world, depot, *, limit: int):
    """Re-wrap until nothing is left to move, with the ring keys' usage limit at `limit`; the key status then."""
    depot.settings.key_usage_limit = limit
    try:
        for _ in range(100):
            if not await depot.rewrap_once():
                break
        else:
            pytest.fail("re-wrapping never finished")
        return await key_status(world)
    finally:
        depot.settings.key_usage_limit = barrier.DEFAULT_USAGE_LIMIT


async def test_rewrapping_never_takes_a_ring_key_past_its_usage_limit(world):
    """More entries on the rotated-away key than the usage limit: the re-wrap moves only as many as the active key
    has room for, rotates it when worn (as a write does) and goes on, so it finishes with every ring key within
    the limit and every entry readable."""
    depot = app(world.suite)
    on_old = [await world.create("creator", secret=f"limited-{i}") for i in range(12)]
    assert len({entry.key_version for entry in on_old}) == 1
    rotated = (await world.depot.RotateKey(dp.RotateKeyRequest(), metadata=world.md("platform_admin"))).key.version
    status = await rewrap_to_the_end(world, depot, limit=5)
    made = {v.version: v.encryptions for v in status.versions if v.version >= rotated}
    assert len(made) >= 3 and max(made.values()) <= 5, made  # twelve entries need three keys of five
    for i, entry in enumerate(on_old):
        assert (await world.get("creator", entry.name)).key_version in made
        assert (await world.reveal("creator", entry.name)).secret == f"limited-{i}"
    assert await depot.rewrap_once() == 0  # the keys filled by the re-wrap keep their entries


async def test_writes_that_take_the_room_while_a_batch_is_resealed_send_the_batch_to_a_new_key(world, monkeypatch):
    """Re-wrapping reads the active key's room without locking its row, so writes never wait for a batch (on
    PostgreSQL a locked row would hold the writes below until the batch commits): when they take that room
    meanwhile, the batch's claim refuses, nothing of the batch is kept, the key is rotated as worn and the batch
    moves onto the next key, and no key goes past its limit."""
    depot = app(world.suite)
    on_old = [await world.create("creator", secret=f"raced-{i}") for i in range(3)]
    rotated = (await world.depot.RotateKey(dp.RotateKeyRequest(), metadata=world.md("platform_admin"))).key.version
    limit = 1000
    real_reseal, raced = depot.depot.keys.reseal, []

    async def reseal_while_writes_take_the_room(tx, row, to_version):
        if not raced:  # other transactions' writes claim all but one encryption of the active key's room
            raced.append(to_version)
            await asyncio.wait_for(asyncio.to_thread(
                sql, world.suite, "UPDATE ring_keys SET encryptions = :used WHERE version = :version",
                used=limit - 1, version=to_version), timeout=10)  # a write waiting for the batch would time out
        return await real_reseal(tx, row, to_version)

    monkeypatch.setattr(depot.depot.keys, "reseal", reseal_while_writes_take_the_room)
    status = await rewrap_to_the_end(world, depot, limit=limit)
    made = {v.version: v.encryptions for v in status.versions if v.version >= rotated}
    assert raced == [rotated] and made[rotated] == limit - 1, made  # the refused batch counted nothing
    assert rotated + 1 in made and max(made.values()) <= limit, made
    for i, entry in enumerate(on_old):
        assert (await world.get("creator", entry.name)).key_version == rotated + 1
        assert (await world.reveal("creator", entry.name)).secret == f"raced-{i}"


# --- the master key -----------------------------------------------------------------------------------------
async def test_the_ring_survives_a_restart_with_the_same_master_key(world):
    entry = await world.create("creator", secret="survives")
    key_id = (await key_status(world)).master_key_id
    await restart_depot(world.suite)
    assert (await key_status(world)).master_key_id == key_id
    assert (await world.reveal("creator", entry.name)).secret == "survives"


async def start_refused(suite, **changes) -> str:
    """Start the depot with changed settings; return the SystemExit message, then start it normally again."""
    base = DepotSettings.from_env(suite.config("depot"))
    await suite.stop_service("depot")
    try:
        with pytest.raises(SystemExit) as refused:
            await suite.start_service("depot", settings=dataclasses.replace(base, background=False, **changes))
    finally:
        await suite.start_service("depot", settings=dataclasses.replace(base, background=False))
    return str(refused.value)


async def test_start_is_refused_with_another_master_key(world, tmp_path):
    other = tmp_path / "other.key"
    load_master_key(other, profile="dev", create_if_missing=True)
    message = await start_refused(world.suite, master_key_file=other)
    assert "cannot open ring key version 1" in message


async def test_production_refuses_the_dev_key_and_never_generates_one(world, tmp_path):
    base = DepotSettings.from_env(world.suite.config("depot"))
    assert "DEV key" in await start_refused(world.suite, profile="production")
    missing = tmp_path / "mounted" / "master.key"
    assert "not found" in await start_refused(world.suite, profile="production", master_key_file=missing)
    assert not missing.exists()
    assert base.master_key_file.read_bytes().startswith(b"rsdev1:")
    assert oct(base.master_key_file.stat().st_mode & 0o777) == "0o600"


async def test_generating_the_dev_key_warns_loudly(tmp_path, caplog, capsys):
    settings = DepotSettings(master_key_file=tmp_path / "secrets" / "depot-master.key")
    with caplog.at_level(logging.WARNING):
        key = load_at_start(settings.master_key_file, settings.profile)
    assert key.generated and "GENERATED A DEV MASTER KEY" in caplog.text
    assert "never in production" in capsys.readouterr().err
    again = load_at_start(settings.master_key_file, settings.profile)
    assert not again.generated and again.key_id == key.key_id


# --- the log is written first -------------------------------------------------------------------------------
def break_the_log(world: World) -> None:
    if world.suite.backend == "sqlite":
        sql(world.suite, "CREATE TRIGGER log_offline BEFORE INSERT ON log_events BEGIN "
                         "SELECT RAISE(ABORT, 'log storage offline'); END")
    else:
        sql(world.suite, "CREATE FUNCTION log_offline() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN RAISE EXCEPTION 'log storage offline'; END $$")
        sql(world.suite, "CREATE TRIGGER log_offline BEFORE INSERT ON log_events FOR EACH ROW "
                         "EXECUTE FUNCTION log_offline()")


def mend_the_log(world: World) -> None:
    if world.suite.backend == "sqlite":
        sql(world.suite, "DROP TRIGGER log_offline")
    else:
        sql(world.suite, "DROP TRIGGER log_offline ON log_events")
        sql(world.suite, "DROP FUNCTION log_offline()")


async def test_nothing_is_revealed_or_written_when_the_log_cannot_be_written(world):
    entry = await world.create("creator", secret="unlogged-secret")
    entries_before = len(await world.list("edit_all"))
    events_before = len(await world.events())
    break_the_log(world)
    try:
        err = await expect_error(world.reveal("creator", entry.name), grpc.StatusCode.UNAVAILABLE,
                                 "AUDIT_UNAVAILABLE")
        assert "unlogged-secret" not in err.details()
        await expect_error(world.reveal("other_edit_my", entry.name), grpc.StatusCode.UNAVAILABLE,
                           "AUDIT_UNAVAILABLE")  # a refusal that cannot be logged is still a refusal
        await expect_error(world.create("creator"), grpc.StatusCode.UNAVAILABLE, "AUDIT_UNAVAILABLE")
        await expect_error(world.update("creator", entry, ["notes", "secret"], notes="x", secret="y"),
                           grpc.StatusCode.UNAVAILABLE, "AUDIT_UNAVAILABLE")
    finally:
        mend_the_log(world)
    assert len(await world.list("edit_all")) == entries_before and len(await world.events()) == events_before
    assert await world.get("creator", entry.name) == entry
    assert (await world.reveal("creator", entry.name)).secret == "unlogged-secret"


@pytest.mark.parametrize("error", [DataError, ProgrammingError, IntegrityError])
async def test_any_database_error_while_a_reveal_is_logged_reveals_nothing_and_is_audit_unavailable(
        world, monkeypatch, error):
    """Not only an unwritable database: any error of the database while the reveal is logged and decrypted (a bad
    value, a broken schema, a constraint at commit) means its event may not stand, so nothing is revealed; and a
    refusal that cannot be logged is refused alike."""
    entry = await world.create("creator", secret="refused-secret")
    events_before = await world.events(logon_data=entry.name)

    async def refused(*args, **kwargs):
        raise error("SELECT ... WHERE secret = ?", {"secret": "refused-secret"}, Exception("refused-secret"))

    unlogged = "the reveal could not be logged, so nothing was revealed"
    with monkeypatch.context() as patched:
        patched.setattr(app(world.suite).depot.keys, "open", refused)
        err = await expect_error(world.reveal("creator", entry.name), grpc.StatusCode.UNAVAILABLE,
                                 "AUDIT_UNAVAILABLE", message=unlogged)
        assert "refused-secret" not in err.details() and "SELECT" not in err.details()
    with monkeypatch.context() as patched:
        patched.setattr(audit, "record", refused)
        await expect_error(world.reveal("other_edit_my", entry.name), grpc.StatusCode.UNAVAILABLE,
                           "AUDIT_UNAVAILABLE", message=unlogged)
    assert await world.events(logon_data=entry.name) == events_before  # the REVEAL's event was rolled back
    assert (await world.reveal("creator", entry.name)).secret == "refused-secret"


# --- secrets stay secret ------------------------------------------------------------------------------------
class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + repr(getattr(record, "fields", "")) + repr(record.args))


def database_text(world: World) -> bytes:
    """Everything the depot's database holds, as bytes: the SQLite files, or every PostgreSQL row as text."""
    suite = world.suite
    if suite.backend == "sqlite":
        path = suite.db_url["depot"].removeprefix("sqlite:///")
        return b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
    tables = [t for (t,) in sql(suite, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return "\n".join(str(r) for t in tables for r in sql(suite, f'SELECT t::text FROM "{t}" t')).encode()


async def test_a_planted_secret_is_nowhere_in_plaintext(world):
    planted, replaced = "PLANTED-7c1e0f-Secret", "PLANTED-REPLACEMENT-91ab"
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    errors: list[str] = []
    try:
        entry = await world.create("creator", secret=planted, notes="no secrets here")
        assert (await world.reveal("creator", entry.name, reason="check")).secret == planted
        for principal in ("other_edit_my", "platform_admin", "unassigned_engineer"):
            errors.append((await expect_error(world.reveal(principal, entry.name), grpc.StatusCode.PERMISSION_DENIED))
                          .details())
        errors.append((await expect_error(world.depot.CreateLogonData(dp.CreateLogonDataRequest(
            parent=world.system, logon_data=dp.LogonData(kind=1), secret=planted * 60), metadata=world.md("creator")),
            grpc.StatusCode.INVALID_ARGUMENT)).details())
        store_columns(world, entry.name, secret_ciphertext=flip(stored(world, entry.name)["secret_ciphertext"], -3))
        errors.append((await expect_error(world.reveal("creator", entry.name), DATA_LOSS)).details())
        entry = await world.update("creator", await world.get("creator", entry.name), ["secret"], secret=replaced)
        assert (await world.reveal("edit_all", entry.name)).secret == replaced
        await world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name), metadata=world.md("creator"))
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    assert capture.lines, "the depot logged nothing at all?"
    for secret in (planted, replaced):
        assert not [line for line in capture.lines if secret in line]
        assert not [e for e in errors if secret in e]
        assert not [e for e in await world.events() if secret in str(e)]
        assert secret.encode() not in database_text(world)
