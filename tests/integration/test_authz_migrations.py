"""authz's migrations: a database written at the first schema (0001) upgrades to head with every row kept,
on both backends; the login-lock columns (0002) start at "no failures, not locked"."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from services.authz.server import MIGRATIONS
from services.kit.db import migrate, sync_url
from tests.harness import Databases

NOW = dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def database(backend, tmp_path):
    databases = Databases(backend, tmp_path)
    try:
        yield databases.new("authz_migration")
    finally:
        databases.drop_all()


def test_a_first_schema_database_upgrades_with_its_rows(database):
    migrate(database, MIGRATIONS, revision="0001")
    engine = sa.create_engine(sync_url(database))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")  # as the service runs: a rebuilt table would cascade
            conn.execute(sa.text("INSERT INTO customers (number, display_name, created_at) VALUES ('42', 'C', :t)"),
                         {"t": NOW})
            conn.execute(sa.text(
                "INSERT INTO principals (user_id, kind, customer, display_name, email, disabled, password_hash, "
                "created_at, updated_at) VALUES ('S0000000042', 'CUSTOMER_USER', '42', 'U', '', false, 'h', :t, :t)"),
                {"t": NOW})
            conn.execute(sa.text("INSERT INTO tokens (token_hash, user_id, expires_at, revoked, created_at) "
                                 "VALUES ('th', 'S0000000042', :t, false, :t)"), {"t": NOW})
            conn.execute(sa.text("INSERT INTO grants (user_id, \"authorization\", customer, installations, granted_by, "
                                 "granted_at) VALUES ('S0000000042', 'EDIT_ALL_LOGIN_DATA', '42', '', 'admin', :t)"),
                         {"t": NOW})
        migrate(database, MIGRATIONS)  # what the service does at start: up to head
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT failed_logins, locked_until FROM principals")).all() == [(0, None)]
            assert conn.execute(sa.text("SELECT count(*) FROM tokens")).scalar() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM grants")).scalar() == 1
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert revision == "0002"
    finally:
        engine.dispose()
