"""`rsctl sessions list|show|terminate` through a running suite (authz, connections, depot in-process, and the
gateway when it exists): tables and --json documents, the filters, short names, who sees which sessions, and
every error with its exit code and message.

The relay, which records sessions, does not run here: the session rows are inserted through the connections
service's own store, which is all the read and terminate side needs. rsctl runs in a worker thread with the
principal's token in RSCTL_TOKEN (the in-process servers keep serving on the event loop)."""
from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import importlib.util
import io
import uuid
from dataclasses import dataclass

import pytest
import pytest_asyncio

from remotesupport.connections.v1 import connections_pb2 as cp
from rsctl.cli import main
from services.connections.tables import SessionRow
from services.kit import names
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER
from services.kit.validate import to_timestamp
from tests.integration.test_rsctl_suite import Result

pytestmark = pytest.mark.asyncio(loop_scope="module")
HAS_GATEWAY = importlib.util.find_spec("gateway.server") is not None
MINUTE = dt.timedelta(minutes=1)
HEADER = ["NAME", "STATE", "PRINCIPAL", "TYPE", "TARGET", "START", "END", "TO_TARGET", "FROM_TARGET", "WHY"]


@dataclass
class Rsctl:
    """rsctl as one principal: its token in RSCTL_TOKEN, its own config directory, the suite's addresses."""

    token: str
    environ: dict[str, str]

    async def __call__(self, *args: str, expect: int = 0) -> Result:
        out, err = io.StringIO(), io.StringIO()
        environ = {**self.environ, "RSCTL_TOKEN": self.token} if self.token else dict(self.environ)
        code = await asyncio.to_thread(main, list(args), stdin=io.StringIO(""), stdout=out, stderr=err,
                                       environ=environ)
        result = Result(code, out.getvalue(), err.getvalue())
        assert "Traceback" not in result.err, result.err
        assert code == expect, f"rsctl {' '.join(args)} exited {code}, not {expect}:\n{result.err}"
        if code:
            assert result.err.startswith(("rsctl: ", "usage: ")), result.err
        return result


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite, tmp_path_factory):
    """A customer with an opener (OPEN_REMOTE_CONNECTIONS, MAINTAIN_SYSTEM_DATA) and a member without
    authorizations, two support engineers, a user of another customer; a system with SSH set up and a window
    open now; and sessions of it: the engineer's live one, the other engineer's ended one, a refused one."""
    if HAS_GATEWAY and "gateway" not in suite.running:
        await suite.start_service("gateway", build=importlib.import_module("gateway.server").build)
    if "gateway" in suite.running:
        addresses = {"RSCTL_ADDRESS": suite.addr["gateway"]}
    else:
        addresses = {f"RSCTL_{s.upper()}_ADDRESS": suite.addr[s] for s in ("authz", "connections", "depot")}
    tmp = tmp_path_factory.mktemp("rsctl-sessions")
    customer = await suite.new_customer()
    w = {"suite": suite, "customer": customer, "users": {}}
    principals = {"opener": ["OPEN_REMOTE_CONNECTIONS", "MAINTAIN_SYSTEM_DATA"], "member": []}
    tokens = {}
    for key, grants in principals.items():
        w["users"][key], tokens[key] = await suite.new_user(customer, grants)
    w["users"]["stranger"], tokens["stranger"] = await suite.new_user(await suite.new_customer(),
                                                                      ["OPEN_REMOTE_CONNECTIONS"])
    for key in ("engineer", "other_engineer"):
        w["users"][key], tokens[key] = await suite.new_engineer()
    tokens["nobody"] = ""
    for key, token in tokens.items():
        w[key] = Rsctl(token, {"RSCTL_CONFIG_DIR": str(tmp / key), **addresses})

    conn, md = suite.stub("connections"), suite.md(tokens["opener"])
    w["system"] = system = await suite.new_system(customer, tokens["opener"], sid="RSS")
    await conn.SetUpConnection(cp.SetUpConnectionRequest(parent=system, connection_type="connectionTypes/SSH",
                                                         parameters={"host": "sapprd01.example.com"}), metadata=md)
    w["window"] = (await conn.OpenConnection(cp.OpenConnectionRequest(
        parent=system, connection_type="connectionTypes/SSH", reason="rsctl sessions",
        end_time=to_timestamp(suite.clock.now() + 2 * dt.timedelta(hours=1))), metadata=md)).connection.name
    w["live"] = await add_session(w, "engineer", start=-2 * MINUTE, bytes_to_target=512, bytes_from_target=2048)
    w["ended"] = await add_session(w, "other_engineer", state="ENDED", start=-9 * MINUTE, end_reason="WINDOW_CLOSED")
    w["refused"] = await add_session(w, "other_engineer", state="REFUSED", start=-1 * MINUTE,
                                     refusal_reason="NO_SUPPORT_ASSIGNMENT")
    return w


async def add_session(w, who: str, *, state: str = "ACTIVE", start: dt.timedelta = -MINUTE, **values) -> str:
    """A session of the world's window as the relay would record it (see the module docstring); its name."""
    parts = names.parse("connection", w["window"], "window")
    now = w["suite"].clock.now()
    row = SessionRow(id=uuid.uuid4().hex, customer=parts["customer"], system_number=parts["system"],
                     window_id=parts["connection"], type_code="SSH", principal=w["users"][who],
                     principal_kind=SUPPORT_ENGINEER if "engineer" in who else CUSTOMER_USER,
                     target="sapprd01.example.com:22", relay_id="relay-a", state=state, start_time=now + start,
                     end_time=None if state == "ACTIVE" else now + start + MINUTE,
                     bytes_to_target=values.pop("bytes_to_target", 0),
                     bytes_from_target=values.pop("bytes_from_target", 0), end_reason=values.pop("end_reason", ""),
                     refusal_reason=values.pop("refusal_reason", ""), detail="", terminated_by="")
    assert not values, values
    async with w["suite"].running["connections"].app.store.write() as uow:
        uow.add(row)
    return f"{w['system']}/sessions/{row.id}"


def rows(result: Result) -> list[list[str]]:
    return [line.split() for line in result.out.splitlines()]


async def test_list_prints_a_table_newest_first_and_json(world):
    table = await world["member"]("sessions", "list", world["system"])
    lines = rows(table)
    assert lines[0] == HEADER
    assert [line[0] for line in lines[1:]] == [world["refused"], world["live"], world["ended"]]
    live = next(line for line in lines if line[0] == world["live"])
    assert live[1:5] == ["ACTIVE", world["users"]["engineer"], "SSH", "sapprd01.example.com:22"]
    assert live[-2:] == ["512", "2048"], "no end, no reason yet: the byte counts close the row"
    assert lines[1][-1] == "NO_SUPPORT_ASSIGNMENT" and lines[3][-1] == "WINDOW_CLOSED"

    doc = (await world["member"]("sessions", "list", world["system"], "--json")).json()
    assert [s["name"] for s in doc["sessions"]] == [world["refused"], world["live"], world["ended"]]
    first = doc["sessions"][1]
    assert first["state"] == "SESSION_STATE_ACTIVE" and first["connection"] == world["window"]
    assert first["bytes_to_target"] == "512" and first["terminated_by"] == "" and "end_time" not in first


async def test_list_filters_by_state_and_window_with_short_names(world):
    member, system, customer = world["member"], world["system"], world["customer"]
    number, window_id = system.rsplit("/", 1)[1], world["window"].rsplit("/", 1)[1]
    active = await member("sessions", "list", number, "--customer", customer, "--state", "active", "--json")
    assert [s["name"] for s in active.json()["sessions"]] == [world["live"]]
    ended = await member("sessions", "list", system, "--state", "ENDED", "--json")
    assert [s["name"] for s in ended.json()["sessions"]] == [world["ended"]]
    through = await member("sessions", "list", system, "--window", window_id, "--state", "refused", "--json")
    assert [s["name"] for s in through.json()["sessions"]] == [world["refused"]]
    other = await member("sessions", "list", system, "--window", f"{system}/connections/nosuchwindow")
    assert other.out.strip() == "(none)"

    bad = await member("sessions", "list", system, "--state", "sleeping", expect=2)
    assert "active, ended, refused" in bad.err
    wrong = await member("sessions", "list", system, "--window", "customers/1/systems/2/connections/abc", expect=6)
    assert wrong.err.startswith("rsctl: INVALID_ARGUMENT: ") and "connection" in wrong.err


async def test_show_prints_a_block_and_json(world):
    member = world["member"]
    short = "systems/{}/sessions/{}".format(world["system"].rsplit("/", 1)[1], world["live"].rsplit("/", 1)[1])
    block = await member("sessions", "show", short, "--customer", world["customer"])
    fields = dict(line.split(":", 1) for line in block.out.splitlines())
    assert fields["name"].strip() == world["live"] and fields["state"].strip() == "ACTIVE"
    assert fields["principal"].strip() == world["users"]["engineer"] and fields["end_time"].strip() == ""
    doc = (await member("sessions", "show", world["ended"], "--json")).json()
    assert doc["state"] == "SESSION_STATE_ENDED" and doc["end_reason"] == "SESSION_END_REASON_WINDOW_CLOSED"
    assert doc["end_time"]


async def test_an_engineer_sees_only_its_own_sessions(world):
    listed = await world["engineer"]("sessions", "list", world["system"], "--json")
    assert [s["name"] for s in listed.json()["sessions"]] == [world["live"]]
    assert (await world["engineer"]("sessions", "show", world["live"], "--json")).json()["name"] == world["live"]
    for name in (world["ended"], f"{world['system']}/sessions/nosuchsession"):
        refused = await world["engineer"]("sessions", "show", name, expect=4)
        assert refused.err.startswith("rsctl: PERMISSION_DENIED: ")
    theirs = await world["other_engineer"]("sessions", "list", world["system"], "--json")
    assert [s["name"] for s in theirs.json()["sessions"]] == [world["refused"], world["ended"]]


async def test_terminate_asks_the_relay_to_cut_a_live_session_once(world):
    session = await add_session(world, "engineer", start=-30 * MINUTE)
    done = await world["opener"]("sessions", "terminate", session)
    *block, note = done.out.splitlines()
    fields = dict(line.split(":", 1) for line in block)
    assert fields["terminated_by"].strip() == world["users"]["opener"] and fields["state"].strip() == "ACTIVE"
    assert note == "Termination requested: the relay carrying the session cuts it within 2 s."
    table = await world["member"]("sessions", "list", world["system"], "--state", "active")
    row = next(line for line in table.out.splitlines() if line.startswith(session))
    assert row.endswith(f"terminating (by {world['users']['opener']})")

    again = await world["opener"]("sessions", "terminate", session, "--json", expect=6)
    assert again.err.startswith("rsctl: FAILED_PRECONDITION: ") and "already requested by" in again.err
    assert again.out == ""
    other = await add_session(world, "engineer", start=-31 * MINUTE)
    doc = (await world["opener"]("sessions", "terminate", other, "--json")).json()
    assert doc["terminated_by"] == world["users"]["opener"] and doc["name"] == other, "--json: the session only"


async def test_terminate_errors_and_their_exit_codes(world):
    ended = await world["opener"]("sessions", "terminate", world["ended"], expect=6)
    assert ended.err.startswith("rsctl: FAILED_PRECONDITION: ") and "is ENDED (WINDOW_CLOSED)" in ended.err
    member = await world["member"]("sessions", "terminate", world["live"], expect=4)
    assert member.err.startswith("rsctl: PERMISSION_DENIED: ") and "OPEN_REMOTE_CONNECTIONS" in member.err
    for who in ("engineer", "stranger"):
        assert (await world[who]("sessions", "terminate", world["live"], expect=4)).err.startswith(
            "rsctl: PERMISSION_DENIED: ")
    missing = await world["opener"]("sessions", "terminate", f"{world['system']}/sessions/nosuchsession", expect=5)
    assert missing.err.startswith("rsctl: NOT_FOUND: ")
    malformed = await world["opener"]("sessions", "terminate", f"{world['system']}/sessions/UPPER", expect=6)
    assert malformed.err.startswith("rsctl: INVALID_ARGUMENT: ") and "name" in malformed.err
    nobody = await world["nobody"]("sessions", "list", world["system"], expect=3)
    assert nobody.err.startswith("rsctl: UNAUTHENTICATED: ")
    short = await world["opener"]("sessions", "show", "systems/1/sessions/abc", expect=2)
    assert "no default customer" in short.err
    shown = (await world["member"]("sessions", "show", world["live"], "--json")).json()
    assert shown["terminated_by"] == "", "none of the refused calls terminated it"


@pytest.mark.skipif(not HAS_GATEWAY, reason="the gateway is not part of this tree")
async def test_overview_json_carries_the_live_sessions(world):
    doc = (await world["member"]("overview", world["system"], "--json")).json()
    live = [s["name"] for s in doc["live_sessions"]]
    assert world["live"] in live and world["ended"] not in live and world["refused"] not in live
    assert all(s["state"] == "SESSION_STATE_ACTIVE" for s in doc["live_sessions"])
