"""The depot's pure rules: field checks, expiry, what an engineer sees, and its settings."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.depot import model
from services.depot.settings import DepotSettings
from services.kit.config import ServiceConfig
from services.kit.validate import Violations

NOW = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
LIMITS = model.Limits("1234", "5678", NOW, dt.timedelta(days=90),
                      connection_types=frozenset({"R3_SUPPORT"}))  # what connections confirmed
GOOD = model.EntryFields(user_name="SUPPORT1", client="001", server="ap01", notes="tab\tand\nlines",
                         expire_time=NOW + dt.timedelta(days=1), connection_type="connectionTypes/R3_SUPPORT",
                         restricted_incident="customers/1234/incidents/abc",
                         connection="customers/1234/systems/5678/connections/c1")


def problems(fields: model.EntryFields, kind: str | None = model.SYSTEM_USER, paths=model.PLAIN_FIELDS):
    v = Violations()
    model.check_fields(v, fields, paths, kind, LIMITS)
    return dict(v.items)


def test_a_complete_system_user_is_fine():
    assert problems(GOOD) == {}


@pytest.mark.parametrize("change, field, words", [
    ({"expire_time": None}, "expire_time", "is required"),
    ({"expire_time": NOW}, "expire_time", "in the future"),
    ({"expire_time": NOW - dt.timedelta(seconds=1)}, "expire_time", "in the future"),
    ({"expire_time": NOW + dt.timedelta(days=90, microseconds=1)}, "expire_time", "at most 90 days"),
    ({"user_name": ""}, "user_name", "is required"),
    ({"user_name": "u" * 129}, "user_name", "128"),
    ({"user_name": "a\tb"}, "user_name", "control"),
    ({"client": ""}, "client", "required for system users"),
    ({"client": "1a2"}, "client", "three digits"),
    ({"client": "0001"}, "client", "three digits"),
    ({"server": "s" * 256}, "server", "255"),
    ({"server": "a\nb"}, "server", "control"),
    ({"notes": "n" * 2001}, "notes", "2000"),
    ({"notes": "bell\x07"}, "notes", "control"),
    ({"connection_type": "connectionTypes/NOPE"}, "connection_type", "catalog"),
    ({"connection_type": "connectionTypes/lower"}, "connection_type", "connectionTypes/"),
    ({"restricted_incident": "customers/999/incidents/abc"}, "restricted_incident", "customer"),
    ({"restricted_incident": "incidents/abc"}, "restricted_incident", "customers/"),
    ({"connection": "customers/1234/systems/1/connections/c1"}, "connection", "system"),
    ({"connection": "customers/1234/systems/5678/connections/"}, "connection", "customers/"),
])
def test_each_field_rule(change, field, words):
    found = problems(dataclasses.replace(GOOD, **change))
    assert list(found) == [f"logon_data.{field}"] and words in found[f"logon_data.{field}"]


def test_kind_dependent_rules():
    router = dataclasses.replace(GOOD, user_name="", client="")
    assert problems(router, model.SAPROUTER_PASSWORD) == {}
    assert "empty" in problems(GOOD, model.SAPROUTER_PASSWORD)["logon_data.client"]
    assert "is required" in problems(router, model.DATABASE_USER)["logon_data.user_name"]
    assert problems(router, None) == {}  # an invalid kind is reported alone, not with its consequences


def test_only_the_given_paths_are_checked():
    bad = dataclasses.replace(GOOD, notes="n" * 5000, expire_time=None)
    assert list(problems(bad, paths=["notes"])) == ["logon_data.notes"]
    assert problems(bad, paths=["server"]) == {}


def test_secret_kind_and_reason_rules():
    assert "is required" in model.secret_problem("")
    assert model.secret_problem("x" * 1024) is None and "1024" in model.secret_problem("x" * 1025)
    assert model.secret_problem(" \x00 odd but allowed ") is None
    assert "is required" in model.kind_problem("") and "unknown value 7" in model.kind_problem("7")
    assert model.kind_problem(model.OTHER) is None
    assert model.reason_problem("r" * 500) is None and "500" in model.reason_problem("r" * 501)
    assert "control" in model.reason_problem("a\nb")


def test_expiry_is_exact():
    expires = NOW + dt.timedelta(seconds=30)
    assert not model.is_expired(expires, expires - dt.timedelta(microseconds=1))
    assert model.is_expired(expires, expires)
    assert model.is_expired(expires, expires + dt.timedelta(days=1))


def test_updatable_fields_follow_the_contract():
    assert model.UPDATABLE == {"user_name", "client", "server", "notes", "expire_time", "connection_type",
                               "restricted_incident", "secret"}


# --- what an engineer sees ----------------------------------------------------------------------------------
I1, I2 = "customers/1/incidents/one", "customers/1/incidents/two"


@pytest.mark.parametrize("kind, restricted, incidents, views, seen_through", [
    (model.SYSTEM_USER, "", (I1,), {}, I1),                                  # no view: no restriction
    (model.SYSTEM_USER, "", (I1,), {I1: frozenset({"e"})}, I1),               # named by the view
    (model.SYSTEM_USER, "", (I1,), {I1: frozenset({"x"})}, None),             # left out of the view
    (model.SYSTEM_USER, "", (I1,), {I1: frozenset()}, None),                  # view whose members are gone
    (model.SYSTEM_USER, "", (I1, I2), {I1: frozenset({"x"})}, I2),            # another incident sees it
    (model.SAPROUTER_PASSWORD, "", (I1,), {I1: frozenset({"x"})}, I1),        # views restrict system users only
    (model.SERVER_OS_USER, "", (I1,), {I1: frozenset({"x"})}, I1),
    (model.DATABASE_USER, I2, (I1,), {}, None),                               # for another incident only
    (model.DATABASE_USER, I2, (I1, I2), {}, I2),
    (model.SYSTEM_USER, I1, (I1,), {I1: frozenset({"x"})}, None),             # its incident, but not in the view
    (model.OTHER, "", (), {}, None),                                          # no incident at all
])
def test_engineer_access(kind, restricted, incidents, views, seen_through):
    assert model.engineer_access(kind, "e", restricted, incidents, views) == seen_through


# --- settings -----------------------------------------------------------------------------------------------
def test_settings_from_the_environment(monkeypatch, tmp_path):
    config = ServiceConfig(service="depot", var_dir=tmp_path, profile="production")
    monkeypatch.setenv("RS_DEPOT_MAX_EXPIRY_DAYS", "30")
    monkeypatch.setenv("RS_DEPOT_SWEEP_INTERVAL_S", "5")
    monkeypatch.setenv("RS_DEPOT_REWRAP_BATCH", "50")
    monkeypatch.setenv("RS_DEPOT_KEY_USAGE_LIMIT", "1000")
    settings = DepotSettings.from_env(config)
    assert settings.master_key_file == tmp_path / "secrets" / "depot-master.key"
    assert (settings.profile, settings.max_expiry, settings.sweep_interval_s, settings.rewrap_batch,
            settings.key_usage_limit, settings.background) == ("production", dt.timedelta(days=30), 5.0, 50, 1000,
                                                               True)
    monkeypatch.setenv("RS_DEPOT_MASTER_KEY_FILE", "/run/secrets/depot.key")
    assert str(DepotSettings.from_env(config).master_key_file) == "/run/secrets/depot.key"


@pytest.mark.parametrize("variable, value, words", [
    ("RS_DEPOT_MAX_EXPIRY_DAYS", "0", "RS_DEPOT_MAX_EXPIRY_DAYS"),
    ("RS_DEPOT_MAX_EXPIRY_DAYS", "ninety", "must be an integer"),
    ("RS_DEPOT_SWEEP_INTERVAL_S", "0", "RS_DEPOT_SWEEP_INTERVAL_S"),
    ("RS_DEPOT_REWRAP_BATCH", "0", "RS_DEPOT_REWRAP_BATCH"),
    ("RS_DEPOT_KEY_USAGE_LIMIT", str(2**33), "RS_DEPOT_KEY_USAGE_LIMIT"),
])
def test_bad_settings_refuse_to_start(monkeypatch, tmp_path, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit, match=words):
        DepotSettings.from_env(ServiceConfig(service="depot", var_dir=tmp_path))


def test_an_unknown_profile_refuses_to_start(tmp_path):
    with pytest.raises(SystemExit, match="RS_PROFILE"):
        DepotSettings.from_env(ServiceConfig(service="depot", var_dir=tmp_path, profile="staging"))
