"""rsctl through a running suite (authz, connections, depot in-process, and the gateway when it exists):
the seed's flow end to end, --json documents, and every class of error with its exit code and message. Users
are made as the README makes them: each sets its password with the one-time code authz mailed to it (read from
the suite's mail sink); a second user administrator approves what needs four eyes; the identity log verifies.

Most invocations run rsctl's main() in a worker thread (the in-process servers keep serving on the event
loop); a few run `python -m rsctl.cli` as a real process, to cover the entry point itself."""
from __future__ import annotations

import asyncio
import csv
import importlib
import importlib.util
import io
import json
import os
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from sqlalchemy import create_engine, text

from rsctl.cli import main
from tests.harness import TEST_PASSWORD, code_in, email_of

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]
SECRET = "S3cret-Of-The-Depot!42"
HAS_GATEWAY = importlib.util.find_spec("gateway.server") is not None


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@dataclass
class Actor:
    """One rsctl user: its own config directory (session) and the addresses of the suite."""

    config_dir: Path
    addresses: dict[str, str]

    def environ(self) -> dict[str, str]:
        return {"RSCTL_CONFIG_DIR": str(self.config_dir), **self.addresses}

    async def __call__(self, *args: str, stdin: str = "", expect: int | None = 0) -> Result:
        """Run rsctl in a worker thread; by default it must exit 0."""
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(main, list(args), stdin=io.StringIO(stdin), stdout=out, stderr=err,
                                       environ=self.environ())
        return _checked(Result(code, out.getvalue(), err.getvalue()), args, expect)

    async def process(self, *args: str, stdin: str = "", expect: int | None = 0) -> Result:
        """Run `python -m rsctl.cli` as its own process."""
        self.config_dir.parent.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rsctl.cli", *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=self.config_dir.parent,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]), **self.environ()})
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
        return _checked(Result(proc.returncode, out.decode(), err.decode()), args, expect)


def _checked(result: Result, args, expect: int | None) -> Result:
    assert "Traceback" not in result.err, result.err
    if expect is not None:
        assert result.code == expect, f"rsctl {' '.join(args)} exited {result.code}, not {expect}:\n{result.err}"
    if result.code != 0 and result.err:
        assert result.err.startswith("rsctl: ") or result.err.startswith("usage: "), result.err
    return result


def code_for(world, user_id: str) -> str:
    """The newest one-time code mailed to the user (rsctl itself never prints one)."""
    return code_in(world["suite"].mail.messages(email_of(user_id)))


async def enroll(world, actor: "Actor", user_id: str, password: str = TEST_PASSWORD) -> None:
    """The user sets its password with the code from its mail and logs in (as `actor`, its own rsctl)."""
    result = await actor("users", "set-password", user_id, "--code", code_for(world, user_id), "--password-stdin",
                         stdin=password + "\n")
    assert f"rsctl login {user_id}" in result.out
    await actor("login", user_id, "--password-stdin", stdin=password + "\n")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite, tmp_path_factory):
    """The gateway (when it exists) and, made with rsctl itself as the README makes them: a customer and its first
    user administrator (by the platform admin), and an operator (by the user administrator) holding every
    authorization a customer needs for the seed's flow; each sets its password with the code mailed to it."""
    if HAS_GATEWAY and "gateway" not in suite.running:
        await suite.start_service("gateway", build=importlib.import_module("gateway.server").build)
    if "gateway" in suite.running:
        addresses = {"RSCTL_ADDRESS": suite.addr["gateway"]}
    else:
        addresses = {f"RSCTL_{s.upper()}_ADDRESS": suite.addr[s] for s in ("authz", "connections", "depot")}
    tmp = tmp_path_factory.mktemp("rsctl")

    def actor(label: str) -> Actor:
        return Actor(tmp / label / "config", addresses)

    admin, user_admin, operator = actor("admin"), actor("useradmin"), actor("operator")
    await admin("login", "admin", "--token-file", str(suite.var / "admin.token"))
    customer = str(uuid.uuid4().int % (9 * 10**8) + 10**8)  # 9 digits: user ids are S + customer + 1 digit
    await admin("customers", "create", customer, "ACME Corp")
    ua_id, op_id = f"S{customer}1", f"S{customer}2"
    world = {"suite": suite, "tmp": tmp, "customer": customer, "admin": admin, "user_admin": user_admin,
             "operator": operator, "actor": actor, "ua_id": ua_id, "op_id": op_id}
    created = await admin("users", "create", ua_id, "--name", "Ada Admin", "--email", email_of(ua_id),
                          "--customer", customer)
    assert f"A one-time code was mailed to {email_of(ua_id)}" in created.out
    await admin("auth", "grant", ua_id, "USER_ADMIN")
    code = code_for(world, ua_id)
    assert code not in created.out + created.err
    await user_admin.process("users", "set-password", ua_id, "--code", code, "--password-stdin",
                             stdin=TEST_PASSWORD + "\n")
    await user_admin.process("login", ua_id, "--password-stdin", stdin=TEST_PASSWORD + "\n")
    await user_admin("users", "create", op_id, "--name", "Otto Operator", "--email", email_of(op_id))
    for authorization in ("open-remote-connections", "MAINTAIN_SYSTEM_DATA", "edit_all_login_data",
                          "CREATE_INCIDENTS"):  # EDIT_ALL at once: no other user administrator to ask
        await user_admin("auth", "grant", op_id, authorization)
    await enroll(world, operator, op_id)
    return world


async def test_login_keeps_the_token_in_a_0600_file_and_never_prints_it(world):
    user_admin = world["user_admin"]
    session_file = user_admin.config_dir / "session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    token = json.loads(session_file.read_text())["token"]
    me = await user_admin("whoami", "--json")
    assert me.json()["user"] == f"users/{world['ua_id']}" and me.json()["customer"] == f"customers/{world['customer']}"
    assert token not in me.out and "token" not in me.json()
    grants = await user_admin("auth", "list", world["op_id"], "--json")
    assert {g["authorization"] for g in grants.json()["grants"]} == {
        "AUTHORIZATION_OPEN_REMOTE_CONNECTIONS", "AUTHORIZATION_MAINTAIN_SYSTEM_DATA",
        "AUTHORIZATION_EDIT_ALL_LOGIN_DATA", "AUTHORIZATION_CREATE_INCIDENTS"}
    assert {g["state"] for g in grants.json()["grants"]} == {"GRANT_STATE_ACTIVE"}
    table = await user_admin("users", "list")
    assert table.out.splitlines()[0].split()[:3] == ["USER_ID", "KIND", "CUSTOMER"]
    assert world["op_id"] in table.out and world["ua_id"] in table.out


async def test_notifications_are_one_s_own_to_mute_and_unmute(world):
    op = world["operator"]
    shown = await op("notifications", "show")
    assert "logon-data-revealed" in shown.out and "muted" not in shown.out
    muted = (await op("notifications", "mute", "logon-data-revealed", "window-closing", "--json")).json()
    assert muted["name"] == f"users/{world['op_id']}/notificationSettings"
    assert muted["kinds"] == {"logon-data-revealed": False, "incident-taken": True, "logon-data-expiring": True,
                              "window-closing": False, "webhook-failing": True}
    again = (await op("notifications", "unmute", "window-closing", "--json")).json()
    assert again["kinds"]["window-closing"] is True and again["kinds"]["logon-data-revealed"] is False
    assert "logon-data-revealed    muted" in (await op("notifications", "show")).out
    bad = await op("notifications", "mute", "everything", expect=2)
    assert "unknown kind 'everything'" in bad.err
    await op("notifications", "unmute", "logon-data-revealed")


async def test_webhooks_are_the_user_administrators_and_show_their_secret_once(world):
    ua, op = world["user_admin"], world["operator"]
    created = await ua("webhooks", "create", "http://127.0.0.1:9/hook", "--type", "logon-data-revealed",
                       "--type", "window-opened", "--description", "SIEM intake")
    assert "Signing secret (shown this once" in created.out and "whsec_" in created.out
    name = next(line.split()[-1] for line in created.out.splitlines() if "/webhooks/" in line)
    doc = (await ua("webhooks", "get", name, "--json")).json()
    assert doc["url"] == "http://127.0.0.1:9/hook" and "secret" not in doc
    assert doc["event_types"] == ["EVENT_TYPE_LOGON_DATA_REVEALED", "EVENT_TYPE_WINDOW_OPENED"]
    assert name in (await ua("webhooks", "list")).out
    assert (await ua("webhooks", "deliveries", name, "--json")).json()["deliveries"] == []
    denied = await op("webhooks", "list", expect=4)  # the operator administers no identities
    assert "depot.webhooks.read" in denied.err
    bad = await ua("webhooks", "create", "http://example.com/hook", "--type", "window-opened", expect=6)
    assert "webhook.url" in bad.err
    assert "Deleted" in (await ua("webhooks", "delete", name)).out
    await ua("webhooks", "get", name, expect=5)


async def test_the_seed_flow_from_system_to_log_export(world):
    op, tmp, customer = world["operator"], world["tmp"], world["customer"]
    created = await op("systems", "create", "4711", "--sid", "PRD", "--installation", "20012345",
                       "--description", "ERP production", "--json")
    system = created.json()["name"]
    assert system == f"customers/{customer}/systems/4711"
    listed = await op("systems", "list", "--query", "erp")
    assert system in listed.out

    types = await op("types", "list", "--category", "sap-gui", "--json")
    assert "R3_SUPPORT" in [t["code"] for t in types.json()["connection_types"]]
    setup = await op("setups", "set", "4711", "r3-support", "host=erp.example.com", "instance_number=00", "--json")
    assert setup.json()["created"] is True and setup.json()["parameters"]["host"] == "erp.example.com"

    opened = await op("windows", "open", system, "R3_SUPPORT", "--hours", "2", "--reason", "rsctl test", "--json")
    window = opened.json()["name"]
    assert opened.json()["state"] == "CONNECTION_STATE_OPEN"
    windows = await op("windows", "list", "4711")
    assert window in windows.out and "OPEN" in windows.out

    connector_file = tmp / "download" / "stfk.oez"
    got = await op("connector", "get", window, "-o", str(connector_file))
    assert connector_file.read_bytes().startswith(b"STFK1") and "Wrote" in got.out
    assert stat.S_IMODE(connector_file.stat().st_mode) == 0o600
    verified = await op("connector", "verify", str(connector_file), "--require-usable", "--json")
    assert verified.json()["valid"] is True and verified.json()["currently_usable"] is True

    added = await op("logon", "add", system, "--kind", "system-user", "--user", "SUPPORT1", "--client", "001",
                     "--days", "7", "--notes", "for the incident", "--secret-stdin", "--json", stdin=SECRET + "\n")
    entry = added.json()["name"]
    assert added.json()["has_secret"] is True and SECRET not in added.out + added.err
    listed = await op("logon", "list", "4711")
    assert entry in listed.out and "SUPPORT1" in listed.out and SECRET not in listed.out
    revealed = await op("logon", "reveal", entry, "--reason", "rsctl test")
    assert revealed.out == SECRET + "\n" and SECRET not in revealed.err

    incident = (await op("incidents", "create", "4711", "--title", "Posting fails", "--priority", "high",
                         "--json")).json()["name"]
    change_access = await op("incident-logon", incident, "--json")
    assert change_access.json()["system"] == system
    assert [e["name"] for e in change_access.json()["logon_data"]] == [entry]
    human = await op("change-access-data", incident.rsplit("/", 1)[-1])
    assert entry in human.out and "Posting fails" in human.out
    view = await op("views", "set", "4711", incident, entry, "--json")
    assert view.json()["logon_data"] == [entry]
    assert entry in (await op("views", "get", system, incident)).out

    extended = (await op("logon", "extend", entry, "--days", "30", "--json")).json()
    assert extended["expire_time"] > (await op("logon", "get", entry, "--json")).json()["create_time"]
    too_far = await op("logon", "extend", entry, "--days", "120", expect=6)
    assert "INVALID_ARGUMENT" in too_far.err and "expire_time" in too_far.err
    updated = await op("logon", "update", entry, "--notes", "changed", "--json")
    assert updated.json()["notes"] == "changed"
    await op("logon", "update", entry, "--secret-stdin", stdin="N3w-" + SECRET + "\n")
    assert (await op("logon", "reveal", entry)).out == "N3w-" + SECRET + "\n"

    events = (await op("log", "list", "--json")).json()["events"]
    actions = [e["action"] for e in events]
    assert "LOG_ACTION_CREATE" in actions and "LOG_ACTION_REVEAL" in actions and "LOG_ACTION_UPDATE" in actions
    assert SECRET not in json.dumps(events)
    latest = (await op("log", "list", "--newest-first", "--limit", "2", "--json")).json()["events"]
    assert [e["sequence"] for e in latest] == [e["sequence"] for e in events[::-1][:2]]
    assert "intact" in (await op("log", "verify")).out
    export = tmp / "log.csv"
    await op("log", "export", customer, "--system", system, "-o", str(export))
    rows = list(csv.reader(export.read_text().splitlines()))
    assert rows[0][:4] == ["sequence", "event_time", "action", "outcome"]
    assert len(rows) == len([e for e in events if e["system"] == system]) + 1
    assert SECRET not in export.read_text()

    await op("views", "set", "4711", incident, "--clear")
    assert "Deleted" in (await op("logon", "delete", entry)).out
    extended = await op("windows", "extend", window, "--hours", "1")
    assert window in extended.out and "download a new one" in extended.out
    got_window = (await op("windows", "get", window, "--json")).json()
    assert got_window["end_time"] > opened.json()["end_time"]
    too_long = await op("windows", "extend", window, "--hours", "400", expect=6)  # R/3 Support: 14 days at most
    assert "INVALID_ARGUMENT" in too_long.err and "end_time" in too_long.err
    closed = await op("windows", "close", window, "--json")
    assert closed.json()["state"] == "CONNECTION_STATE_CLOSED"


async def test_processor_reaches_the_logon_data_from_the_incident(world):
    """The seed: "The processor at SAP who is investigating the incident can access and update the login data"."""
    op, admin = world["operator"], world["admin"]
    await op("systems", "create", "4713", "--sid", "DEV", "--installation", "20012345")
    entry = (await op("logon", "add", "4713", "--kind", "system-user", "--user", "SAPSUPPORT", "--client", "100",
                      "--expires", "+3d", "--secret-stdin", "--json", stdin=SECRET + "\n")).json()["name"]
    incident = (await op("incidents", "create", "4713", "--title", "Dump in VA01", "--priority", "very-high",
                         "--name-only")).out.strip()
    assert incident.startswith(f"customers/{world['customer']}/incidents/")
    engineer_id = f"eng{world['customer']}"
    await admin("users", "create", engineer_id, "--kind", "support-engineer", "--name", "Jane Engineer",
                "--email", email_of(engineer_id))
    engineer = world["actor"]("engineer")
    await enroll(world, engineer, engineer_id)
    before = await engineer("incident-logon", incident, expect=4)
    assert before.err.startswith("rsctl: PERMISSION_DENIED: ")
    taken = await engineer("incidents", "take", incident, "--json")
    assert taken.json()["status"] == "INCIDENT_STATUS_IN_PROCESS_AT_VENDOR"
    reached = await engineer("incident-logon", incident, "--json")
    assert [e["name"] for e in reached.json()["logon_data"]] == [entry]
    assert (await engineer("logon", "reveal", entry, "--reason", incident)).out == SECRET + "\n"
    mine = (await op("log", "list", "--actor", f"users/{engineer_id}", "--json")).json()["events"]
    assert [(e["action"], e["logon_data"]) for e in mine] == [("LOG_ACTION_REVEAL", entry)]


@pytest.mark.skipif(not HAS_GATEWAY, reason="gateway/server.py does not exist yet")
async def test_gateway_flows_prepare_overview_end(world):
    op, tmp = world["operator"], world["tmp"]
    system = (await op("systems", "create", "4712", "--sid", "QAS", "--installation", "20012345",
                       "--json")).json()["name"]
    target = tmp / "prepared.oez"
    prepared = await op("prepare", system, "SSH", "--param", "host=qas.example.com", "--hours", "1", "-o",
                        str(target), "--logon-kind", "server-os-user", "--logon-user", "root", "--secret-stdin",
                        "--json", stdin=SECRET + "\n")
    doc = prepared.json()
    assert doc["connector_file"] == str(target) and target.read_bytes().startswith(b"STFK1")
    assert doc["logon_data"]["has_secret"] is True and SECRET not in prepared.out
    overview = await op("overview", system)
    assert doc["connection"]["name"] in overview.out and doc["logon_data"]["name"] in overview.out
    ended = await op("end", doc["connection"]["name"], "--delete-logon-data", "--json")
    assert ended.json()["deleted_logon_data"] == [doc["logon_data"]["name"]]


async def test_not_logged_in_exits_3(world):
    nobody = world["actor"]("nobody")
    result = await nobody("systems", "list", "--customer", world["customer"], expect=3)
    assert result.err.startswith("rsctl: UNAUTHENTICATED: not logged in") and result.out == ""


async def test_revoked_token_exits_3_and_logout_revokes(world):
    user_id = f"S{world['customer']}3"
    await world["user_admin"]("users", "create", user_id, "--name", "Short Lived", "--email", email_of(user_id))
    short = world["actor"]("short-lived")
    await enroll(world, short, user_id)
    stale = (short.config_dir / "session.json").read_text()
    assert "revoked" in (await short("logout")).out
    (short.config_dir / "session.json").write_text(stale)  # with the umask's mode: rsctl warns about it
    result = await short("systems", "list", expect=3)
    warning, error = result.err.splitlines()[:2]
    assert warning.startswith("rsctl: warning: ") and "chmod 600" in warning
    assert error.startswith("rsctl: UNAUTHENTICATED: ") and "rsctl login USER_ID" in error


async def test_a_locked_user_is_shown_and_a_reset_and_a_new_password_unlock_it(world):
    user_id = f"S{world['customer']}4"
    admin = world["user_admin"]
    await admin("users", "create", user_id, "--name", "Guessed At", "--email", email_of(user_id))
    guesser, owner = world["actor"]("guesser"), world["actor"]("guessed-at")
    await enroll(world, owner, user_id)
    for _ in range(5):  # the default: 5 failed logins in a row lock the user
        result = await guesser("login", user_id, "--password-stdin", stdin="not-the-password-1\n", expect=3)
        assert "invalid user ID or password, or the user is disabled or locked" in result.err
    await guesser("login", user_id, "--password-stdin", stdin=TEST_PASSWORD + "\n", expect=3)  # locked
    shown = (await admin("users", "get", user_id, "--json")).json()
    assert shown["lock_expire_time"] and shown["password_set"] is True
    table = await admin("users", "list")
    assert "LOCKED_UNTIL" in table.out.splitlines()[0] and "PASSWORD_SET" in table.out.splitlines()[0]
    row = next(line for line in table.out.splitlines() if user_id in line)
    assert shown["lock_expire_time"] in row
    # The user administrator sets no password of another user: it resets it, and the code goes to the user.
    refused = await admin("users", "passwd", user_id, "--password-stdin", stdin="a brand new password\n", expect=4)
    assert refused.err.startswith("rsctl: PERMISSION_DENIED: ")
    reset = await admin("users", "reset-password", user_id)
    assert f"mailed to {email_of(user_id)}" in reset.out and f"set-password {user_id} --code CODE" in reset.out
    assert code_for(world, user_id) not in reset.out + reset.err
    assert (await owner("whoami")).code == 0 and (await owner("systems", "list", expect=3)).code == 3  # ended
    after = (await admin("users", "get", user_id, "--json")).json()
    assert after["password_set"] is False and "lock_expire_time" not in after
    await enroll(world, owner, user_id, "a brand new password")
    assert (await admin("users", "get", user_id, "--json")).json()["password_set"] is True
    # Changing one's own password stays as it was.
    await owner("users", "passwd", "--password-stdin", stdin="yet another new password\n")
    await guesser("login", user_id, "--password-stdin", stdin="yet another new password\n")


async def test_permission_denied_exits_4_and_names_the_authorization(world):
    result = await world["user_admin"]("systems", "create", "4799", "--sid", "DEV", "--installation", "1", expect=4)
    assert result.err.startswith("rsctl: PERMISSION_DENIED: ")
    assert "MAINTAIN_SYSTEM_DATA" in result.err and "reason PERMISSION_DENIED" in result.err
    log = await world["user_admin"]("log", "list", expect=4)
    assert "required authorization EDIT_ALL_LOGIN_DATA,EDIT_MY_LOGIN_DATA" in log.err, log.err


async def test_not_found_exits_5(world):
    result = await world["operator"]("systems", "get", "999999999", expect=5)
    assert result.err.startswith("rsctl: NOT_FOUND: ")


async def test_invalid_argument_exits_6_and_names_the_field(world):
    result = await world["operator"]("systems", "create", "4798", "--sid", "1X", "--installation", "1", expect=6)
    assert result.err.startswith("rsctl: INVALID_ARGUMENT: ") and "system_id" in result.err
    again = await world["admin"]("customers", "create", world["customer"], "Twice", expect=6)
    assert again.err.startswith("rsctl: ALREADY_EXISTS: ")


async def test_usage_errors_exit_2_before_any_call(world):
    op = world["operator"]
    bad_enum = await op("auth", "grant", "S0000000001", "EDIT_EVERYTHING", expect=2)
    assert "edit-all-login-data" in bad_enum.err
    no_secret = await op("logon", "add", "4711", "--kind", "other", "--user", "u", "--days", "1", expect=2)
    assert "--secret-stdin" in no_secret.err
    bad_time = await op("windows", "open", "4711", "R3_SUPPORT", "--end", "tomorrow-ish", expect=2)
    assert "is not a time" in bad_time.err


async def test_unreachable_address_exits_7_without_traceback(world):
    result = await world["operator"].process("--address", "127.0.0.1:1", "types", "list", "--timeout", "3",
                                             expect=7)
    assert result.err.startswith("rsctl: UNAVAILABLE: cannot reach 127.0.0.1:1")


async def test_broken_connector_file_exits_8(world):
    forged = world["tmp"] / "forged.oez"
    forged.write_bytes(b"STFK1\nAAAA\nAAAA\n")
    result = await world["operator"]("connector", "verify", str(forged), expect=8)
    assert "NOT VALID" in result.out



# --- separation of duties: one-time codes, four eyes, the identity log -----------------------------------------

async def test_create_mails_a_code_and_never_prints_it(world):
    user_id = f"S{world['customer']}5"
    created = await world["user_admin"]("users", "create", user_id, "--name", "Nora New", "--email",
                                        email_of(user_id), "--json")
    doc = created.json()
    assert doc["name"] == f"users/{user_id}" and doc["email"] == email_of(user_id) and doc["password_set"] is False
    [mail] = world["suite"].mail.messages(email_of(user_id))
    code = code_in([mail])
    assert code not in created.out + created.err
    assert f"rsctl users set-password {user_id} --code {code}" in mail.get_content()
    # Nobody can log in as the new user before it sets its password.
    await world["actor"]("nora")("login", user_id, "--password-stdin", stdin=TEST_PASSWORD + "\n", expect=3)


async def test_create_needs_an_own_unique_email_and_takes_no_password(world):
    ua = world["user_admin"]
    missing = await ua("users", "create", f"S{world['customer']}6", "--name", "No Mail", expect=2)
    assert "--email" in missing.err
    old = await ua("users", "create", f"S{world['customer']}6", "--name", "Old Way", "--email", "old@example.com",
                   "--password-stdin", stdin=TEST_PASSWORD + "\n", expect=2)
    assert "unrecognized arguments: --password-stdin" in old.err
    taken = email_of(world["op_id"]).upper().replace("@", "+again@")  # another case and a +tag: the same address
    again = await ua("users", "create", f"S{world['customer']}6", "--name", "Same Mail", "--email", taken, expect=6)
    assert again.err.startswith("rsctl: ALREADY_EXISTS: ")
    bad = await ua("users", "create", f"S{world['customer']}6", "--name", "Bad Mail", "--email", "no-at-sign",
                   expect=6)
    assert bad.err.startswith("rsctl: INVALID_ARGUMENT: ") and "user.email" in bad.err
    # The platform admin creates only a customer's first user administrator.
    late = await world["admin"]("users", "create", f"S{world['customer']}6", "--name", "Too Late", "--customer",
                                world["customer"], "--email", "too.late@example.com", expect=4)
    assert late.err.startswith("rsctl: PERMISSION_DENIED: ")


async def test_set_password_refuses_a_wrong_or_used_code_and_weak_passwords(world):
    user_id = f"S{world['customer']}7"
    await world["user_admin"]("users", "create", user_id, "--name", "Sam Setter", "--email", email_of(user_id))
    sam = world["actor"]("sam")
    wrong = await sam("users", "set-password", user_id, "--code", "AAAAA-AAAAA-AAAAA-AAAAA", "--password-stdin",
                      stdin=TEST_PASSWORD + "\n", expect=3)
    assert wrong.err.startswith("rsctl: UNAUTHENTICATED: the code is wrong, used or expired")
    unknown = await sam("users", "set-password", "S0000000000", "--code", "AAAAA-AAAAA-AAAAA-AAAAA",
                        "--password-stdin", stdin=TEST_PASSWORD + "\n", expect=3)
    assert unknown.err.splitlines()[0] == wrong.err.splitlines()[0]  # no telling whether the user exists
    code = code_for(world, user_id)
    short = await sam("users", "set-password", user_id, "--code", code, "--password-stdin", stdin="short\n",
                      expect=6)
    assert short.err.startswith("rsctl: INVALID_ARGUMENT: ") and "new_password" in short.err
    empty = await sam("users", "set-password", user_id, "--code", code, "--password-stdin", stdin="", expect=2)
    assert "no new password on standard input" in empty.err
    no_tty = await sam("users", "set-password", user_id, "--code", code, stdin=TEST_PASSWORD + "\n", expect=2)
    assert "--password-stdin" in no_tty.err
    done = await sam("users", "set-password", user_id, "--code", code, "--password-stdin", "--json",
                     stdin=TEST_PASSWORD + "\n")
    assert done.json() == {"user": f"users/{user_id}", "password_set": True} and code not in done.out
    used = await sam("users", "set-password", user_id, "--code", code, "--password-stdin",
                     stdin="another long password\n", expect=3)
    assert used.err.startswith("rsctl: UNAUTHENTICATED: ")
    await sam("login", user_id, "--password-stdin", stdin=TEST_PASSWORD + "\n")


async def test_reset_password_json_and_errors(world):
    ua, op, admin = world["user_admin"], world["operator"], world["admin"]
    user_id = f"S{world['customer']}6"
    await ua("users", "create", user_id, "--name", "Rita Reset", "--email", email_of(user_id))
    await enroll(world, world["actor"]("rita"), user_id)
    as_json = await ua("users", "reset-password", user_id, "--json")
    assert as_json.json()["user"]["password_set"] is False and as_json.json()["code_expire_time"]
    assert code_for(world, user_id) not in as_json.out
    assert (await ua("users", "reset-password", user_id, "--name-only")).out == f"users/{user_id}\n"

    assert (await op("users", "reset-password", user_id, expect=4)).err.startswith("rsctl: PERMISSION_DENIED: ")
    unknown = await ua("users", "reset-password", "S0000000000", expect=4)  # no telling whether it exists
    assert unknown.err.startswith("rsctl: PERMISSION_DENIED: ")
    assert (await admin("users", "reset-password", "S0000000000", expect=5)).err.startswith("rsctl: NOT_FOUND: ")
    platform = await admin("users", "reset-password", "admin", expect=6)
    assert platform.err.startswith("rsctl: FAILED_PRECONDITION: ")
    other = await ua("users", "update", user_id, "--email", "rita.private@example.com", expect=4)
    assert other.err.startswith("rsctl: PERMISSION_DENIED: ")  # only the user itself changes its address


async def test_four_eyes_a_second_user_admin_approves_edit_all_login_data(world):
    ua, customer = world["user_admin"], world["customer"]
    second_id, keeper_id = f"S{customer}8", f"S{customer}9"
    second, keeper = world["actor"]("second-admin"), world["actor"]("keeper")
    await ua("users", "create", second_id, "--name", "Sue Second", "--email", email_of(second_id))
    made = await ua("auth", "grant", second_id, "USER_ADMIN", "--json")  # no third administrator to ask: at once
    assert made.json()["state"] == "GRANT_STATE_ACTIVE"
    await enroll(world, second, second_id)
    await ua("users", "create", keeper_id, "--name", "Kim Keeper", "--email", email_of(keeper_id))
    await enroll(world, keeper, keeper_id)

    requested = await ua("auth", "grant", keeper_id, "edit-all-login-data")
    assert "PENDING_APPROVAL" in requested.out
    assert f"rsctl users approve {keeper_id} EDIT_ALL_LOGIN_DATA" in requested.out
    listed = await ua("users", "grants", keeper_id)
    header, row = listed.out.splitlines()[:2]
    assert header.split() == ["AUTHORIZATION", "INSTALLATIONS", "STATE", "GRANTED_BY", "APPROVED_BY", "GRANTED"]
    assert row.split()[:4] == ["EDIT_ALL_LOGIN_DATA", "all", "PENDING_APPROVAL", f"users/{world['ua_id']}"]
    assert (await keeper("log", "list", expect=4)).code == 4  # not in effect yet

    own = await ua("users", "approve", keeper_id, "EDIT_ALL_LOGIN_DATA", expect=4)  # the requester
    assert own.err.startswith("rsctl: PERMISSION_DENIED: ")
    assert (await keeper("users", "approve", keeper_id, "EDIT_ALL_LOGIN_DATA", expect=4)).code == 4  # the grantee
    approved = await second("users", "approve", keeper_id, "edit-all-login-data", "--json")
    assert approved.json()["state"] == "GRANT_STATE_ACTIVE" and approved.json()["approved_by"] == f"users/{second_id}"
    grants = (await second("users", "grants", keeper_id, "--json")).json()["grants"]
    assert [(g["authorization"], g["state"], g["approved_by"]) for g in grants] == [
        ("AUTHORIZATION_EDIT_ALL_LOGIN_DATA", "GRANT_STATE_ACTIVE", f"users/{second_id}")]
    await keeper("log", "list")
    logged = {(e["action"], e["actor"]) for e in (await second("users", "log", "--json")).json()["events"]
              if e["target"] == f"users/{keeper_id}"}
    assert {("GRANT_REQUESTED", f"users/{world['ua_id']}"), ("GRANT_APPROVED", f"users/{second_id}")} <= logged
    nothing = await second("users", "approve", keeper_id, "EDIT_ALL_LOGIN_DATA", expect=5)
    assert nothing.err.startswith("rsctl: NOT_FOUND: ")

    selfish = await ua("auth", "grant", world["ua_id"], "EDIT_ALL_LOGIN_DATA", expect=4)
    assert selfish.err.startswith("rsctl: PERMISSION_DENIED: ")
    late = await world["admin"]("auth", "grant", keeper_id, "USER_ADMIN", expect=4)  # the customer has one
    assert late.err.startswith("rsctl: PERMISSION_DENIED: ")
    bad = await second("users", "approve", keeper_id, "EDIT_EVERYTHING", expect=2)
    assert "edit-all-login-data" in bad.err


async def test_identity_log_lists_every_change_with_its_actor(world):
    ua, customer = world["user_admin"], world["customer"]
    events = (await ua("users", "log", "--json")).json()["events"]
    assert [e["sequence"] for e in events] == [str(n) for n in range(1, len(events) + 1)]
    actions = {(e["action"], e["actor"], e["target"]) for e in events}
    assert ("USER_CREATED", "users/admin", f"users/{world['ua_id']}") in actions
    assert ("GRANTED", "users/admin", f"users/{world['ua_id']}") in actions
    assert ("USER_CREATED", f"users/{world['ua_id']}", f"users/{world['op_id']}") in actions
    assert ("PASSWORD_SET", f"users/{world['op_id']}", f"users/{world['op_id']}") in actions
    assert code_for(world, world["op_id"]) not in json.dumps(events)
    table = await ua("users", "log", customer, "--limit", "2")
    lines = table.out.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"] and len(lines) == 3
    vendor = (await world["admin"]("users", "log", "--json")).json()["events"]  # no customer: the vendor side's
    assert all(e["customer"] == "" for e in vendor)
    assert len((await world["admin"]("users", "log", customer, "--json")).json()["events"]) >= len(events)
    denied = await world["operator"]("users", "log", expect=4)
    assert denied.err.startswith("rsctl: PERMISSION_DENIED: ")


async def test_verify_log_prints_the_head_to_keep_and_exits_8_when_it_is_not_extended(world, tmp_path):
    ua, customer = world["user_admin"], world["customer"]
    head_file = tmp_path / "identity-head.txt"
    verified = await ua("users", "verify-log", "--save-head", str(head_file))
    kept = head_file.read_text().strip()
    assert f"The identity log of customers/{customer} is intact" in verified.out and f"Head: {kept}" in verified.out
    assert stat.S_IMODE(head_file.stat().st_mode) == 0o600
    user_id = f"S{customer}0"  # one more change: the log extends the kept head
    await ua("users", "create", user_id, "--name", "Late Comer", "--email", email_of(user_id))
    extended = await ua("users", "verify-log", customer, "--since-head", f"@{head_file}")
    assert f"extends the head you kept (event {kept.split(':')[0]})" in extended.out
    doc = (await ua("users", "verify-log", "--json", "--since-head", kept)).json()
    assert doc["valid"] is True and int(doc["head"]["sequence"]) > int(kept.split(":")[0])

    sequence, digest = kept.split(":")
    forged = f"{sequence}:{'0' * 64 if digest != '0' * 64 else '1' * 64}"
    rewritten = await ua("users", "verify-log", "--since-head", forged, expect=8)
    assert "BROKEN at event" in rewritten.out and "rewritten" in rewritten.out
    beyond = await ua("users", "verify-log", "--since-head", f"99999:{digest}", "--save-head", str(head_file),
                      expect=8)
    assert "rolled back or truncated" in beyond.out and head_file.read_text().strip() == kept

    assert "is not a head" in (await ua("users", "verify-log", "--since-head", "7", expect=2)).err
    assert (await world["operator"]("users", "verify-log", expect=4)).code == 4
    vendor = await world["admin"]("users", "verify-log")
    assert "The vendor side's identity log is intact" in vendor.out


async def test_verify_log_finds_a_changed_event(world):
    """An event changed in authz's database breaks the chain: exit 8, naming the event (then it is put back)."""
    ua, customer = world["user_admin"], world["customer"]
    engine = create_engine(world["suite"].db_url["authz"])
    change = text("UPDATE identity_events SET detail = :d WHERE customer = :c AND sequence = 2")
    try:
        with engine.begin() as conn:
            original = conn.execute(text("SELECT detail FROM identity_events WHERE customer = :c AND sequence = 2"),
                                    {"c": customer}).scalar_one()
            conn.execute(change, {"d": original + " (forged)", "c": customer})
        broken = await ua("users", "verify-log", expect=8)
        assert f"The identity log of customers/{customer} is BROKEN at event 2" in broken.out
        assert (await ua("users", "verify-log", "--json", expect=8)).json()["first_broken_sequence"] == "2"
    finally:
        with engine.begin() as conn:
            conn.execute(change, {"d": original, "c": customer})
        engine.dispose()
    await ua("users", "verify-log")
