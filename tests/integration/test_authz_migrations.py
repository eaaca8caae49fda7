"""authz's migrations: a database written at the first schema (0001) upgrades to head with every row kept,
on both backends; the login-lock columns (0002) start at "no failures, not locked"; separation of duties (0003)
gives each address its uniqueness key (the first user keeps an address shared before it had to be unique), an
empty identity log to the vendor side and to every customer, and no grant an approver."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from services.authz.server import MIGRATIONS
from services.kit.db import migrate, sync_url
from tests.harness import Databases

NOW = dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.timezone.utc)
# no address; an address; the same address in other case and with a "+tag" (shared before 0003)
USERS = [("S0000000042", ""), ("S0000000043", "Ann+support@Example.com"), ("S0000000044", "ann@example.com")]


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
            for user_id, email in USERS:
                conn.execute(sa.text(
                    "INSERT INTO principals (user_id, kind, customer, display_name, email, disabled, password_hash, "
                    "created_at, updated_at) VALUES (:u, 'CUSTOMER_USER', '42', 'U', :e, false, 'h', :t, :t)"),
                    {"u": user_id, "e": email, "t": NOW})
            conn.execute(sa.text("INSERT INTO tokens (token_hash, user_id, expires_at, revoked, created_at) "
                                 "VALUES ('th', 'S0000000042', :t, false, :t)"), {"t": NOW})
            conn.execute(sa.text("INSERT INTO grants (user_id, \"authorization\", customer, installations, granted_by, "
                                 "granted_at) VALUES ('S0000000042', 'EDIT_ALL_LOGIN_DATA', '42', '', 'admin', :t)"),
                         {"t": NOW})
        migrate(database, MIGRATIONS)  # what the service does at start: up to head
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT failed_logins, locked_until FROM principals")).all() == [
                (0, None)] * len(USERS)
            assert conn.execute(sa.text("SELECT muted_notifications FROM principals")).all() == [
                ("",)] * len(USERS)  # 0004: every kind of event mail, until the user mutes one
            assert conn.execute(sa.text("SELECT user_id, email, email_key FROM principals ORDER BY user_id")).all() == [
                ("S0000000042", "", None), ("S0000000043", "Ann+support@Example.com", "ann@example.com"),
                ("S0000000044", "ann@example.com", None)]
            assert conn.execute(sa.text("SELECT count(*) FROM tokens")).scalar() == 1
            assert conn.execute(sa.text("SELECT user_id, approved_by FROM grants")).all() == [("S0000000042", None)]
            assert conn.execute(sa.text("SELECT customer, sequence, hash FROM identity_log_heads ORDER BY customer")
                                ).all() == [("", 0, "0" * 64), ("42", 0, "0" * 64)]
            for table in ("identity_events", "one_time_codes", "grant_requests"):
                assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0, table
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert revision == "0004"
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the key is unique from now on
            conn.execute(sa.text("UPDATE principals SET email_key = 'ann@example.com' WHERE user_id = 'S0000000044'"))
    finally:
        engine.dispose()
