"""rsctl without a server: parsing, exit codes, error messages from google.rpc.Status, the session file,
times, names, and output formatting."""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import stat

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from remotesupport.authz.v1 import authz_pb2
from remotesupport.connections.v1 import connections_pb2
from remotesupport.depot.v1 import depot_pb2
from rsctl import args as rs_args
from rsctl import errors
from rsctl.cli import build_parser, main, parse_args
from rsctl.client import Addresses, Tls
from rsctl.commands import log as log_cmd
from rsctl.config import Session, SessionStore, default_config_dir, read_token_file
from rsctl.names import Names
from rsctl.output import Output, clean, describe, enum_name, table, col


def run(argv, *, stdin="", environ=None):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err, environ=environ or {})
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def leaf_parsers(parser, prefix=()):
    """Every (command path, parser) of the command tree, aliases skipped."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from leaf_parsers(sub, prefix + (name,))
            return
    yield prefix, parser


def test_every_command_has_a_help_text():
    leaves = dict(leaf_parsers(build_parser()))
    assert ("logon", "reveal") in leaves and ("incident-logon",) in leaves and ("log", "export") in leaves
    assert len(leaves) >= 45
    for path, parser in leaves.items():
        text = parser.format_help()
        assert text.startswith("usage: rsctl " + " ".join(path)) and "--json" in text, path
    code, out, _ = run(["logon", "add", "--help"])
    assert code == 0 and "--secret-stdin" in out


def test_top_level_help_documents_the_exit_codes():
    code, out, _ = run(["--help"])
    assert code == 0
    for line in ("3  not logged in", "4  permission denied", "5  not found", "6  request problem",
                 "7  service unreachable", "8  integrity failure"):
        assert line in out


def test_global_options_work_before_and_after_the_command():
    before = parse_args(["--json", "--address", "h:1", "users", "list"], {})
    after = parse_args(["users", "list", "--json", "--address", "h:1"], {})
    for parsed in (before, after):
        assert parsed.json is True and parsed.address == "h:1" and parsed.timeout == 10.0
    assert parse_args(["users", "list"], {}).json is False


def test_usage_errors_exit_2_and_there_is_no_password_option():
    assert run([])[0] == 2
    assert run(["users"])[0] == 2
    code, _, err = run(["login", "S0000000001", "--password", "secret-in-argv"])
    assert code == 2 and "unrecognized arguments" in err
    code, _, err = run(["auth", "grant", "S0000000001", "EDIT_EVERYTHING"])
    assert code == 2 and "edit-all-login-data" in err


def test_password_needs_a_terminal_or_stdin_flag(tmp_path):
    code, _, err = run(["--config-dir", str(tmp_path), "--address", "127.0.0.1:1", "login", "S0000000001"])
    assert code == 2 and "--password-stdin" in err


def test_config_dir_default_order(tmp_path):
    assert default_config_dir({"RSCTL_CONFIG_DIR": str(tmp_path)}) == tmp_path
    assert default_config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "rsctl"
    assert default_config_dir({}).parts[-2:] == (".config", "rsctl")


def test_address_precedence():
    env = {"RSCTL_ADDRESS": "env:1", "RSCTL_DEPOT_ADDRESS": "depot-env:3"}
    assert Addresses.resolve({}, None, {}).of("authz") == "127.0.0.1:50051"
    resolved = Addresses.resolve(env, None, {})
    assert resolved.of("authz") == "env:1" and resolved.of("depot") == "depot-env:3"
    flagged = Addresses.resolve(env, "flag:2", {"connections": "conn-flag:4"})
    assert flagged.of("depot") == "flag:2" and flagged.of("connections") == "conn-flag:4"


def test_tls_resolution(tmp_path):
    assert not Tls.resolve({}).enabled
    assert Tls.resolve({"RSCTL_TLS": "1"}).enabled
    assert Tls.resolve({}, ca_file=tmp_path / "ca.pem").enabled
    with pytest.raises(errors.CliError) as err:
        Tls.resolve({}, cert_file=tmp_path / "c.pem")
    assert err.value.exit_code == errors.USAGE


# --- exit codes and error messages -------------------------------------------------------------------------

@pytest.mark.parametrize("code, exit_code", [
    (grpc.StatusCode.OK, 0), (grpc.StatusCode.UNAUTHENTICATED, 3), (grpc.StatusCode.PERMISSION_DENIED, 4),
    (grpc.StatusCode.NOT_FOUND, 5), (grpc.StatusCode.INVALID_ARGUMENT, 6), (grpc.StatusCode.FAILED_PRECONDITION, 6),
    (grpc.StatusCode.ABORTED, 6), (grpc.StatusCode.ALREADY_EXISTS, 6), (grpc.StatusCode.UNAVAILABLE, 7),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 7), (grpc.StatusCode.DATA_LOSS, 8), (grpc.StatusCode.INTERNAL, 1),
    (grpc.StatusCode.UNKNOWN, 1), (grpc.StatusCode.UNIMPLEMENTED, 1), (grpc.StatusCode.RESOURCE_EXHAUSTED, 1),
])
def test_exit_code_mapping(code, exit_code):
    assert errors.exit_code_for(code) == exit_code


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, message, details=()):
        self._code, self._message = code, message
        status = status_pb2.Status(code=code.value[0], message=message)
        for detail in details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            status.details.append(holder)
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),) if details else ()

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._trailers


def test_permission_denied_names_the_required_authorization():
    info = error_details_pb2.ErrorInfo(reason="PERMISSION_DENIED", domain="remotesupport",
                                       metadata={"required_authorizations": "EDIT_ALL_LOGIN_DATA", "request_id": "r1"})
    err = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "you may not", [info]), "a (depot)")
    assert err.exit_code == 4
    assert err.lines() == ["rsctl: PERMISSION_DENIED: you may not",
                           "  reason PERMISSION_DENIED; required authorization EDIT_ALL_LOGIN_DATA; request id r1"]


def test_invalid_argument_lists_field_violations():
    info = error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="remotesupport")
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="system.system_id", description="must be a SID"),
        error_details_pb2.BadRequest.FieldViolation(field="system.installation_number", description="is required")])
    err = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "system.system_id: must be a SID",
                                             [info, bad]), "a (connections)")
    assert err.exit_code == 6
    assert err.lines() == ["rsctl: INVALID_ARGUMENT: system.system_id: must be a SID",
                           "  field system.installation_number: is required",
                           "  reason INVALID_ARGUMENT"]


def test_transport_errors_say_where():
    err = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"), "h:1 (authz service)")
    assert err.exit_code == 7
    assert err.lines() == ["rsctl: UNAVAILABLE: cannot reach h:1 (authz service): connection refused"]
    err = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!"), "h:1 (depot service)")
    assert err.exit_code == 1 and "point --address at the gateway" in err.message


def test_unauthenticated_says_how_to_log_in():
    err = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "token expired"), "h:1 (authz service)")
    assert err.exit_code == 3 and "rsctl login USER_ID" in err.message


def test_not_logged_in_exits_3_without_calling(tmp_path):
    code, out, err = run(["--config-dir", str(tmp_path), "--address", "127.0.0.1:1", "systems", "list",
                          "--customer", "1"])
    assert (code, out) == (3, "") and err == "rsctl: UNAUTHENTICATED: not logged in; run 'rsctl login USER_ID' first\n"


def test_an_unexpected_fault_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    from rsctl.commands import types

    def boom(ctx):
        raise ValueError("unexpected")

    monkeypatch.setattr(types, "list_", boom)
    code, _, err = run(["types", "list"], environ={"RSCTL_CONFIG_DIR": str(tmp_path)})
    assert code == 1 and err.startswith("rsctl: internal error: ValueError: unexpected")


# --- the session file --------------------------------------------------------------------------------------

def test_session_file_is_written_0600_atomically(tmp_path):
    store = SessionStore(tmp_path / "cfg")
    path = store.save(Session(token="rs_secret", user="users/S0000000001", customer="customers/1"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["session.json"]
    os.chmod(path, 0o644)
    assert store.loose_permissions()
    store.save(Session(token="rs_other"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and store.load().token == "rs_other"
    assert "token" not in store.load().public()


def test_adopting_a_token_file(tmp_path):
    token_file = tmp_path / "admin.token"
    token_file.write_text("rs_admin_token\n")
    code, out, _ = run(["--config-dir", str(tmp_path / "cfg"), "login", "admin", "--token-file", str(token_file),
                        "--json"])
    assert code == 0 and "rs_admin_token" not in out
    assert json.loads(out)["user"] == "users/admin"
    assert SessionStore(tmp_path / "cfg").load().token == "rs_admin_token"
    assert read_token_file(token_file) == "rs_admin_token"
    code, out, _ = run(["--config-dir", str(tmp_path / "cfg"), "logout"])
    assert code == 0 and "stays valid" in out and not (tmp_path / "cfg" / "session.json").exists()


def test_corrupt_session_file_is_not_logged_in(tmp_path):
    (tmp_path / "session.json").write_text("{not json")
    with pytest.raises(errors.CliError) as err:
        SessionStore(tmp_path).load()
    assert err.value.exit_code == 3


# --- times, enums, names --------------------------------------------------------------------------------

def test_parse_time_forms():
    ref = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert rs_args.parse_time("2026-12-01T08:00:00Z") == dt.datetime(2026, 12, 1, 8, tzinfo=dt.timezone.utc)
    assert rs_args.parse_time("2026-12-01T10:00:00+02:00") == dt.datetime(2026, 12, 1, 8, tzinfo=dt.timezone.utc)
    assert rs_args.parse_time("2026-12-01") == dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    assert rs_args.parse_time("now", reference=ref) == ref
    assert rs_args.parse_time("+2h", reference=ref) == ref + dt.timedelta(hours=2)
    assert rs_args.parse_time("+7d", reference=ref) == ref + dt.timedelta(days=7)
    with pytest.raises(argparse.ArgumentTypeError):
        rs_args.parse_time("tomorrow")


def test_enum_arguments_accept_short_names_in_any_case():
    auth = rs_args.EnumArg(authz_pb2.Authorization)
    for text in ("EDIT_ALL_LOGIN_DATA", "edit-all-login-data", "AUTHORIZATION_EDIT_ALL_LOGIN_DATA",
                 "Edit all Login Data"):
        assert auth(text) == authz_pb2.AUTHORIZATION_EDIT_ALL_LOGIN_DATA
    with pytest.raises(argparse.ArgumentTypeError):
        auth("UNSPECIFIED")


def test_short_names_resolve_against_the_default_customer():
    names = Names("customers/12")
    assert names.customer(None) == "customers/12" and names.customer("7") == "customers/7"
    assert names.system("4711") == names.system("systems/4711") == "customers/12/systems/4711"
    assert names.system("customers/9/systems/1") == "customers/9/systems/1"
    assert names.incident("ab12") == "customers/12/incidents/ab12"
    assert names.logon("x1", "4711") == "customers/12/systems/4711/logonData/x1"
    assert names.window("systems/1/connections/c") == "customers/12/systems/1/connections/c"
    assert names.user("S0000000001") == "users/S0000000001"
    assert names.connection_type("r3-support") == "connectionTypes/R3_SUPPORT"
    with pytest.raises(errors.CliError) as err:
        Names("").system("4711")
    assert err.value.exit_code == 2 and "customers/{c}/systems/4711" in err.value.message


# --- output -----------------------------------------------------------------------------------------------

def test_table_aligns_columns_and_formats_values():
    rows = [connections_pb2.Connection(name="customers/1/systems/2/connections/a", state=2),
            connections_pb2.Connection(name="customers/1/systems/2/connections/bb", state=3)]
    rows[0].start_time.FromDatetime(dt.datetime(2026, 12, 1, 8, 0, 5))
    lines = table(rows, [col("name"), col("state"), col("start_time", "start")])
    assert lines == ["NAME                                  STATE   START",
                     "customers/1/systems/2/connections/a   OPEN    2026-12-01T08:00:05Z",
                     "customers/1/systems/2/connections/bb  CLOSED"]


def test_describe_formats_maps_bools_enums_and_nested_messages():
    setup = connections_pb2.ConnectionSetup(name="n", parameters={"port": "22", "host": "h"})
    assert "parameters:      host=h, port=22" in describe(setup)
    entry = depot_pb2.LogonData(kind=1, has_secret=True)
    lines = describe(entry)
    assert "kind:                SYSTEM_USER" in lines and "has_secret:          yes" in lines
    ctype = connections_pb2.ConnectionType(code="SSH", parameters=[connections_pb2.ParameterSpec(key="host")])
    assert any(line.strip().startswith("- key:") for line in describe(ctype))
    assert enum_name(authz_pb2.PrincipalKind.DESCRIPTOR, 2) == "SUPPORT_ENGINEER"


def test_json_output_uses_proto_field_names_and_prints_defaults():
    out = io.StringIO()
    Output(out, io.StringIO(), json_mode=True).listing("users", [authz_pb2.User(user_id="S1", kind=1)], [])
    doc = json.loads(out.getvalue())
    assert doc == {"users": [{"name": "", "user_id": "S1", "kind": "PRINCIPAL_KIND_CUSTOMER_USER", "customer": "",
                              "display_name": "", "email": "", "disabled": False, "password_set": False}]}


def test_text_output_neutralises_terminal_escapes():
    assert clean("a\x1b[31mred\nline") == "a?[31mred line"


def test_log_csv_has_a_header_row_and_guards_formulas():
    event = depot_pb2.LogEvent(sequence=1, action=4, outcome=1, actor="users/S1", detail="=HYPERLINK(1)")
    event.event_time.FromDatetime(dt.datetime(2026, 12, 1, 8, 0, 0, 123000))
    lines = log_cmd.csv_text([event]).splitlines()
    assert lines[0].startswith("sequence,event_time,action,outcome,actor,system,logon_data,incident,detail")
    assert lines[1].startswith("1,2026-12-01T08:00:00.123Z,REVEAL,SUCCESS,users/S1,,,,'=HYPERLINK(1)")


def test_name_only_prints_just_the_names():
    out = io.StringIO()
    names_only = Output(out, io.StringIO(), json_mode=False, name_only=True)
    names_only.resource(connections_pb2.System(name="customers/1/systems/2", system_id="PRD"))
    names_only.listing("systems", [connections_pb2.System(name="customers/1/systems/3")], [col("name")])
    names_only.note("a remark")
    assert out.getvalue() == "customers/1/systems/2\ncustomers/1/systems/3\n"
    code, _, err = run(["types", "list", "--json", "--name-only"])
    assert code == 2 and "exclude each other" in err


# --- users: one-time codes, four eyes, the identity log (against a fake authz) ---------------------------------

HASH = "ab" * 32


@pytest.fixture
def fake_authz(monkeypatch):
    """Client.call answered from `answers` (method -> request -> response); every call is recorded."""
    from rsctl.client import Client

    calls, answers = [], {}

    def call(self, service, method, request, *, authenticated=True):
        calls.append((service, method, request, authenticated))
        return answers[method](request)

    monkeypatch.setattr(Client, "call", call)
    return calls, answers


def test_users_create_needs_email_and_takes_no_password():
    code, _, err = run(["users", "create", "S0000000001", "--name", "N", "--customer", "1"])
    assert code == 2 and "--email" in err
    code, _, err = run(["users", "create", "S0000000001", "--name", "N", "--email", "n@example.com",
                        "--password-stdin"], stdin="a long password 1\n")
    assert code == 2 and "unrecognized arguments: --password-stdin" in err


def test_users_create_sends_the_address_and_says_a_code_was_mailed(fake_authz, tmp_path):
    calls, answers = fake_authz
    answers["CreateUser"] = lambda r: authz_pb2.CreateUserResponse(user=authz_pb2.User(
        name=f"users/{r.user.user_id}", user_id=r.user.user_id, email=r.user.email, customer=r.user.customer))
    code, out, _ = run(["users", "create", "S0000000001", "--name", "Ada", "--email", "ada@example.com",
                        "--customer", "12"], environ={"RSCTL_TOKEN": "t", "RSCTL_CONFIG_DIR": str(tmp_path)})
    [(service, method, request, authenticated)] = calls
    assert (service, method, authenticated) == ("authz", "CreateUser", True)
    assert request.initial_password == "" and request.user.email == "ada@example.com"
    assert request.user.customer == "customers/12"
    assert code == 0 and "A one-time code was mailed to ada@example.com" in out
    assert "rsctl users set-password S0000000001 --code CODE" in out
    code, out, _ = run(["users", "create", "S0000000001", "--name", "Ada", "--email", "ada@example.com",
                        "--customer", "12", "--json"], environ={"RSCTL_TOKEN": "t", "RSCTL_CONFIG_DIR": str(tmp_path)})
    assert code == 0 and json.loads(out)["email"] == "ada@example.com"  # one JSON document, no remark


def test_set_password_is_public_and_reads_the_password_like_login(fake_authz, tmp_path):
    calls, answers = fake_authz
    answers["SetPassword"] = lambda r: authz_pb2.SetPasswordResponse()
    environ = {"RSCTL_CONFIG_DIR": str(tmp_path)}  # no session: none is needed
    code, out, _ = run(["users", "set-password", "users/S0000000001", "--code", " ABCDE-FGHIJ-KLMNO-PQRST ",
                        "--password-stdin"], stdin="a long password 1\n", environ=environ)
    [(_, method, request, authenticated)] = calls
    assert (method, authenticated) == ("SetPassword", False)
    assert (request.user_id, request.code, request.new_password) == (
        "S0000000001", "ABCDE-FGHIJ-KLMNO-PQRST", "a long password 1")
    assert code == 0 and "rsctl login S0000000001" in out and "a long password 1" not in out
    assert run(["users", "set-password", "S1"])[0] == 2  # --code is required
    code, _, err = run(["users", "set-password", "S1", "--code", "C", "--password", "in-argv"])
    assert code == 2 and "unrecognized arguments" in err
    code, _, err = run(["users", "set-password", "S1", "--code", "C"], environ=environ)
    assert code == 2 and "--password-stdin" in err
    code, _, err = run(["users", "set-password", "S1", "--code", "C", "--password-stdin"], environ=environ)
    assert code == 2 and "no new password on standard input" in err
    assert len(calls) == 1


def test_set_password_refused_exits_3(monkeypatch, tmp_path):
    from rsctl.client import Client

    def refuse(self, service, method, request, *, authenticated=True):
        raise errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "the code is wrong"), "a (authz)")

    monkeypatch.setattr(Client, "call", refuse)
    code, out, err = run(["users", "set-password", "S1", "--code", "C", "--password-stdin"],
                         stdin="a long password 1\n", environ={"RSCTL_CONFIG_DIR": str(tmp_path)})
    assert (code, out) == (3, "") and err.startswith("rsctl: UNAUTHENTICATED: the code is wrong")


def test_reset_password_says_where_the_code_went(fake_authz):
    calls, answers = fake_authz
    response = authz_pb2.ResetPasswordResponse(user=authz_pb2.User(name="users/S1", user_id="S1", email="s@x.example"))
    response.code_expire_time.FromDatetime(dt.datetime(2026, 12, 1, 8, 0))
    answers["ResetPassword"] = lambda r: response
    code, out, _ = run(["users", "reset-password", "S1"], environ={"RSCTL_TOKEN": "t"})
    assert calls[0][2] == authz_pb2.ResetPasswordRequest(name="users/S1")
    assert code == 0 and "mailed to s@x.example, valid until 2026-12-01T08:00:00Z" in out
    code, out, _ = run(["users", "reset-password", "S1", "--json"], environ={"RSCTL_TOKEN": "t"})
    assert json.loads(out)["code_expire_time"] == "2026-12-01T08:00:00Z"


def test_approve_and_grants_show_the_state_and_the_approver(fake_authz):
    calls, answers = fake_authz
    pending = authz_pb2.Grant(user="users/S2", authorization=authz_pb2.AUTHORIZATION_EDIT_ALL_LOGIN_DATA,
                              state=authz_pb2.GRANT_STATE_PENDING_APPROVAL, granted_by="users/S1")
    active = authz_pb2.Grant(user="users/S2", authorization=authz_pb2.AUTHORIZATION_EDIT_ALL_LOGIN_DATA,
                             state=authz_pb2.GRANT_STATE_ACTIVE, granted_by="users/S1", approved_by="users/S3")
    answers["GrantAuthorization"] = lambda r: authz_pb2.GrantAuthorizationResponse(grant=pending)
    answers["ApproveAuthorization"] = lambda r: authz_pb2.ApproveAuthorizationResponse(grant=active)
    answers["ListAuthorizations"] = lambda r: authz_pb2.ListAuthorizationsResponse(grants=[active])
    code, out, _ = run(["auth", "grant", "S2", "edit-all-login-data"], environ={"RSCTL_TOKEN": "t"})
    assert code == 0 and "PENDING_APPROVAL" in out and "rsctl users approve S2 EDIT_ALL_LOGIN_DATA" in out
    code, out, _ = run(["users", "approve", "S2", "edit-all-login-data"], environ={"RSCTL_TOKEN": "t"})
    assert calls[-1][2] == authz_pb2.ApproveAuthorizationRequest(
        user="users/S2", authorization=authz_pb2.AUTHORIZATION_EDIT_ALL_LOGIN_DATA)
    assert code == 0 and "approved_by:" in out and "users/S3" in out
    code, out, _ = run(["users", "grants", "S2"], environ={"RSCTL_TOKEN": "t"})
    assert out.splitlines() == ["AUTHORIZATION        INSTALLATIONS  STATE   GRANTED_BY  APPROVED_BY  GRANTED",
                                "EDIT_ALL_LOGIN_DATA  all            ACTIVE  users/S1    users/S3"]
    assert run(["users", "approve", "S2", "EDIT_EVERYTHING"])[0] == 2


def test_users_log_follows_every_page_or_stops_at_limit(fake_authz):
    calls, answers = fake_authz
    pages = {"": (["1", "2"], "p2"), "p2": (["3"], "")}

    def page(request):
        sequences, token = pages[request.page_token]
        return authz_pb2.ListIdentityEventsResponse(next_page_token=token, events=[
            authz_pb2.IdentityEvent(sequence=int(n), actor="users/S1", action="GRANTED", target="users/S2")
            for n in sequences])

    answers["ListIdentityEvents"] = page
    code, out, _ = run(["users", "log", "12", "--json"], environ={"RSCTL_TOKEN": "t"})
    assert code == 0 and [e["sequence"] for e in json.loads(out)["events"]] == ["1", "2", "3"]
    assert [c[2].parent for c in calls] == ["customers/12", "customers/12"]
    calls.clear()
    code, out, _ = run(["users", "log", "12", "--limit", "2"], environ={"RSCTL_TOKEN": "t"})
    assert code == 0 and len(out.splitlines()) == 3 and calls[0][2].page_size == 2 and len(calls) == 1
    calls.clear()
    run(["users", "log"], environ={"RSCTL_TOKEN": "t"})  # no customer at all: the vendor side's log
    assert calls[0][2].parent == ""


def test_verify_log_prints_the_head_and_exits_8_when_not_valid(fake_authz, tmp_path):
    calls, answers = fake_authz
    verdicts = []
    answers["VerifyIdentityLog"] = lambda r: verdicts.pop(0)
    env = {"RSCTL_TOKEN": "t"}
    verdicts.append(authz_pb2.VerifyIdentityLogResponse(valid=True, events_checked=5,
                                                        head=authz_pb2.IdentityLogHead(sequence=5, hash=HASH)))
    head_file = tmp_path / "head.txt"
    code, out, _ = run(["users", "verify-log", "12", "--save-head", str(head_file)], environ=env)
    assert code == 0 and f"Head: 5:{HASH}" in out and head_file.read_text() == f"5:{HASH}\n"
    assert "The identity log of customers/12 is intact: 5 events verified." in out
    verdicts.append(authz_pb2.VerifyIdentityLogResponse(
        valid=False, events_checked=3, first_broken_sequence=3, problem="the log ends at event 3",
        head=authz_pb2.IdentityLogHead(sequence=3, hash=HASH)))
    code, out, _ = run(["users", "verify-log", "12", "--since-head", f"@{head_file}"], environ=env)
    assert calls[-1][2].kept_head == authz_pb2.IdentityLogHead(sequence=5, hash=HASH)
    assert code == 8 and "BROKEN at event 3 (3 events checked): the log ends at event 3" in out
    verdicts.append(authz_pb2.VerifyIdentityLogResponse(valid=True, events_checked=0, head=authz_pb2.IdentityLogHead(
        sequence=0, hash="0" * 64)))
    empty_file = tmp_path / "empty.txt"
    code, out, err = run(["users", "verify-log", "12", "--save-head", str(empty_file)], environ=env)
    assert code == 0 and "Head:" not in out and "no head to save" in err and not empty_file.exists()
    verdicts.append(authz_pb2.VerifyIdentityLogResponse(valid=True, events_checked=1,
                                                        head=authz_pb2.IdentityLogHead(sequence=1, hash=HASH)))
    code, out, _ = run(["users", "verify-log", "--json"], environ=env)  # no customer: the vendor side's log
    assert code == 0 and calls[-1][2].parent == "" and json.loads(out)["head"]["sequence"] == "1"
    code, _, err = run(["users", "verify-log", "12", "--since-head", "0:" + HASH], environ=env)
    assert code == 2 and "is not a head" in err
