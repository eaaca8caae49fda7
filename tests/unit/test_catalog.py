"""Unit tests for the connection-type catalog as the initial migration freezes it
(services/connections/migrations/versions/0001_initial.py), its types (services/connections/connection_types.py)
and the validation of set-up parameters (services/connections/setup_parameters.py)."""

from __future__ import annotations

import csv
import dataclasses
import re

import pytest

from services.connections import connection_types
from services.connections.connection_types import (
    CATEGORY_TITLES,
    PARAMETER_KINDS,
    ConnectionTypeSpec,
    ParameterSpec,
)
from services.connections.setup_parameters import validate_parameters

from tests.unit.catalog_data import CONNECTION_TYPES, FURTHER, GUI, INITIAL, JAVA, OS, ROOT, SEED_ROWS, \
    SOLMAN, by_code

SEED_TABLE = ROOT / "tests" / "fixtures" / "seed_connection_types.tsv"


def _catalog_rows() -> list[tuple[str, str, str, str]]:
    return [(CATEGORY_TITLES[t.category], t.display_name, t.description, t.sap_note) for t in CONNECTION_TYPES]


# --- the table ------------------------------------------------------------------------------------


def test_catalog_has_the_33_seed_types():
    assert len(SEED_ROWS) == 33
    assert len(CONNECTION_TYPES) == 33


def test_catalog_matches_seed_row_for_row():
    assert _catalog_rows() == SEED_ROWS


@pytest.mark.parametrize("index", range(len(SEED_ROWS)))
def test_each_row(index):
    assert _catalog_rows()[index] == SEED_ROWS[index]


def _seed_table() -> list[tuple[str, str, str, str]]:
    """The rows of tests/fixtures/seed_connection_types.tsv: (heading, name, description, SAP Note)."""
    with SEED_TABLE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["heading", "name", "description", "sap_note"]
    return [tuple(row) for row in rows[1:]]


def _repair(rows):
    """The one known artifact: 'Secure AS/400 Connection servers' + '... AS/400 based'."""
    repaired = []
    for heading, name, description, note in rows:
        if name == "Secure AS/400 Connection servers" and description.endswith("AS/400 based"):
            name, description = "Secure AS/400 Connection", description + " servers"
        repaired.append((heading, name, description, note))
    return repaired


def test_catalog_matches_the_seeds_table_as_extracted():
    parsed = _repair(_seed_table())
    assert parsed == SEED_ROWS
    assert _catalog_rows() == parsed
    assert [h for h in dict.fromkeys(r[0] for r in parsed)] == list(CATEGORY_TITLES.values())


def test_category_titles_are_the_seed_headings_in_order():
    assert connection_types.CATEGORIES == ("SAP_GUI", "SOLUTION_MANAGER", "JAVA_HTTP", "APPLICATION_SHARING_OS", "FURTHER")
    assert list(CATEGORY_TITLES) == list(connection_types.CATEGORIES)
    assert list(CATEGORY_TITLES.values()) == [GUI, SOLMAN, JAVA, OS, FURTHER]
    assert {t.category for t in CONNECTION_TYPES} == set(connection_types.CATEGORIES)


def test_categories_appear_in_contiguous_blocks():
    order = [t.category for t in CONNECTION_TYPES]
    blocks = [c for i, c in enumerate(order) if i == 0 or order[i - 1] != c]
    assert blocks == list(connection_types.CATEGORIES)


def test_codes_are_unique_well_formed_and_stable():
    codes = [t.code for t in CONNECTION_TYPES]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", code), code
        assert len(code) <= 40, code
    for code in ("R3_SUPPORT", "R3_SUPPORT_SNC_SSO", "HTTP_CONNECT_URL", "SSH", "HANA", "HANA_MDC"):
        assert code in codes


def test_names_are_unique():
    names = [t.display_name for t in CONNECTION_TYPES]
    assert len(names) == len(set(names))


def test_parameter_kinds_constant():
    assert PARAMETER_KINDS == ("STRING", "HOST", "PORT", "URL", "INSTANCE_NUMBER", "DATABASE")


def test_every_parameter_is_well_formed():
    for spec in CONNECTION_TYPES:
        keys = [p.key for p in spec.parameters]
        assert len(keys) == len(set(keys)), spec.code
        for p in spec.parameters:
            assert p.kind in PARAMETER_KINDS
            assert re.fullmatch(r"[a-z][a-z0-9_]*", p.key)
            assert p.display_name and p.description


def test_port_parameter_is_optional_exactly_when_a_default_port_exists():
    for spec in CONNECTION_TYPES:
        port = next((p for p in spec.parameters if p.kind == "PORT"), None)
        if port is not None and not port.required:
            assert spec.default_port is not None, spec.code
        if port is not None and port.required:
            assert spec.default_port is None, spec.code


def _kinds(code):
    return [(p.key, p.kind, p.required) for p in by_code(code).parameters]


def test_parameters_of_representative_types():
    gui = [("host", "HOST", True), ("instance_number", "INSTANCE_NUMBER", True)]
    assert _kinds("R3_SUPPORT") == gui
    assert _kinds("R3_SUPPORT_SNC_SSO") == gui + [("snc_name", "STRING", True)]
    assert _kinds("SAPGUI_BROWSER") == gui + [("url", "URL", True)]
    assert _kinds("SAP_NI")[:2] == gui
    assert _kinds("HTTP_CONNECT_URL") == [("url", "URL", True)]
    assert _kinds("HTTP_CONNECT_SNC_SSO") == [("url", "URL", True), ("snc_name", "STRING", True)]
    for code in ("SSH", "TELNET", "VNC", "WTS", "WTS_NLA", "CITRIX_METAFRAME", "AS400_5250", "SECURE_AS400"):
        assert _kinds(code) == [("host", "HOST", True), ("port", "PORT", False)], code
    assert _kinds("JDBC_ODBC") == [("host", "HOST", True), ("port", "PORT", True), ("database", "DATABASE", True)]
    assert _kinds("HANA") == [("host", "HOST", True), ("port", "PORT", False), ("database", "DATABASE", False)]
    assert _kinds("HANA_MDC") == [("host", "HOST", True), ("port", "PORT", False), ("database", "DATABASE", True)]
    assert by_code("HANA_MDC").parameters[2].display_name == "Tenant database"
    assert _kinds("SAP_DB")[2] == ("database", "DATABASE", True)


@pytest.mark.parametrize(
    "code,port",
    [("SSH", 22), ("TELNET", 23), ("VNC", 5900), ("WTS", 3389), ("WTS_NLA", 3389), ("HANA", 30015),
     ("HANA_MDC", 30013), ("R3_SUPPORT", 3200), ("CITRIX_METAFRAME", 1494), ("AS400_5250", 23),
     ("SECURE_AS400", 992), ("HTTP_CONNECT_URL", 443), ("JDBC_ODBC", None), ("GOTOASSIST", None)],
)
def test_default_ports(code, port):
    assert by_code(code).default_port == port


def test_max_open_hours_tiers():
    for spec in CONNECTION_TYPES:
        assert spec.max_open_hours in (INITIAL.APPLICATION_ACCESS_HOURS, INITIAL.PRIVILEGED_ACCESS_HOURS)
        if spec.category in ("SAP_GUI", "SOLUTION_MANAGER"):
            assert spec.max_open_hours == 24 * 14, spec.code
        if spec.category == "APPLICATION_SHARING_OS":
            assert spec.max_open_hours == 72, spec.code
    for code in ("JDBC_ODBC", "HANA", "HANA_MDC", "SAP_DB", "JAVA_DEBUG", "WINDOWS_REMOTE_DEBUG"):
        assert by_code(code).max_open_hours == 72
    assert INITIAL.PRIVILEGED_ACCESS_HOURS < INITIAL.APPLICATION_ACCESS_HOURS


def test_specs_are_frozen():
    spec = by_code("SSH")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.code = "X"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.parameters[0].required = False  # type: ignore[misc]
    assert isinstance(CONNECTION_TYPES, tuple)
    assert all(isinstance(t.parameters, tuple) for t in CONNECTION_TYPES)


def test_spec_constructors_reject_bad_values():
    with pytest.raises(ValueError):
        ParameterSpec("x", "X", "NUMBER", True, "d")
    with pytest.raises(ValueError):
        ConnectionTypeSpec("bad code", "n", "SAP_GUI", "d", "", (), None, 1)
    with pytest.raises(ValueError):
        ConnectionTypeSpec("X" * 41, "n", "SAP_GUI", "d", "", (), None, 1)
    with pytest.raises(ValueError):
        ConnectionTypeSpec("OK", "n", "NOPE", "d", "", (), None, 1)


# --- by_code --------------------------------------------------------------------------------------


def test_by_code_finds_every_type():
    for spec in CONNECTION_TYPES:
        assert by_code(spec.code) is spec


@pytest.mark.parametrize("code", ["", "ssh", "NOPE", " SSH", "R/3 Support"])
def test_by_code_unknown_is_none(code):
    assert by_code(code) is None


# --- validate_parameters --------------------------------------------------------------------------

VALID = {
    "STRING": "p:CN=PRD, O=Example, C=DE",
    "HOST": "sapprd01.example.com",
    "PORT": "3200",
    "URL": "https://sapprd01.example.com:44300/sap/bc/gui/sap/its/webgui",
    "INSTANCE_NUMBER": "00",
    "DATABASE": "HDB",
}


def _all_params(spec):
    return {p.key: VALID[p.kind] for p in spec.parameters}


def _required_params(spec):
    return {p.key: VALID[p.kind] for p in spec.parameters if p.required}


@pytest.mark.parametrize("spec", CONNECTION_TYPES, ids=lambda s: s.code)
def test_valid_parameters_pass(spec):
    assert validate_parameters(spec, _all_params(spec)) == []
    assert validate_parameters(spec, _required_params(spec)) == []


@pytest.mark.parametrize("spec", CONNECTION_TYPES, ids=lambda s: s.code)
def test_missing_required_parameters_are_named(spec):
    required = [p.key for p in spec.parameters if p.required]
    assert validate_parameters(spec, {}) == [(key, "is required") for key in required]


def test_required_empty_value_is_missing_and_optional_empty_is_absent():
    ssh = by_code("SSH")
    assert validate_parameters(ssh, {"host": "", "port": ""}) == [("host", "is required")]
    assert validate_parameters(ssh, {"host": "h1"}) == []


def test_unknown_keys_are_named_in_sorted_order():
    problems = validate_parameters(by_code("SSH"), {"host": "h1", "zeta": "1", "alpha": "2"})
    assert [key for key, _ in problems] == ["alpha", "zeta"]
    assert all("not a parameter" in problem for _, problem in problems)
    assert validate_parameters(by_code("GOTOASSIST"), {}) == []
    assert [k for k, _ in validate_parameters(by_code("GOTOASSIST"), {"host": "h"})] == ["host"]


def test_several_problems_are_all_reported_in_declaration_order():
    problems = validate_parameters(by_code("JDBC_ODBC"), {"port": "0", "database": "1x", "extra": "x"})
    assert [key for key, _ in problems] == ["host", "port", "database", "extra"]


def test_non_string_value_is_rejected():
    assert validate_parameters(by_code("SSH"), {"host": "h", "port": 22}) == [("port", "must be a string")]


def _problem(code, key, value, base=None):
    params = dict(base if base is not None else _required_params(by_code(code)))
    params[key] = value
    return [k for k, _ in validate_parameters(by_code(code), params)]


@pytest.mark.parametrize(
    "value",
    ["sapprd01", "sap-prd.example.com", "SAPPRD.EXAMPLE.COM", "a", "xn--bcher-kva.example", "10.0.0.1",
     "0.0.0.0", "255.255.255.255", "::1", "2001:db8::1", "fe80::1%eth0", "a" * 63, "h1.example.com"],
)
def test_host_valid(value):
    assert _problem("SSH", "host", value) == []


@pytest.mark.parametrize(
    "value",
    ["-bad", "bad-", "a..b", ".lead", "trail.", "under_score", "host name", "999.1.1.1", "10.0.0.256",
     "1.2.3", "12345", "[::1]", "gggg::1", "a" * 64, ".".join(["a" * 63] * 4), "büro.example", "h/1",
     "host:22", "http://host"],
)
def test_host_invalid_is_named(value):
    assert _problem("SSH", "host", value) == ["host"]


@pytest.mark.parametrize("value", ["1", "22", "65535", "3200"])
def test_port_valid_boundaries(value):
    assert _problem("SSH", "port", value) == []


@pytest.mark.parametrize("value", ["0", "65536", "100000", "-1", "+22", " 22", "22 ", "2 2", "abc", "22.0",
                                   "\u0662\u0662", "0x16"])
def test_port_invalid_boundaries_are_named(value):
    assert _problem("SSH", "port", value) == ["port"]


def test_port_problem_text():
    assert validate_parameters(by_code("SSH"), {"host": "h", "port": "0"}) == [
        ("port", "must be a port number between 1 and 65535")
    ]


@pytest.mark.parametrize("value", ["00", "01", "42", "99"])
def test_instance_number_valid(value):
    assert _problem("R3_SUPPORT", "instance_number", value) == []


@pytest.mark.parametrize("value", ["0", "7", "100", "000", "-1", "ab", "7 ", " 7", "1a", "\u0660\u0660"])
def test_instance_number_invalid_is_named(value):
    assert _problem("R3_SUPPORT", "instance_number", value) == ["instance_number"]


@pytest.mark.parametrize(
    "value",
    ["https://sap.example.com", "http://10.0.0.1:8000/sap/bc/gui", "https://[2001:db8::1]:44300/x",
     "HTTPS://SAP.EXAMPLE.COM/", "https://host:65535/", "https://host:1", "http://sapprd01/nwbc?x=1#y"],
)
def test_url_valid(value):
    assert _problem("HTTP_CONNECT_URL", "url", value) == []


@pytest.mark.parametrize(
    "value",
    ["ftp://host/x", "sap.example.com", "https://", "https:///path", "http:/host", "https://bad_host/",
     "https://host:0/", "https://host:65536/", "https://host:abc/", "https://ho st/", "javascript:alert(1)",
     "https://host/\npath", "https://-host/", "//host/path", "file:///etc/passwd"],
)
def test_url_invalid_is_named(value):
    assert _problem("HTTP_CONNECT_URL", "url", value) == ["url"]


def test_url_with_credentials_is_rejected():
    problems = validate_parameters(by_code("HTTP_CONNECT_URL"), {"url": "https://user:secret@host/"})
    assert [k for k, _ in problems] == ["url"]
    assert "credentials" in problems[0][1]
    assert "secret" not in problems[0][1]


@pytest.mark.parametrize("value", ["HDB", "a", "A" + "b" * 63, "tenant_01", "SYSTEMDB"])
def test_database_valid(value):
    assert _problem("HANA_MDC", "database", value) == []


@pytest.mark.parametrize("value", ["1db", "_db", "db-x", "db x", "A" + "b" * 64, "dé", "db;drop"])
def test_database_invalid_is_named(value):
    assert _problem("HANA_MDC", "database", value) == ["database"]


def test_value_length_limit_is_255():
    base = _required_params(by_code("R3_SUPPORT_SNC_SSO"))
    assert _problem("R3_SUPPORT_SNC_SSO", "snc_name", "x" * 255, base) == []
    problems = validate_parameters(by_code("R3_SUPPORT_SNC_SSO"), {**base, "snc_name": "x" * 256})
    assert problems == [("snc_name", "must be at most 255 characters")]
    long_url = "https://host/" + "p" * 243
    assert len(long_url) == 256
    assert _problem("HTTP_CONNECT_URL", "url", long_url) == ["url"]
    assert _problem("HTTP_CONNECT_URL", "url", long_url[:-1]) == []


@pytest.mark.parametrize("value", ["a\nb", "a\tb", "a\x00b", "a\x7fb"])
def test_control_characters_are_rejected(value):
    assert _problem("R3_SUPPORT_SNC_SSO", "snc_name", value) == ["snc_name"]
