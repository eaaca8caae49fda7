"""The key service and the log against a real database (SQLite and PostgreSQL), without servers: sealing and
opening, rotation seen by a second depot process, start-up with the wrong master key, and two processes
appending to one customer's chain at once."""
from __future__ import annotations

import asyncio
import datetime as dt
import os

import pytest
from sqlalchemy import select, update

from services.depot import audit, barrier
from services.depot.keyring import KeyService, SecretUnreadable
from services.depot.server import MIGRATIONS
from services.depot.settings import DepotSettings
from services.depot.store import Store
from services.depot.tables import EntryRow, LogEventRow
from services.kit.db import Database, migrate
from tests.harness import Databases

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def database_url(backend, tmp_path):
    databases = Databases(backend, tmp_path)
    url = databases.new("depot_unit")
    migrate(url, MIGRATIONS)
    yield url
    databases.drop_all()


@pytest.fixture
def master():
    return barrier.master_key_from_bytes(os.urandom(32), is_dev=True)


async def process(url: str, master: barrier.MasterKey) -> tuple[Store, KeyService]:
    """One depot process's view of the database: its own engine, write lock and unwrapped ring."""
    store = Store(Database(url))
    keys = KeyService(master, DepotSettings(master_key_file=None))  # type: ignore[arg-type]
    await keys.load(store, NOW)
    return store, keys


async def add_entry(store: Store, keys: KeyService, entry_id: str, secret: str) -> EntryRow:
    async def work(tx):
        sealed = await keys.seal(tx, "1234", "5678", entry_id, secret)
        return await tx.add_entry(dict(
            entry_id=entry_id, customer="1234", system_number="5678", installation="1", kind="OTHER",
            connection_type="", user_name="u", client="", server="", notes="", connection="", restricted_incident="",
            expire_time=NOW, creator="users/a", create_time=NOW, updater="users/a", update_time=NOW, etag="e",
            key_version=sealed.key_version, wrapped_data_key=sealed.wrapped_data_key,
            secret_ciphertext=sealed.ciphertext, expiry_logged=False, unreadable=False))
    return await store.write(work)


async def open_secret(store: Store, keys: KeyService, entry_id: str) -> str:
    async with store.read() as tx:
        row = (await tx.session.execute(select(EntryRow).where(EntryRow.entry_id == entry_id))).scalar_one()
        return await keys.open(tx, row)


async def test_seal_open_tamper_and_reseal(database_url, master):
    store, keys = await process(database_url, master)
    try:
        row = await add_entry(store, keys, "e1", "pässwörd")
        assert row.key_version == 1 and b"p\xc3\xa4ssw" not in row.secret_ciphertext
        assert await open_secret(store, keys, "e1") == "pässwörd"
        tampered = bytearray(row.secret_ciphertext)
        tampered[-1] ^= 1
        async with store.db.unit_of_work() as session:
            await session.execute(update(EntryRow).where(EntryRow.entry_id == "e1")
                                  .values(secret_ciphertext=bytes(tampered)))
        with pytest.raises(SecretUnreadable):
            await open_secret(store, keys, "e1")
        await add_entry(store, keys, "e2", "second")
        await keys.rotate(store, NOW)

        async def move(tx):
            rows = (await tx.session.execute(select(EntryRow).order_by(EntryRow.entry_id))).scalars().all()
            with pytest.raises(SecretUnreadable):
                await keys.reseal(tx, rows[0], 2)
            sealed = await keys.reseal(tx, rows[1], 2)
            rows[1].key_version, rows[1].wrapped_data_key = sealed.key_version, sealed.wrapped_data_key
            rows[1].secret_ciphertext = sealed.ciphertext

        await store.write(move)
        assert await open_secret(store, keys, "e2") == "second"
        statuses, active = await keys.status(store)
        assert active == 2 and [(s.version, s.state, s.entry_count) for s in statuses] == [
            (1, "DECRYPT_ONLY", 1), (2, "ACTIVE", 1)]
    finally:
        await store.close()


async def test_a_second_process_sees_the_ring_and_its_rotations(database_url, master):
    first, first_keys = await process(database_url, master)
    second, second_keys = await process(database_url, master)
    try:
        assert first_keys.ring.versions() == second_keys.ring.versions() == [1]
        await first_keys.rotate(first, NOW)
        row = await add_entry(second, second_keys, "made-by-second", "s")  # picks up version 2 itself
        assert row.key_version == 2
        assert await open_secret(first, first_keys, "made-by-second") == "s"
    finally:
        await first.close()
        await second.close()


async def test_the_wrong_master_key_refuses_to_start(database_url, master):
    store, _ = await process(database_url, master)
    await store.close()
    with pytest.raises(SystemExit, match="cannot open ring key version 1"):
        await process(database_url, barrier.master_key_from_bytes(os.urandom(32)))


async def test_two_processes_appending_to_one_chain_never_fork_it(database_url, master, backend):
    if backend == "sqlite":
        pytest.skip("SQLite serves one depot process (its writer lock is per file); PostgreSQL serves several")
    first, _ = await process(database_url, master)
    second, _ = await process(database_url, master)
    try:
        event = audit.Event(audit.CREATE, "users/a", detail="concurrent")
        sealer = barrier.LogSealer(master)
        await asyncio.gather(*[audit.record(store, sealer, "1234", event, NOW) for store in (first, second) * 15])
        verdict = await audit.verify(first, sealer, "1234")
        assert verdict.valid and verdict.events_checked == 30
        async with first.read() as tx:
            sequences = (await tx.session.execute(
                select(LogEventRow.sequence).order_by(LogEventRow.sequence))).scalars()
            assert list(sequences) == list(range(1, 31))
    finally:
        await first.close()
        await second.close()
