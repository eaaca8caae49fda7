"""ExportIncidentEvidence and GetEvidenceKey at the gateway, against the real authz, connections and depot: the
signed document holds the incident, its windows and tunnel sessions, its system's log events with their chain
positions and the log's verdict; it verifies with the key GetEvidenceKey answers and with nothing else, not
after one byte changed; it is still answered, with the reveals in it, once the logon data and the windows have
expired and the expired logon data was swept; and who may ask, and every error.

The relay does not run here: the tunnel sessions are recorded through the connections service's own store, as
the relay records them (as tests/integration/test_rsctl_sessions.py does)."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import stat
import uuid

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

import gateway.server
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
from rsctl.cli import main as rsctl_main
from services.connections.tables import SessionRow
from services.kit import evidence as kit_evidence
from services.kit import names
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER
from services.kit.validate import to_timestamp
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "Evidence-Secret-0f-The-Depot!"
SSH, HTTP = "connectionTypes/SSH", "connectionTypes/HTTP_CONNECT_URL"
PARAMETERS = {SSH: {"host": "10.1.2.3"}, HTTP: {"url": "https://app01.example.com/"}}
DENIED, NOT_FOUND, INVALID = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.INVALID_ARGUMENT)


class World:
    """Customer A: `ops` (systems, windows, incidents), `edit_all`, `edit_my` (the log's readers), `member` (no
    authorization); customer B: `stranger` (everything); an engineer; the gateway's stub."""

    def __init__(self, suite) -> None:
        self.suite = suite
        self.gw = gateway_pb2_grpc.RemoteSupportServiceStub(suite.channels["gateway"])
        self.connections = suite.stub("connections")
        self.depot = suite.stub("depot")

    def md(self, who: str):
        return self.suite.md(self.tokens[who])

    def later(self, **delta):
        return to_timestamp(self.suite.clock.now() + dt.timedelta(**delta))

    async def system(self, sid: str) -> str:
        system = await self.suite.new_system(self.a, self.tokens["ops"], sid=sid)
        for connection_type, parameters in PARAMETERS.items():
            await self.connections.SetUpConnection(cpb.SetUpConnectionRequest(
                parent=system, connection_type=connection_type, parameters=parameters), metadata=self.md("ops"))
        return system

    async def incident(self, system: str, *, taken: bool = True) -> str:
        """A new incident of `system`, in process at the vendor with the engineer as processor when `taken`."""
        response = await self.connections.CreateIncident(cpb.CreateIncidentRequest(
            parent=f"customers/{self.a}", incident=cpb.Incident(system=system, title="Billing dumps \u00e9\u00e8",
                                                                priority=cpb.INCIDENT_PRIORITY_HIGH)),
            metadata=self.md("ops"))
        if taken:
            await self.connections.AssignProcessor(cpb.AssignProcessorRequest(name=response.incident.name),
                                                   metadata=self.md("engineer"))
        return response.incident.name

    async def window(self, system: str, connection_type: str, incident: str = "", **end) -> cpb.Connection:
        return (await self.connections.OpenConnection(cpb.OpenConnectionRequest(
            parent=system, connection_type=connection_type, end_time=self.later(**(end or {"hours": 2})),
            incident=incident, reason="evidence"), metadata=self.md("ops"))).connection

    async def entry(self, system: str, **expires) -> dpb.LogonData:
        return (await self.depot.CreateLogonData(dpb.CreateLogonDataRequest(
            parent=system, secret=SECRET, logon_data=dpb.LogonData(
                kind=dpb.LOGON_DATA_KIND_SERVER_OS_USER, user_name="sapadm", server="10.1.2.3",
                expire_time=self.later(**(expires or {"days": 1})))), metadata=self.md("edit_all"))).logon_data

    async def reveal(self, entry: str, incident: str) -> None:
        revealed = await self.depot.RevealLogonData(dpb.RevealLogonDataRequest(name=entry, reason=incident),
                                                    metadata=self.md("engineer"))
        assert revealed.secret == SECRET

    async def session(self, window: cpb.Connection, who: str, incident: str = "", *,
                      start: dt.timedelta = dt.timedelta()) -> str:
        """A tunnel session through `window` (from now + `start`), recorded as the relay records one; its name."""
        parts = names.parse("connection", window.name, "window")
        now = self.suite.clock.now() + start
        row = SessionRow(id=uuid.uuid4().hex, customer=parts["customer"], system_number=parts["system"],
                         window_id=parts["connection"], type_code=window.connection_type.rsplit("/", 1)[1],
                         principal=self.users[who], principal_kind=SUPPORT_ENGINEER if who == "engineer" else
                         CUSTOMER_USER, incident=incident, target="10.1.2.3:22", relay_id="relay-a", state="ENDED",
                         start_time=now, end_time=now + dt.timedelta(seconds=30), bytes_to_target=100,
                         bytes_from_target=2000, end_reason="CLIENT_CLOSED", refusal_reason="", detail="",
                         terminated_by="")
        async with self.suite.running["connections"].app.store.write() as uow:
            uow.add(row)
        return f"{names.parent_system(parts)}/sessions/{row.id}"

    async def export(self, incident: str, who: str = "edit_all") -> gpb.ExportIncidentEvidenceResponse:
        return await self.gw.ExportIncidentEvidence(gpb.ExportIncidentEvidenceRequest(incident=incident),
                                                    metadata=self.md(who))

    async def public_key(self):
        response = await self.gw.GetEvidenceKey(gpb.GetEvidenceKeyRequest(), metadata=self.md("member"))
        return load_pem_public_key(response.public_key_pem.encode())

    async def log(self, **filters) -> list[dpb.LogEvent]:
        response = await self.depot.ListLogEvents(dpb.ListLogEventsRequest(
            parent=f"customers/{self.a}", page_size=1000, **filters), metadata=self.md("edit_all"))
        return list(response.events)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    await suite.start_service("gateway", build=gateway.server.build)
    w = World(suite)
    w.a, w.b = await suite.new_customer(), await suite.new_customer()
    w.users, w.tokens = {}, {}
    for who, grants in (("ops", ["MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS", "CREATE_INCIDENTS"]),
                        ("edit_all", ["EDIT_ALL_LOGIN_DATA"]), ("edit_my", ["EDIT_MY_LOGIN_DATA"]),
                        ("member", [])):
        w.users[who], w.tokens[who] = await suite.new_user(w.a, grants)
    w.users["stranger"], w.tokens["stranger"] = await suite.new_user(
        w.b, ["EDIT_ALL_LOGIN_DATA", "EDIT_MY_LOGIN_DATA", "OPEN_REMOTE_CONNECTIONS", "CREATE_INCIDENTS"])
    w.users["engineer"], w.tokens["engineer"] = await suite.new_engineer()
    return w


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def case(world):
    """An incident with everything an evidence document holds: a window opened for it with the engineer's
    session, another window (not for it) with a session the incident admitted and one of a customer user, then
    a window of another incident with that one's session; logon data created, revealed by the engineer, changed."""
    w, clock = world, world.suite.clock
    system = await w.system("EVD")
    incident = await w.incident(system)
    other_incident = await w.incident(system, taken=False)  # so the engineer's reveal is for `incident` only
    for_it = await w.window(system, SSH, incident)
    clock.advance(seconds=1)
    other = await w.window(system, HTTP)
    own = await w.session(for_it, "engineer", incident)
    admitted = await w.session(other, "engineer", incident)
    customers = await w.session(other, "ops")
    entry = await w.entry(system, days=3)
    await w.reveal(entry.name, incident)
    update = dpb.UpdateLogonDataRequest(logon_data=dpb.LogonData(name=entry.name, etag=entry.etag, notes="seen"))
    update.update_mask.paths.append("notes")
    await w.depot.UpdateLogonData(update, metadata=w.md("edit_all"))
    await w.connections.CloseConnection(cpb.CloseConnectionRequest(name=other.name), metadata=w.md("ops"))
    clock.advance(seconds=1)
    theirs = await w.window(system, HTTP, other_incident)
    await w.session(theirs, "engineer", other_incident)
    return dict(system=system, incident=incident, for_it=for_it, other=other, own=own, admitted=admitted,
                customers=customers, entry=entry)


async def test_the_document_verifies_with_the_gateway_key_and_holds_the_incident(world, case):
    response = await world.export(case["incident"])
    key = await world.gw.GetEvidenceKey(gpb.GetEvidenceKeyRequest(), metadata=world.md("edit_my"))
    verified = kit_evidence.verify(response.document, load_pem_public_key(key.public_key_pem.encode()))
    assert verified.key_id == response.key_id == key.key_id
    e = verified.evidence
    assert e["format"] == "remotesupport.evidence.v1" and e["exported_by"] == world.users["edit_all"]
    assert e["exported_at"] == to_timestamp(world.suite.clock.now()).ToJsonString()
    assert e["incident"]["name"] == case["incident"] and e["incident"]["system"] == case["system"]
    assert e["incident"]["title"] == "Billing dumps \u00e9\u00e8"
    assert e["incident"]["processor"] == world.users["engineer"]
    assert "Billing dumps \u00e9\u00e8".encode() in response.document, "UTF-8 as it is, not escaped"
    # the window opened for it, and the other one only because a session the incident admitted went through it
    assert [w["name"] for w in e["windows"]] == [case["for_it"].name, case["other"].name]
    assert e["windows"][0]["incident"] == case["incident"] and e["windows"][1]["state"] == "CONNECTION_STATE_CLOSED"
    assert sorted(s["name"] for s in e["sessions"]) == sorted([case["own"], case["admitted"]])
    assert {s["principal"] for s in e["sessions"]} == {world.users["engineer"]}
    assert all(s["bytes_from_target"] == "2000" for s in e["sessions"])
    just_after = to_timestamp(world.suite.clock.now() + dt.timedelta(microseconds=1)).ToJsonString()
    assert e["log_scope"] == {"parent": f"customers/{world.a}", "system": case["system"],
                              "start_time": e["incident"]["create_time"], "end_time": just_after}


async def test_the_log_events_are_the_depots_with_their_chain_positions(world, case):
    e = kit_evidence.verify((await world.export(case["incident"])).document, await world.public_key()).evidence
    events = e["log_events"]
    actions = [(ev["action"], ev["actor"]) for ev in events]
    assert actions == [("LOG_ACTION_CREATE", world.users["edit_all"]), ("LOG_ACTION_REVEAL", world.users["engineer"]),
                       ("LOG_ACTION_UPDATE", world.users["edit_all"])]
    assert events[1]["incident"] == case["incident"] and events[1]["logon_data"] == case["entry"].name
    depot = {ev.sequence: ev for ev in await world.log(system=case["system"])}
    for ev in events:
        original = depot[int(ev["sequence"])]
        assert (ev["hash"], ev["previous_hash"], ev["name"]) == (original.hash, original.previous_hash, original.name)
        assert len(ev["hash"]) == 64
    verdict = e["log_verification"]
    assert verdict["valid"] is True and verdict["problem"] == "" and verdict["first_broken_sequence"] == "0"
    assert int(verdict["head"]["sequence"]) >= int(events[-1]["sequence"])
    assert int(verdict["events_checked"]) >= int(verdict["head"]["sequence"])


async def test_no_secret_and_no_connector_file_is_in_the_document(world, case):
    document = (await world.export(case["incident"])).document
    assert SECRET.encode() not in document
    connector = await world.connections.GetServiceConnector(
        cpb.GetServiceConnectorRequest(name=case["for_it"].name), metadata=world.md("ops"))
    ticket = connector.service_connector.content.split(b"\n")[1]
    assert ticket not in document


async def test_one_byte_changed_anywhere_fails_and_says_why(world, case):
    document = (await world.export(case["incident"])).document
    key = await world.public_key()
    title = document.index("Billing dumps".encode())
    with pytest.raises(kit_evidence.EvidenceInvalid, match="signature does not match key .* altered"):
        kit_evidence.verify(_flipped(document, title), key)
    digest = document.index(b'"hash":"') + len(b'"hash":"')
    with pytest.raises(kit_evidence.EvidenceInvalid, match="signature does not match"):
        kit_evidence.verify(_flipped(document, digest), key)
    for position in range(0, len(document), 61):  # a spread of single bytes: each one change fails
        with pytest.raises(kit_evidence.EvidenceInvalid):
            kit_evidence.verify(_flipped(document, position), key)
    assert kit_evidence.verify(document, key).evidence["incident"]["name"] == case["incident"]


async def test_another_key_does_not_verify_it(world, case):
    document = (await world.export(case["incident"])).document
    other = kit_evidence.EvidenceSigner(Ed25519PrivateKey.generate())
    with pytest.raises(kit_evidence.EvidenceInvalid, match=f"signed with another key: key .*, not key {other.key_id}"):
        kit_evidence.verify(document, other.public_key)
    # a document signed elsewhere, naming the gateway's key id, fails on the signature
    forged = json.loads(other.sign(json.loads(document)["evidence"]))
    forged["signature"]["key_id"] = json.loads(document)["signature"]["key_id"]
    with pytest.raises(kit_evidence.EvidenceInvalid, match="signature does not match"):
        kit_evidence.verify(kit_evidence.canonical(forged), await world.public_key())


async def test_get_evidence_key_answers_the_pem_its_key_id_names(world):
    from services.kit.stfk import key_id_of

    for who in ("member", "engineer", "stranger"):
        response = await world.gw.GetEvidenceKey(gpb.GetEvidenceKeyRequest(), metadata=world.md(who))
        assert response.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
        assert key_id_of(load_pem_public_key(response.public_key_pem.encode())) == response.key_id
        assert len(response.key_id) == 16
    await expect_error(world.gw.GetEvidenceKey(gpb.GetEvidenceKeyRequest()), grpc.StatusCode.UNAUTHENTICATED,
                       "UNAUTHENTICATED")


async def test_edit_my_may_export_and_nobody_else(world, case):
    assert (await world.export(case["incident"], "edit_my")).document
    for who, required in (("member", True), ("ops", True), ("engineer", False), ("stranger", False)):
        err = await expect_error(world.export(case["incident"], who), DENIED, "PERMISSION_DENIED")
        if required:
            assert "EDIT_ALL_LOGIN_DATA or EDIT_MY_LOGIN_DATA" in err.details()
    admin = world.suite.md(world.suite.admin_token)
    await expect_error(world.gw.ExportIncidentEvidence(gpb.ExportIncidentEvidenceRequest(incident=case["incident"]),
                                                       metadata=admin), DENIED, "PERMISSION_DENIED")
    await expect_error(world.gw.ExportIncidentEvidence(gpb.ExportIncidentEvidenceRequest(incident=case["incident"])),
                       grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_an_unknown_incident_is_not_found_and_only_to_whom_may_export(world):
    unknown = f"customers/{world.a}/incidents/no-such-incident"
    await expect_error(world.export(unknown), NOT_FOUND, "NOT_FOUND")
    await expect_error(world.export(unknown, "member"), DENIED, "PERMISSION_DENIED")
    await expect_error(world.export(f"customers/{world.b}/incidents/no-such-incident"), DENIED, "PERMISSION_DENIED")


@pytest.mark.parametrize("name", ["", "incidents/7", "customers/x/incidents/7", "customers/1/systems/2",
                                  "customers/1/incidents/UPPER"])
async def test_a_malformed_incident_name_is_invalid_argument(world, name):
    await expect_error(world.export(name), INVALID, "INVALID_ARGUMENT", field="incident")


async def test_sessions_are_read_page_by_page_back_to_the_incident_s_report(world, monkeypatch):
    from gateway import evidence as gateway_evidence

    w = world
    system = await w.system("PGS")
    incident = await w.incident(system)
    window = await w.window(system, SSH, incident)
    older = await w.session(window, "engineer", incident, start=-dt.timedelta(seconds=1))  # before it was reported
    recent = []
    for _ in range(3):
        w.suite.clock.advance(seconds=1)
        recent.append(await w.session(window, "engineer", incident))
    monkeypatch.setattr(gateway_evidence, "LIST_PAGE_SIZE", 2)  # two pages of the three, then the older one
    e = kit_evidence.verify((await w.export(incident)).document, await w.public_key()).evidence
    assert [s["name"] for s in e["sessions"]] == recent, "oldest first; nothing from before the incident"
    assert older not in {s["name"] for s in e["sessions"]}


async def test_more_than_the_limit_is_failed_precondition_naming_it(world, case, monkeypatch):
    from gateway import evidence as gateway_evidence

    monkeypatch.setattr(gateway_evidence, "LIMIT", 2)  # the case has 3 log events and 3 sessions since it began
    err = await expect_error(world.export(case["incident"]), grpc.StatusCode.FAILED_PRECONDITION,
                             "FAILED_PRECONDITION", message="more than 2 ")
    assert "of its system; an evidence document is made of at most 2 of each" in err.details()


async def test_a_document_too_large_for_one_answer_is_failed_precondition(world, case, monkeypatch):
    evidence = world.suite.running["gateway"].app.evidence
    monkeypatch.setattr(evidence, "max_document_bytes", 1000)
    await expect_error(world.export(case["incident"]), grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION",
                       message="more than the 1000 one answer may carry")


async def rsctl(world, who: str, *args: str, cwd) -> tuple[int, str, str]:
    """rsctl as `who` (its token in RSCTL_TOKEN) against the gateway, in a worker thread."""
    out, err = io.StringIO(), io.StringIO()
    environ = {"RSCTL_ADDRESS": world.suite.addr["gateway"], "RSCTL_TOKEN": world.tokens[who],
               "RSCTL_CONFIG_DIR": str(cwd / who)}
    code = await asyncio.to_thread(rsctl_main, list(args), stdin=io.StringIO(""), stdout=out, stderr=err,
                                   environ=environ)
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


async def test_rsctl_exports_gets_the_key_and_verifies_offline(world, case, tmp_path):
    incident_id = case["incident"].rsplit("/", 1)[1]
    target = tmp_path / "evidence.json"
    code, out, err = await rsctl(world, "edit_my", "evidence", "export", incident_id, "-o", str(target),
                                 "--customer", world.a, cwd=tmp_path)
    key_id = (await world.gw.GetEvidenceKey(gpb.GetEvidenceKeyRequest(), metadata=world.md("member"))).key_id
    assert code == 0, err
    assert out.splitlines()[0] == (f"Wrote {target} ({target.stat().st_size} bytes): the evidence of "
                                   f"{case['incident']}, signed with key {key_id}.")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    code, out, err = await rsctl(world, "member", "evidence", "key", "-o", str(tmp_path / "key.pem"), cwd=tmp_path)
    assert code == 0 and out == f"Wrote {tmp_path / 'key.pem'}: the evidence signing public key {key_id}.\n", err
    code, out, err = await rsctl(world, "member", "evidence", "verify", str(target), "--key",
                                 str(tmp_path / "key.pem"), cwd=tmp_path)
    assert code == 0, out + err
    assert out.splitlines()[0] == f"{target}: valid, signed with key {key_id}"
    assert f"  incident: {case['incident']}" in out and "  windows: 2" in out and "  sessions: 2" in out
    code, out, _ = await rsctl(world, "edit_my", "evidence", "export", case["incident"], "-o", "-", cwd=tmp_path)
    (tmp_path / "piped.json").write_text(out)
    assert code == 0 and kit_evidence.verify((tmp_path / "piped.json").read_bytes(), await world.public_key())
    code, _, err = await rsctl(world, "member", "evidence", "export", case["incident"], "-o",
                               str(tmp_path / "no.json"), cwd=tmp_path)
    assert code == 4 and err.startswith("rsctl: PERMISSION_DENIED: gateway.evidence.export needs the authorization")
    assert not (tmp_path / "no.json").exists()


async def test_after_expiry_and_the_sweep_the_reveals_are_still_there(world):
    w = world
    system = await w.system("EXP")
    incident = await w.incident(system)
    window = await w.window(system, SSH, incident, minutes=30)
    session = await w.session(window, "engineer", incident)
    entry = await w.entry(system, minutes=10)
    await w.reveal(entry.name, incident)
    before = kit_evidence.verify((await w.export(incident)).document, await w.public_key()).evidence

    w.suite.clock.advance(hours=1)  # the entry and the window have expired
    await w.suite.running["depot"].app.sweep_once()  # (unless its background pass just did)
    await w.suite.running["connections"].app.sweep_once()
    await expect_error(w.depot.GetLogonData(dpb.GetLogonDataRequest(name=entry.name), metadata=w.md("edit_all")),
                       NOT_FOUND, "NOT_FOUND")
    listed = await w.depot.ListLogonData(dpb.ListLogonDataRequest(parent=system), metadata=w.md("edit_all"))
    assert entry.name not in {e.name for e in listed.logon_data}

    after = kit_evidence.verify((await w.export(incident)).document, await w.public_key()).evidence
    actions = [(ev["action"], ev["logon_data"]) for ev in after["log_events"]]
    assert [a for a, _ in actions] == ["LOG_ACTION_CREATE", "LOG_ACTION_REVEAL", "LOG_ACTION_EXPIRE",
                                       "LOG_ACTION_PURGE"]
    assert {name for _, name in actions} == {entry.name}
    reveal = after["log_events"][1]
    assert reveal["actor"] == w.users["engineer"] and reveal["incident"] == incident
    assert reveal == before["log_events"][1], "the same event, at the same chain position, as before the sweep"
    assert [x["name"] for x in after["windows"]] == [window.name]
    assert after["windows"][0]["state"] == "CONNECTION_STATE_EXPIRED"
    assert [s["name"] for s in after["sessions"]] == [session]
    assert after["log_verification"]["valid"] is True
    assert after["exported_at"] > before["exported_at"]


def _flipped(document: bytes, position: int) -> bytes:
    changed = bytearray(document)
    changed[position] ^= 0x01
    return bytes(changed)
