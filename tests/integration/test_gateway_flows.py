"""gateway: the composite flows of RemoteSupportService against the real authz, connections and depot —
PrepareRemoteAccess (all or nothing), EndRemoteAccess, GetSystemOverview (what the caller may not see is
left out), and who may call them."""
from __future__ import annotations

import datetime as dt
import itertools

import grpc
import pytest
import pytest_asyncio

import gateway.server
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.kit.validate import to_timestamp
from tests.helpers import expect_error, status_details

pytestmark = pytest.mark.asyncio(loop_scope="module")

EVERYTHING = ["MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS", "EDIT_ALL_LOGIN_DATA", "CREATE_INCIDENTS"]
SECRET = "s3cret-Pa55word!"
SSH = "connectionTypes/SSH"
ACTIVE = (cpb.CONNECTION_STATE_OPEN, cpb.CONNECTION_STATE_SCHEDULED)
_sids = itertools.count()


class World:
    """Customer A: `full` (everything), `opener` (OPEN_REMOTE_CONNECTIONS only), `my` (OPEN + EDIT_MY);
    customer B: `stranger` (everything); an engineer; the gateway's stubs."""

    def __init__(self, suite, running) -> None:
        self.suite = suite
        channel = suite.channels["gateway"]
        self.gw = gateway_pb2_grpc.RemoteSupportServiceStub(channel)
        self.gw_connections = connections_pb2_grpc.ConnectionsServiceStub(channel)
        self.connections = suite.stub("connections")
        self.depot = suite.stub("depot")
        self.app = running.app

    def now(self) -> dt.datetime:
        return self.suite.clock.now()

    def later(self, **delta) -> object:
        return to_timestamp(self.now() + dt.timedelta(**delta))

    async def new_system(self) -> str:
        n = next(_sids)
        return await self.suite.new_system(self.a, self.full, sid=f"{chr(ord('A') + n // 100 % 26)}{n % 100:02d}")

    async def active_windows(self, system: str) -> list[cpb.Connection]:
        response = await self.connections.ListConnections(cpb.ListConnectionsRequest(parent=system),
                                                          metadata=self.suite.md(self.full))
        return [w for w in response.connections if w.state in ACTIVE]

    async def setups(self, system: str) -> list[cpb.ConnectionSetup]:
        response = await self.connections.ListConnectionSetups(cpb.ListConnectionSetupsRequest(parent=system),
                                                               metadata=self.suite.md(self.full))
        return list(response.connection_setups)

    async def entries(self, system: str) -> list[dpb.LogonData]:
        response = await self.depot.ListLogonData(dpb.ListLogonDataRequest(parent=system),
                                                  metadata=self.suite.md(self.full))
        return list(response.logon_data)

    def prepare_request(self, system: str, **overrides) -> gpb.PrepareRemoteAccessRequest:
        request = gpb.PrepareRemoteAccessRequest(
            system=system, connection_type=SSH, parameters={"host": "10.1.2.3"}, end_time=self.later(hours=2),
            reason="analyse incident", logon_data=dpb.LogonData(kind=dpb.LOGON_DATA_KIND_SERVER_OS_USER,
                                                                user_name="sapadm", server="10.1.2.3"),
            secret=SECRET)
        for key, value in overrides.items():
            if value is None:
                request.ClearField(key)
            elif key == "parameters":
                request.ClearField("parameters")
                request.parameters.update(value)
            elif hasattr(value, "CopyFrom"):
                getattr(request, key).CopyFrom(value)
            else:
                setattr(request, key, value)
        return request


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    running = await suite.start_service("gateway", build=gateway.server.build)
    w = World(suite, running)
    w.a, w.b = await suite.new_customer(), await suite.new_customer()
    w.full_user, w.full = await suite.new_user(w.a, EVERYTHING)
    w.opener_user, w.opener = await suite.new_user(w.a, ["OPEN_REMOTE_CONNECTIONS"])
    w.my_user, w.my = await suite.new_user(w.a, ["OPEN_REMOTE_CONNECTIONS", "EDIT_MY_LOGIN_DATA"])
    w.member_user, w.member = await suite.new_user(w.a, [])
    w.stranger_user, w.stranger = await suite.new_user(w.b, EVERYTHING)
    w.engineer_user, w.engineer = await suite.new_engineer()
    w.idle_engineer_user, w.idle_engineer = await suite.new_engineer()
    return w


# --- PrepareRemoteAccess ----------------------------------------------------------------------------------
async def test_prepare_sets_up_opens_issues_connector_and_stores_masked_entry(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    response = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=md)

    window = response.connection
    assert window.name.startswith(f"{system}/connections/")
    assert window.state == cpb.CONNECTION_STATE_OPEN and window.connection_type == SSH
    assert window.opener == w.full_user and window.reason == "analyse incident"
    assert response.connection_setup.name == f"{system}/connectionSetups/SSH"
    assert dict(response.connection_setup.parameters) == {"host": "10.1.2.3"}

    verdict = await w.gw_connections.VerifyServiceConnector(
        cpb.VerifyServiceConnectorRequest(content=response.service_connector.content), metadata=md)
    assert verdict.valid and verdict.currently_usable, verdict.problem
    assert verdict.ticket.connection == window.name and verdict.ticket.not_after == window.end_time
    assert response.service_connector.file_name == "stfk.oez"

    entry = response.logon_data
    assert entry.name.startswith(f"{system}/logonData/") and entry.has_secret
    assert entry.expire_time == window.end_time, "expiry defaults to the window's end"
    assert entry.connection == window.name and entry.connection_type == SSH
    assert SECRET.encode() not in response.SerializeToString()
    stored = await w.depot.GetLogonData(dpb.GetLogonDataRequest(name=entry.name), metadata=md)
    assert stored.logon_data == entry
    revealed = await w.depot.RevealLogonData(dpb.RevealLogonDataRequest(name=entry.name), metadata=md)
    assert revealed.secret == SECRET


async def test_prepare_on_an_existing_set_up_without_logon_data(world):
    w, md = world, world.suite.md(world.opener)
    system = await w.new_system()
    existing = (await w.connections.SetUpConnection(cpb.SetUpConnectionRequest(
        parent=system, connection_type=SSH, parameters={"host": "db.example.com", "port": "2222"}),
        metadata=md)).connection_setup
    start = w.later(hours=1)
    response = await w.gw.PrepareRemoteAccess(w.prepare_request(
        system, parameters={}, logon_data=None, secret="", start_time=start), metadata=md)
    assert response.connection_setup == existing, "the set-up is used as it is"
    assert response.connection.state == cpb.CONNECTION_STATE_SCHEDULED and response.connection.start_time == start
    assert not response.HasField("logon_data")
    assert response.service_connector.ticket.not_before == start


async def test_prepare_keeps_an_explicit_expiry_and_connection_type(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    expire = w.later(hours=1)
    entry = dpb.LogonData(kind=dpb.LOGON_DATA_KIND_SYSTEM_USER, user_name="DDIC", client="000",
                          expire_time=expire, connection_type="connectionTypes/R3_SUPPORT")
    response = await w.gw.PrepareRemoteAccess(w.prepare_request(system, logon_data=entry), metadata=md)
    assert response.logon_data.expire_time == expire
    assert response.logon_data.connection_type == "connectionTypes/R3_SUPPORT"
    assert response.logon_data.connection == response.connection.name


async def test_prepare_refuses_invalid_logon_data_before_any_effect(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    bad = dpb.LogonData(kind=dpb.LOGON_DATA_KIND_SYSTEM_USER, user_name="DDIC", client="12x")
    err = await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, logon_data=bad), metadata=md),
                             grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "logon_data.client")
    assert "undo_incomplete" not in status_details(err)[2]
    assert await w.setups(system) == [], "no set-up was made"
    assert await w.entries(system) == []
    windows = (await w.connections.ListConnections(cpb.ListConnectionsRequest(parent=system),
                                                   metadata=md)).connections
    assert list(windows) == [], "no window was opened (and closed again): the depot refused first"
    # nothing stands in the way of trying again with the same time frame
    ok = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=md)
    assert ok.connection.state == cpb.CONNECTION_STATE_OPEN


async def test_prepare_undo_restores_an_updated_set_up(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    await w.connections.SetUpConnection(cpb.SetUpConnectionRequest(
        parent=system, connection_type=SSH, parameters={"host": "old.example.com"}), metadata=md)
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(
        system, parameters={"host": "new.example.com"}, secret="x" * 2000), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "secret")
    [setup] = await w.setups(system)
    assert dict(setup.parameters) == {"host": "old.example.com"}
    assert await w.active_windows(system) == []


async def test_prepare_undoes_when_the_caller_may_not_store_logon_data(world):
    w, md = world, world.suite.md(world.opener)
    system = await w.new_system()
    err = await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=md),
                             grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "EDIT_MY_LOGIN_DATA" in status_details(err)[2].get("required_authorizations", "")
    assert await w.active_windows(system) == []
    assert await w.setups(system) == []


async def test_prepare_fails_early_without_side_effects(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, end_time=None), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "end_time")
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, secret=""), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "secret")
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, logon_data=None), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "logon_data")
    with_connection = dpb.LogonData(kind=dpb.LOGON_DATA_KIND_OTHER, user_name="u",
                                    connection=f"{system}/connections/abc")
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, logon_data=with_connection),
                                                metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "logon_data.connection")
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request("systems/1"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "system")
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, connection_type="SSH"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "connection_type")
    assert await w.setups(system) == [] and await w.active_windows(system) == []


async def test_prepare_reports_the_failing_step_of_connections(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    # too long for SSH (privileged access: at most 3 days): OpenConnection refuses, the new set-up is undone
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, end_time=w.later(days=10)),
                                                metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "end_time")
    assert await w.setups(system) == []
    # no parameters for a type that needs them: the set-up step names the missing one
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, parameters={}), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "parameters.host")
    # an overlapping window of the same type: CONFLICT, and the existing window is left alone
    first = await w.gw.PrepareRemoteAccess(w.prepare_request(system, logon_data=None, secret=""), metadata=md)
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "CONFLICT")
    assert [x.name for x in await w.active_windows(system)] == [first.connection.name]
    assert len(await w.setups(system)) == 1, "the set-up existed before the failing call: it stays"


async def test_prepare_is_denied_without_open_remote_connections_or_for_another_customer(world):
    w = world
    system = await w.new_system()
    for token in (w.member, w.stranger, w.engineer):
        await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=w.suite.md(token)),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system)),
                       grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert await w.setups(system) == []


async def test_prepare_with_an_installation_scoped_grant(world):
    w = world
    system = await w.new_system()
    installation = (await w.connections.GetSystem(cpb.GetSystemRequest(name=system),
                                                  metadata=w.suite.md(w.full))).system.installation_number
    _, scoped = await w.suite.new_user(w.a, ["OPEN_REMOTE_CONNECTIONS"], installations=[installation])
    _, elsewhere = await w.suite.new_user(w.a, ["OPEN_REMOTE_CONNECTIONS"], installations=["99999"])
    request = w.prepare_request(system, logon_data=None, secret="")
    ok = await w.gw.PrepareRemoteAccess(request, metadata=w.suite.md(scoped))
    assert ok.connection.state == cpb.CONNECTION_STATE_OPEN
    await expect_error(w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=ok.connection.name),
                                            metadata=w.suite.md(elsewhere)),
                       grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    ended = await w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=ok.connection.name),
                                       metadata=w.suite.md(scoped))
    assert ended.connection.state == cpb.CONNECTION_STATE_CLOSED


# --- EndRemoteAccess --------------------------------------------------------------------------------------
async def test_end_closes_and_deletes_only_the_entries_stored_for_the_window(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    prepared = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=md)
    unrelated = (await w.depot.CreateLogonData(dpb.CreateLogonDataRequest(
        parent=system, logon_data=dpb.LogonData(kind=dpb.LOGON_DATA_KIND_OTHER, user_name="keep",
                                                expire_time=w.later(days=1)), secret=SECRET),
        metadata=md)).logon_data
    ended = await w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=prepared.connection.name,
                                                                  delete_logon_data=True), metadata=md)
    assert ended.connection.name == prepared.connection.name
    assert ended.connection.state == cpb.CONNECTION_STATE_CLOSED and ended.connection.closer == w.full_user
    assert list(ended.deleted_logon_data) == [prepared.logon_data.name]
    await expect_error(w.depot.GetLogonData(dpb.GetLogonDataRequest(name=prepared.logon_data.name), metadata=md),
                       grpc.StatusCode.NOT_FOUND)
    assert [e.name for e in await w.entries(system)] == [unrelated.name]


async def test_end_without_deletion_keeps_the_entry_and_ending_again_is_harmless(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    prepared = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=md)
    name = prepared.connection.name
    ended = await w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=name), metadata=md)
    assert ended.connection.state == cpb.CONNECTION_STATE_CLOSED and not ended.deleted_logon_data
    assert [e.name for e in await w.entries(system)] == [prepared.logon_data.name]
    # already ended: not an error, and the entries can still be cleaned up
    again = await w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=name, delete_logon_data=True),
                                       metadata=md)
    assert again.connection.state == cpb.CONNECTION_STATE_CLOSED
    assert list(again.deleted_logon_data) == [prepared.logon_data.name]
    assert await w.entries(system) == []


async def test_end_errors(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    await expect_error(w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=f"{system}/connections/nope"),
                                            metadata=md), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await expect_error(w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=system), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "connection")
    prepared = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=md)
    for token in (w.stranger, w.member, w.engineer):
        await expect_error(w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(connection=prepared.connection.name),
                                                metadata=w.suite.md(token)),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert len(await w.active_windows(system)) == 1


async def test_end_deleting_another_users_entry_needs_edit_all(world):
    w = world
    system = await w.new_system()
    prepared = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=w.suite.md(w.full))
    err = await expect_error(w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(
        connection=prepared.connection.name, delete_logon_data=True), metadata=w.suite.md(w.my)),
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "deleted_logon_data" not in status_details(err)[2] and "closed_connection" not in status_details(err)[2]
    assert [x.name for x in await w.active_windows(system)] == [prepared.connection.name], \
        "refused before the window was closed"
    assert [e.name for e in await w.entries(system)] == [prepared.logon_data.name]


# --- GetSystemOverview ------------------------------------------------------------------------------------
async def _busy_system(w) -> tuple[str, gpb.PrepareRemoteAccessResponse]:
    system = await w.new_system()
    prepared = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=w.suite.md(w.full))
    for i in range(3):
        await w.depot.CreateLogonData(dpb.CreateLogonDataRequest(
            parent=system, logon_data=dpb.LogonData(kind=dpb.LOGON_DATA_KIND_OTHER, user_name=f"user{i}",
                                                    expire_time=w.later(days=1)), secret=SECRET),
            metadata=w.suite.md(w.full))
    return system, prepared


async def test_overview_for_a_user_who_may_see_everything(world):
    w, md = world, world.suite.md(world.full)
    system, prepared = await _busy_system(w)
    other_system, _ = await _busy_system(w)  # events of another system stay out
    overview = await w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system), metadata=md)
    assert overview.system.name == system and not overview.omitted
    assert [s.name for s in overview.connection_setups] == [prepared.connection_setup.name]
    assert [c.name for c in overview.connections] == [prepared.connection.name]
    assert [e.name for e in overview.logon_data] == [e.name for e in await w.entries(system)]
    assert len(overview.logon_data) == 4 and all(e.has_secret for e in overview.logon_data)
    assert SECRET.encode() not in overview.SerializeToString()
    assert len(overview.log_events) == 4 and {e.system for e in overview.log_events} == {system}
    sequences = [e.sequence for e in overview.log_events]
    assert sequences == sorted(sequences), "newest last"

    latest = await w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system, log_event_limit=2),
                                          metadata=md)
    assert [e.sequence for e in latest.log_events] == sequences[-2:]
    assert other_system != system


async def test_overview_leaves_out_what_a_user_without_depot_authorizations_may_not_see(world):
    w = world
    system, prepared = await _busy_system(w)
    for token in (w.opener, w.member):
        overview = await w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system),
                                                metadata=w.suite.md(token))
        assert overview.system.name == system
        assert [c.name for c in overview.connections] == [prepared.connection.name]
        assert len(overview.connection_setups) == 1
        assert not overview.logon_data and not overview.log_events
        assert sorted(overview.omitted) == ["log_events", "logon_data"]


async def test_overview_for_an_assigned_engineer(world):
    w, md = world, world.suite.md(world.full)
    system, prepared = await _busy_system(w)
    incident = (await w.connections.CreateIncident(cpb.CreateIncidentRequest(
        parent=f"customers/{w.a}", incident=cpb.Incident(system=system, title="dump in FI",
                                                         priority=cpb.INCIDENT_PRIORITY_HIGH)),
        metadata=md)).incident
    await expect_error(w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system),
                                              metadata=w.suite.md(w.engineer)),
                       grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    await w.connections.AssignProcessor(cpb.AssignProcessorRequest(name=incident.name),
                                        metadata=w.suite.md(w.engineer))
    overview = await w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system),
                                            metadata=w.suite.md(w.engineer))
    assert overview.system.name == system
    assert [c.name for c in overview.connections] == [prepared.connection.name]
    assert len(overview.connection_setups) == 1
    assert len(overview.logon_data) == 4, "no restricted view: the engineer sees the system's entries"
    assert list(overview.omitted) == ["log_events"]
    await expect_error(w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system),
                                              metadata=w.suite.md(w.idle_engineer)),
                       grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_overview_errors(world):
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    await expect_error(w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system),
                                              metadata=w.suite.md(w.stranger)),
                       grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    await expect_error(w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system, log_event_limit=101),
                                              metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "log_event_limit")
    await expect_error(w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system="customers/x"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "system")
    await expect_error(w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=f"customers/{w.a}/systems/1"),
                                              metadata=md), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    empty = await w.gw.GetSystemOverview(gpb.GetSystemOverviewRequest(system=system), metadata=md)
    assert empty.system.name == system and not empty.omitted
    assert not empty.connections and not empty.connection_setups and not empty.logon_data and not empty.log_events


# --- all or nothing: every step checked before the first effect (validate_only) -----------------------------
async def test_prepare_refused_by_any_step_changes_nothing(world):
    """Each step's refusal, in the order the steps run: the set-up, the window (type set up already), the logon
    data - each ends the call with nothing set up, opened or stored."""
    w, md = world, world.suite.md(world.full)
    system = await w.new_system()
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, parameters={"bogus": "1"}), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "parameters.bogus")
    assert (await w.setups(system), await w.entries(system)) == ([], [])
    await w.connections.SetUpConnection(cpb.SetUpConnectionRequest(
        parent=system, connection_type=SSH, parameters={"host": "10.1.2.3"}), metadata=md)
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, parameters={}, end_time=w.later(days=400)),
                                                metadata=md), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    await expect_error(w.gw.PrepareRemoteAccess(w.prepare_request(system, parameters={}, secret=""), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "secret")
    windows = (await w.connections.ListConnections(cpb.ListConnectionsRequest(parent=system),
                                                   metadata=md)).connections
    assert (list(windows), await w.entries(system)) == ([], [])


async def test_end_refused_to_close_deletes_nothing(world):
    w = world
    system = await w.new_system()
    prepared = await w.gw.PrepareRemoteAccess(w.prepare_request(system), metadata=w.suite.md(w.full))
    await expect_error(w.gw.EndRemoteAccess(gpb.EndRemoteAccessRequest(
        connection=prepared.connection.name, delete_logon_data=True), metadata=w.suite.md(w.member)),
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert [x.name for x in await w.active_windows(system)] == [prepared.connection.name]
    assert [e.name for e in await w.entries(system)] == [prepared.logon_data.name]

