"""The depot's migrations: a database written at the first schema (0001), its log included, upgrades to head on
both backends; 0002 seals every stored log head with the master key, so only a depot that hands its key over
applies it, and a bare upgrade of a database with log heads stops with nothing changed."""
from __future__ import annotations

import datetime as dt
import os
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from services.depot import barrier, chain
from services.depot.server import MIGRATIONS
from services.kit.db import migrate, sync_url
from tests.harness import Databases

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.timezone.utc)
HEAD = "0008"  # the newest revision


@pytest.fixture
def database(backend, tmp_path):
    databases = Databases(backend, tmp_path)
    try:
        yield databases.new("depot_migration")
    finally:
        databases.drop_all()


def first_schema_with_a_log(url: str) -> tuple[sa.Engine, str]:
    """A 0001 database holding customer 42's log of two chained events and its head; returns the last hash."""
    migrate(url, MIGRATIONS, revision="0001")
    engine = sa.create_engine(sync_url(url))
    previous = chain.GENESIS
    with engine.begin() as conn:
        for sequence in (1, 2):
            event = SimpleNamespace(customer="42", sequence=sequence, action="CREATE", outcome="SUCCESS",
                                    actor="users/S0000000042", system="customers/42/systems/1", logon_data="",
                                    incident="", detail="", event_time=NOW, request_id="r", previous_hash=previous)
            previous = event.hash = chain.link(previous, event)
            conn.execute(sa.text(
                "INSERT INTO log_events (customer, sequence, action, outcome, actor, system, logon_data, incident, "
                "detail, event_time, request_id, previous_hash, hash) VALUES (:customer, :sequence, :action, "
                ":outcome, :actor, :system, :logon_data, :incident, :detail, :event_time, :request_id, "
                ":previous_hash, :hash)"), vars(event))
        conn.execute(sa.text("INSERT INTO log_heads (customer, last_sequence, last_hash) VALUES ('42', 2, :h)"),
                     {"h": previous})
    return engine, previous


def revision(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def test_the_start_that_upgrades_seals_every_stored_log_head(database):
    engine, last_hash = first_schema_with_a_log(database)
    sealer = barrier.LogSealer(barrier.master_key_from_bytes(os.urandom(32)))
    try:
        migrate(database, MIGRATIONS, {"log_sealer": sealer})  # what the depot does at start
        with engine.connect() as conn:
            [(sequence, stored_hash, seal)] = conn.execute(sa.text(
                "SELECT last_sequence, last_hash, seal FROM log_heads WHERE customer = '42'")).all()
            assert conn.execute(sa.text("SELECT count(*) FROM log_events")).scalar() == 2
            # 0007: the event mails start at the log's end (what happened before is not mailed)
            assert conn.execute(sa.text("SELECT customer, position FROM mail_cursors")).all() == [("42", 2)]
        assert (sequence, stored_hash) == (2, last_hash) and sealer.verifies("42", 2, last_hash, seal)
        assert revision(engine) == HEAD
    finally:
        engine.dispose()


def test_a_bare_upgrade_of_a_database_with_a_log_stops_with_nothing_changed(database):
    engine, _ = first_schema_with_a_log(database)
    try:
        with pytest.raises(RuntimeError, match="start the depot"):
            migrate(database, MIGRATIONS)
        assert revision(engine) == "0001"
        with engine.connect() as conn:
            assert "seal" not in {c["name"] for c in sa.inspect(conn).get_columns("log_heads")}
    finally:
        engine.dispose()


def test_a_new_database_needs_no_key(database):
    migrate(database, MIGRATIONS)  # nothing to seal yet: a bare upgrade (e.g. to inspect the schema) works
    engine = sa.create_engine(sync_url(database))
    try:
        assert revision(engine) == HEAD
        with engine.connect() as conn:  # 0004: the hours of refused reveals by callers outside a customer
            assert {c["name"] for c in sa.inspect(conn).get_columns("foreign_denials")} == {
                "customer", "actor", "window_start", "logged", "counted"}
    finally:
        engine.dispose()


def test_the_ring_keys_stored_before_0003_count_as_requested_rotations(database):
    """0003 marks every stored ring key as requested, so re-wrapping moves every entry onto the active key, as
    it did before keys added at the usage limit were told apart."""
    migrate(database, MIGRATIONS, revision="0002")  # no log yet: no key needed
    engine = sa.create_engine(sync_url(database))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO ring_keys (version, wrapped_key, create_time, encryptions) "
                                 "VALUES (1, :blob, :time, 7), (2, :blob, :time, 0)"),
                         {"blob": b"wrapped", "time": "2026-11-27 10:00:00+00:00"})
        migrate(database, MIGRATIONS)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version, encryptions, requested FROM ring_keys ORDER BY version")).all()
        assert [(version, encryptions, bool(requested)) for version, encryptions, requested in rows] == [
            (1, 7, True), (2, 0, True)]
        assert revision(engine) == HEAD
    finally:
        engine.dispose()
