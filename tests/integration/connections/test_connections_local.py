"""The connections service's SQLite hot path (services.connections.store.Store over
services.kit.localsqlite): on a SQLite file GetSystem and the authorization resolver of every system-scoped
method read the system on a query-only connection on the calling thread; on PostgreSQL, and whenever that
connection raises LocalUnavailable, the engine reads it. Either way: the same system, never a stale one, and the same
status codes as before."""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import sqlite3
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2

from remotesupport.connections.v1 import connections_pb2 as cp
from services.connections import convert
from services.connections.policies import SERVICE
from services.connections.servicer import ConnectionsServicer
from services.connections.store import Store
from services.kit import localsqlite
from services.kit.clock import as_utc
from services.kit.localsqlite import LocalTable, LocalUnavailable
from tests.helpers import expect_error
from tests.integration.connections.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
_numbers = itertools.count(8100)
_sids = (f"L{a}{b}" for a, b in itertools.product("ABCDEFGHJKMNPQRSTUVWXYZ", "0123456789"))


# --- reaching the running service's internals ---------------------------------------------------------


def _closure_find(fn, cls, seen=None):
    """The first instance of `cls` a function's closure holds, directly or through nested closures."""
    seen = seen if seen is not None else set()
    if id(fn) in seen:
        return None
    seen.add(id(fn))
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, cls):
            return value
        if callable(value) and getattr(value, "__closure__", None):
            found = _closure_find(value, cls, seen)
            if found is not None:
                return found
    return None


def app(suite):
    return suite.running["connections"].app


def servicer(suite) -> ConnectionsServicer:
    """The ConnectionsServicer the running app registered (server.build keeps it only in spec.register)."""
    found = _closure_find(app(suite).spec.register, ConnectionsServicer)
    assert found is not None, "services.connections.server.build no longer closes over its servicer in spec.register"
    return found


def store_of(suite) -> Store:
    return servicer(suite).store


def policy_store(suite, method: str = "GetSystem") -> Store:
    """The Store the authorization resolver of `method` reads from."""
    found = _closure_find(app(suite).spec.policies[f"/{SERVICE}/{method}"].resolve, Store)
    assert found is not None, f"the policy of {method} does not read the Store"
    return found


def sqlite_only(world: World) -> None:
    if world.suite.backend != "sqlite":
        pytest.skip("the local connection exists only on a SQLite file")


# --- helpers ------------------------------------------------------------------------------------------


async def create(world: World, *, installation: str = "20012345", **values) -> cp.System:
    values.setdefault("description", "ERP – Produktion (Frankfurt)")
    values.setdefault("product", "SAP S/4HANA 2023")
    values.setdefault("saprouter_route", "/H/saprouter.example.com/S/3299/H/sapprd01")
    response = await world.call("CreateSystem", cp.CreateSystemRequest(
        parent=f"customers/{world.customer}", system=cp.System(
            installation_number=installation, system_id=next(_sids), system_number=str(next(_numbers)), **values)),
        "maintainer")
    return response.system


async def get(world: World, name: str, principal: str = "member") -> cp.System:
    return (await world.call("GetSystem", cp.GetSystemRequest(name=name), principal)).system


def number_of(name: str) -> str:
    return name.rsplit("/", 1)[1]


@pytest.fixture
def engine_reads(world, monkeypatch) -> list:
    """Every GetSystem the engine answered (services.connections.store.Store.engine_system) during the test."""
    calls: list = []
    store = store_of(world.suite)
    original = store.engine_system

    async def counted(customer, number):
        calls.append((customer, number))
        return await original(customer, number)

    monkeypatch.setattr(store, "engine_system", counted)
    return calls


class LockedReader:
    """A reader connection whose database is locked past the busy timeout: every statement raises."""

    def __init__(self) -> None:
        self.closed = False
        self.statements = 0

    def execute(self, sql, params=()):
        self.statements += 1
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        self.closed = True


# --- (a) the local table exists exactly on SQLite, and answers the system as it was created -------------


async def test_the_directory_reads_systems_locally_on_sqlite_and_through_the_engine_on_postgres(world):
    local = store_of(world.suite)
    assert policy_store(world.suite) is local, "the resolver and GetSystem must share one Store"
    for method in ("UpdateSystem", "DeleteSystem", "OpenConnection", "GetConnection"):
        assert policy_store(world.suite, method) is local
    if world.suite.backend == "sqlite":
        assert isinstance(local.local_systems, LocalTable)
        assert local.local_systems.local.usable
    else:
        assert local.local_systems is None


async def test_get_system_answers_every_field_as_create_system_returned_it(world, engine_reads):
    clock = world.suite.clock
    before = clock.now()
    at = clock.advance(microseconds=123457)  # a timestamp with microseconds, as a real clock gives
    try:
        created = await create(world)
    finally:
        clock.set(before)
    got = await get(world, created.name)
    assert got == created
    for field in cp.System.DESCRIPTOR.fields:  # every field, named, and every one set
        assert getattr(got, field.name) == getattr(created, field.name), field.name
        if field.message_type is None:
            assert getattr(got, field.name), field.name
    assert got.create_time.ToDatetime(dt.timezone.utc) == at and got.update_time == got.create_time
    assert got.create_time.nanos == at.microsecond * 1000 != 0
    if world.suite.backend == "sqlite":
        assert engine_reads == [], "on a SQLite file GetSystem reads locally"
        row = store_of(world.suite).local_systems.get(customer=world.customer, system_number=created.system_number)
        engine_row = await store_of(world.suite).engine_system(world.customer, created.system_number)
        assert convert.system(row) == convert.system(engine_row) == created
        for column in row._fields:  # the local row holds what the engine's row holds, column by column
            local_value, engine_value = getattr(row, column), getattr(engine_row, column)
            if isinstance(engine_value, dt.datetime):
                local_value, engine_value = as_utc(local_value), as_utc(engine_value)
            assert local_value == engine_value, column
    else:
        assert engine_reads == [(world.customer, created.system_number)]


# --- (b) no stale reads, NOT_FOUND as before, other customers denied as before ----------------------------


async def test_every_update_is_visible_to_the_very_next_get_system(world):
    system = await create(world)
    current = system
    for i in range(5):
        updated = (await world.call("UpdateSystem", cp.UpdateSystemRequest(
            system=cp.System(name=system.name, description=f"ERP, change {i}", etag=current.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["description"])), "maintainer")).system
        assert updated.description == f"ERP, change {i}" and updated.etag != current.etag
        got = await get(world, system.name)
        assert got == updated
        current = got
    moved = (await world.call("UpdateSystem", cp.UpdateSystemRequest(
        system=cp.System(name=system.name, installation_number="20054321", product="SAP ECC 6.0"),
        update_mask=field_mask_pb2.FieldMask(paths=["installation_number", "product"])), "maintainer")).system
    assert await get(world, system.name) == moved
    assert moved.installation_number == "20054321" and moved.description == "ERP, change 4"
    if world.suite.backend == "sqlite":
        assert await store_of(world.suite).installation(world.customer, system.system_number) == "20054321"


async def test_a_deleted_system_is_not_found_by_the_very_next_get_system(world):
    system = await create(world)
    assert await get(world, system.name) == system
    await world.call("DeleteSystem", cp.DeleteSystemRequest(name=system.name, etag=system.etag), "maintainer")
    await expect_error(world.call("GetSystem", cp.GetSystemRequest(name=system.name), "member"), NOT_FOUND,
                       "NOT_FOUND", message=f"system {system.name} does not exist")
    await expect_error(world.call("DeleteSystem", cp.DeleteSystemRequest(name=system.name), "maintainer"),
                       NOT_FOUND, "NOT_FOUND", message=system.name)
    # the same name registered again is the new system, not the deleted one
    again = (await world.call("CreateSystem", cp.CreateSystemRequest(
        parent=f"customers/{world.customer}", system=cp.System(
            installation_number="20099999", system_id=system.system_id, system_number=system.system_number,
            description="the second one")), "maintainer")).system
    got = await get(world, system.name)
    assert got == again and got.etag != system.etag and got.installation_number == "20099999"


async def test_a_system_that_never_existed_is_not_found_and_named(world):
    name = f"customers/{world.customer}/systems/987654321"
    err = await expect_error(world.call("GetSystem", cp.GetSystemRequest(name=name), "member"), NOT_FOUND,
                             "NOT_FOUND", message=name)
    assert err.details() == f"system {name} does not exist"
    assert await store_of(world.suite).installation(world.customer, "987654321") == ""


async def test_a_user_of_another_customer_is_denied_whether_or_not_the_system_exists(world):
    system = await create(world)
    for name in (system.name, f"customers/{world.customer}/systems/987654322"):
        err = await expect_error(world.call("GetSystem", cp.GetSystemRequest(name=name), "other"), DENIED,
                                 "PERMISSION_DENIED")
        assert "does not exist" not in err.details()
    await world.call("DeleteSystem", cp.DeleteSystemRequest(name=system.name), "maintainer")
    await expect_error(world.call("GetSystem", cp.GetSystemRequest(name=system.name), "other"), DENIED,
                       "PERMISSION_DENIED")


# --- (c) a failing local reader: the engine answers, the reader is closed and paused, then reopened ---------


async def test_a_locked_reader_falls_back_to_the_engine_pauses_and_is_reopened_after_the_pause(
        world, engine_reads, monkeypatch, caplog):
    sqlite_only(world)
    monkeypatch.setattr(localsqlite, "PAUSE_S", 60.0)
    local = store_of(world.suite).local_systems.local
    system = await create(world)
    assert await get(world, system.name) == system
    real = getattr(local._local, "conn", None)
    assert isinstance(real, sqlite3.Connection), "the handler read on this thread's reader connection"
    assert engine_reads == []

    locked = LockedReader()
    local._local.conn = locked
    real.close()  # replaced: nothing else holds it
    try:
        with caplog.at_level(logging.WARNING, logger=localsqlite.__name__):
            got = await get(world, system.name)
        assert got == system, "the engine answers the same system"
        assert engine_reads == [(world.customer, system.system_number)]
        assert locked.statements == 1 and locked.closed, "the failed reader is closed after its first failure"
        assert getattr(local._local, "conn", None) is None
        assert local._resume_at > time.monotonic() + 50, "paused for PAUSE_S"
        assert any("database is locked" in r.getMessage() for r in caplog.records)

        # while paused the engine answers every read, and no reader is opened
        updated = (await world.call("UpdateSystem", cp.UpdateSystemRequest(
            system=cp.System(name=system.name, description="changed while paused"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"])), "maintainer")).system
        assert await get(world, system.name) == updated
        with pytest.raises(LocalUnavailable):
            store_of(world.suite).local_systems.get(customer=world.customer, system_number=system.system_number)
        assert await store_of(world.suite).installation(world.customer, system.system_number) == "20012345"
        await expect_error(world.call("GetSystem", cp.GetSystemRequest(
            name=f"customers/{world.customer}/systems/987654323"), "member"), NOT_FOUND, "NOT_FOUND",
            message="987654323")
        await expect_error(world.call("GetSystem", cp.GetSystemRequest(name=system.name), "other"), DENIED,
                           "PERMISSION_DENIED")
        assert len(engine_reads) == 3
        assert getattr(local._local, "conn", None) is None

        # the pause ends: the next GetSystem opens a new reader and reads locally again
        local._resume_at = 0.0
        assert await get(world, system.name) == updated
        reopened = getattr(local._local, "conn", None)
        assert isinstance(reopened, sqlite3.Connection) and reopened is not real
        assert len(engine_reads) == 3, "read locally again"
        assert reopened.execute("PRAGMA query_only").fetchone() == (1,)
        assert locked.statements == 1
    finally:
        local._resume_at = 0.0
        if getattr(local._local, "conn", None) is locked:
            local._local.conn = None


# --- (d) the resolver sees a system the moment CreateSystem answers -----------------------------------------


async def test_a_system_created_through_the_rpc_is_found_by_the_resolver_immediately(world, monkeypatch):
    sqlite_only(world)
    target = store_of(world.suite)
    engine_units: list = []
    original = target.db.unit_of_work

    def counted():
        engine_units.append(1)
        return original()

    monkeypatch.setattr(target.db, "unit_of_work", counted)
    for installation in ("20077777", "1", "9999999999"):
        created = await create(world, installation=installation)
        before = len(engine_units)
        assert await target.installation(world.customer, created.system_number) == installation
        assert len(engine_units) == before, "the resolver read the new system locally"
        row = target.local_systems.get(customer=world.customer, system_number=created.system_number)
        assert convert.system(row) == created
        await world.call("DeleteSystem", cp.DeleteSystemRequest(name=created.name), "maintainer")
        before = len(engine_units)
        assert await target.installation(world.customer, created.system_number) == ""
        assert len(engine_units) == before
    assert await target.installation(world.other_customer, created.system_number) == ""
