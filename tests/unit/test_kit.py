"""Unit tests of the kit's pure pieces: names, validation, page tokens, error details, log scrubbing, clock."""
from __future__ import annotations

import datetime as dt
import json
import logging

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from google.rpc import error_details_pb2, status_pb2

from remotesupport.depot.v1 import depot_pb2
from services.kit import errors, logs, names, validate
from services.kit.clock import UTC, ManualClock, as_utc


@pytest.mark.parametrize("kind,value,expected", [
    ("system", "customers/12/systems/345", {"customer": "12", "system": "345"}),
    ("logon_data", "customers/1/systems/2/logonData/ab-3", {"customer": "1", "system": "2", "logon_data": "ab-3"}),
    ("user", "users/S0000000001", {"user": "S0000000001"}),
    ("user", "users/eng.miller", {"user": "eng.miller"}),
    ("connection_type", "connectionTypes/R3_SUPPORT", {"code": "R3_SUPPORT"}),
    ("incident", "customers/9/incidents/inc-1", {"customer": "9", "incident": "inc-1"}),
])
def test_names_parse(kind, value, expected):
    assert names.parse(kind, value, "name") == expected


@pytest.mark.parametrize("kind,value", [
    ("system", ""), ("system", "customers/x/systems/1"), ("system", "customers/1/systems/"),
    ("system", "customers/1/systems/1/extra"), ("user", "users/S123"), ("user", "users/A"),
    ("logon_data", "customers/1/systems/2/logonData/UPPER"), ("system", "customers/1/systems/" + "1" * 400),
    ("connection_type", "connectionTypes/r3"), ("customer", "customers/12345678901"),
])
def test_names_reject_malformed_with_the_field(kind, value):
    with pytest.raises(errors.InvalidArgument) as err:
        names.parse(kind, value, "the_field")
    assert err.value.violations[0][0] == "the_field"
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_violations_collects_every_problem():
    v = validate.Violations()
    v.required("a", "")
    v.max_len("b", "x" * 11, 10)
    v.pattern("c", "abc", r"[0-9]+", "must be digits")
    v.enum("d", 0, depot_pb2.LogonDataKind)
    v.enum("e", 99, depot_pb2.LogonDataKind)
    with pytest.raises(errors.InvalidArgument) as err:
        v.raise_if_any()
    assert [f for f, _ in err.value.violations] == ["a", "b", "c", "d", "e"]
    validate.Violations().raise_if_any()


def test_page_size():  # page tokens: tests/unit/test_kit_paging.py
    assert validate.page_size(0) == validate.DEFAULT_PAGE_SIZE
    assert validate.page_size(1000) == 1000
    for bad in (-1, 1001):
        with pytest.raises(errors.InvalidArgument):
            validate.page_size(bad)


def test_mask_paths():
    assert validate.mask_paths(field_mask_pb2.FieldMask(paths=["a"]), {"a", "b"}) == ["a"]
    for paths in ([], ["c"]):
        with pytest.raises(errors.InvalidArgument) as err:
            validate.mask_paths(field_mask_pb2.FieldMask(paths=paths), {"a"})
        assert err.value.violations[0][0] == "update_mask"


def test_timestamps_round_trip_and_unset_is_none():
    instant = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert validate.timestamp(validate.to_timestamp(instant)) == instant
    assert validate.timestamp(validate.to_timestamp(None)) is None
    assert as_utc(dt.datetime(2030, 1, 1)).tzinfo == UTC


@settings(max_examples=500, deadline=None)
@given(instant=st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                            timezones=st.one_of(st.none(), st.timezones())))
def test_to_timestamp_is_protobufs_conversion_with_naive_as_utc(instant):
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime((instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant).astimezone(UTC))
    assert validate.to_timestamp(instant) == expected


@pytest.mark.parametrize("seconds,nanos", [(1, -1), (1, 1_000_000_000), (-62_135_596_801, 0),
                                           (253_402_300_800, 0), (2**62, 0)])
def test_a_timestamp_outside_its_own_rules_is_refused_whole(seconds, nanos):
    from google.protobuf import timestamp_pb2

    with pytest.raises(ValueError):
        validate.timestamp(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))


@pytest.mark.parametrize("kind,value", [("user", "users/S1000000002\n"), ("customer", "customers/7\n"),
                                        ("system", "customers/1/systems/2\n"), ("connection_type", "connectionTypes/R3\n")])
def test_a_name_matches_as_a_whole_string(kind, value):
    with pytest.raises(errors.InvalidArgument):
        names.parse(kind, value, "name")
    assert names.parse(kind, value[:-1], "name")


def test_error_status_carries_error_info_and_bad_request():
    status = errors.to_grpc_status(errors.InvalidArgument([("x.y", "is required"), ("z", "too long")]))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    decoded = status_pb2.Status.FromString(details)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    decoded.details[0].Unpack(info)
    decoded.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "remotesupport")
    assert [v.field for v in bad.field_violations] == ["x.y", "z"]


def test_permission_denied_names_required_authorizations():
    err = errors.PermissionDenied("no", required=["EDIT_ALL_LOGIN_DATA"])
    assert err.metadata["required_authorizations"] == "EDIT_ALL_LOGIN_DATA"


def test_log_lines_are_json_and_scrub_tokens_and_passwords():
    formatter = logs.JsonFormatter("test")
    record = logging.LogRecord("x", logging.INFO, __file__, 1,
                               "auth Bearer rs_abcdef123 password=hunter2 secret: s3cr3t", None, None)
    line = json.loads(formatter.format(record))
    assert line["service"] == "test" and line["level"] == "info"
    for leaked in ("rs_abcdef123", "hunter2", "s3cr3t"):
        assert leaked not in line["msg"]


def test_manual_clock_moves_only_when_told():
    clock = ManualClock(dt.datetime(2030, 1, 1, tzinfo=UTC))
    assert clock.now() == clock.now()
    clock.advance(seconds=5)
    assert clock.now() == dt.datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)


def test_a_sqlite_database_file_is_created_0600(tmp_path):
    import os
    import stat

    from services.kit.db import migrate

    url = f"sqlite:///{tmp_path / 'var' / 'x.db'}"
    migrations = tmp_path / "migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from alembic import context\nfrom sqlalchemy import create_engine\n"
        "with create_engine(context.config.get_main_option('sqlalchemy.url')).connect() as c:\n"
        "    context.configure(connection=c)\n    with context.begin_transaction():\n        context.run_migrations()\n")
    (migrations / "script.py.mako").write_text("")
    old = os.umask(0o022)
    try:
        migrate(url, migrations)
    finally:
        os.umask(old)
    for path in (tmp_path / "var").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
