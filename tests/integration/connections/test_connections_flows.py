"""ConnectionsService flows through gRPC against real authz (SQLite and PostgreSQL), on the suite's shared
ManualClock: the catalog as the seed gives it, window states at their exact boundaries, the opening rules,
the sweep, the signed service connector, and incidents whose status moves the support assignment in authz."""
from __future__ import annotations

import base64
import contextlib
import datetime as dt

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cp
from services.connections.assignment_client import AuthzAssignments
from services.connections.connection_types import CATEGORIES, CATEGORY_TITLES
from services.kit import clients
from services.kit.validate import timestamp, to_timestamp
from tests.helpers import expect_error, status_details
from tests.integration.connections.world import HOUR, World, build_world
from tests.unit.catalog_data import CONNECTION_TYPES, SEED_ROWS

pytestmark = pytest.mark.asyncio(loop_scope="module")

US = dt.timedelta(microseconds=1)
FAILED = grpc.StatusCode.FAILED_PRECONDITION
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite) -> World:
    return await build_world(suite)


@pytest.fixture
def clock(suite):
    """The suite's clock, put back where it was after the test (logins expire 12 h after they were made)."""
    before = suite.clock.now()
    yield suite.clock
    suite.clock.set(before)


@pytest.fixture
def app(suite):
    return suite.running["connections"].app


# --- catalog ---------------------------------------------------------------------------------------


async def test_the_catalog_is_served_as_the_seed_gives_it(world):
    types = (await world.call("ListConnectionTypes", cp.ListConnectionTypesRequest(), "member")).connection_types
    rows = [(CATEGORY_TITLES[cp.ConnectionCategory.Name(t.category).removeprefix("CONNECTION_CATEGORY_")],
             t.display_name, t.description, t.sap_note) for t in types]
    assert rows == SEED_ROWS
    for category in CATEGORIES:
        value = cp.ConnectionCategory.Value(f"CONNECTION_CATEGORY_{category}")
        listed = (await world.call("ListConnectionTypes", cp.ListConnectionTypesRequest(category=value),
                                   "member")).connection_types
        assert [t.code for t in listed] == [t.code for t in CONNECTION_TYPES if t.category == category]


async def test_a_type_carries_what_a_set_up_needs(world):
    r3 = (await world.call("GetConnectionType", cp.GetConnectionTypeRequest(name="connectionTypes/R3_SUPPORT"),
                           "engineer")).connection_type
    assert (r3.name, r3.code, r3.display_name, r3.sap_note, r3.default_port) == (
        "connectionTypes/R3_SUPPORT", "R3_SUPPORT", "R/3 Support", "812732", 3200)
    assert r3.max_open_duration.ToTimedelta() == dt.timedelta(days=14)
    assert [(p.key, p.kind, p.required) for p in r3.parameters] == [
        ("host", cp.PARAMETER_KIND_HOST, True), ("instance_number", cp.PARAMETER_KIND_INSTANCE_NUMBER, True)]
    goto = (await world.call("GetConnectionType", cp.GetConnectionTypeRequest(name="connectionTypes/GOTOASSIST"),
                             "member")).connection_type
    assert goto.default_port == 0 and not goto.parameters and goto.max_open_duration.ToTimedelta() == 72 * HOUR
    await expect_error(world.call("GetConnectionType", cp.GetConnectionTypeRequest(name="connectionTypes/NOPE"),
                                  "member"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


# --- systems and set-ups ----------------------------------------------------------------------------


async def test_switch_system_search_and_route_rules(world):
    system = await world.new_system()
    sid = (await world.call("GetSystem", cp.GetSystemRequest(name=system), "member")).system.system_id
    found = (await world.call("ListSystems", cp.ListSystemsRequest(parent=f"customers/{world.customer}",
                                                                   query=sid.lower()), "member")).systems
    assert [s.name for s in found] == [system]
    err = await expect_error(world.call("CreateSystem", cp.CreateSystemRequest(
        parent=f"customers/{world.customer}", system=cp.System(
            installation_number="20012345", system_id="PWD", system_number="6001",
            saprouter_route="/H/router/W/s3cret/H/sap")), "maintainer"), INVALID, field="system.saprouter_route")
    assert "logon depot" in err.details() and "s3cret" not in err.details()
    await expect_error(world.call("CreateSystem", cp.CreateSystemRequest(
        parent=f"customers/{world.customer}", system=cp.System(installation_number="20012345", system_id="SAP",
                                                               system_number="6002")), "maintainer"),
                       INVALID, field="system.system_id", message="reserved")


async def test_update_and_delete_check_the_etag(world):
    system = (await world.call("GetSystem", cp.GetSystemRequest(name=await world.new_system()), "member")).system
    update = cp.UpdateSystemRequest(system=cp.System(name=system.name, product="SAP S/4HANA 2023", etag=system.etag),
                                    update_mask=field_mask_pb2.FieldMask(paths=["product"]))
    changed = (await world.call("UpdateSystem", update, "maintainer")).system
    assert changed.product == "SAP S/4HANA 2023" and changed.etag != system.etag
    await expect_error(world.call("UpdateSystem", update, "maintainer"), grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    await expect_error(world.call("DeleteSystem", cp.DeleteSystemRequest(name=system.name, etag=system.etag),
                                  "maintainer"), grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    await world.call("DeleteSystem", cp.DeleteSystemRequest(name=system.name, etag=changed.etag), "maintainer")


async def test_a_second_set_up_updates(world):
    system = await world.new_system()
    first = await world.call("SetUpConnection", cp.SetUpConnectionRequest(
        parent=system, connection_type="connectionTypes/SSH", parameters={"host": "a.example.com"}), "opener")
    again = await world.call("SetUpConnection", cp.SetUpConnectionRequest(
        parent=system, connection_type="connectionTypes/SSH", parameters={"host": "b.example.com", "port": "2222"}),
        "opener")
    assert first.created and not again.created
    assert dict(again.connection_setup.parameters) == {"host": "b.example.com", "port": "2222"}
    assert again.connection_setup.creator == world.users["opener"]
    listed = (await world.call("ListConnectionSetups", cp.ListConnectionSetupsRequest(parent=system),
                               "member")).connection_setups
    assert [s.name for s in listed] == [f"{system}/connectionSetups/SSH"]


# --- windows ---------------------------------------------------------------------------------------


async def _state(world, name) -> int:
    return (await world.call("GetConnection", cp.GetConnectionRequest(name=name), "member")).connection.state


async def test_states_at_the_exact_boundaries(world, clock):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=HOUR, length=2 * HOUR)
    start, end = timestamp(window.start_time), timestamp(window.end_time)
    for instant, state in [(start - US, cp.CONNECTION_STATE_SCHEDULED), (start, cp.CONNECTION_STATE_OPEN),
                           (end - US, cp.CONNECTION_STATE_OPEN), (end, cp.CONNECTION_STATE_EXPIRED)]:
        clock.set(instant)
        assert await _state(world, window.name) == state, instant
        listed = (await world.call("ListConnections", cp.ListConnectionsRequest(parent=system, state=state),
                                   "member")).connections
        assert [c.name for c in listed] == [window.name]
    expired = (await world.call("GetConnection", cp.GetConnectionRequest(name=window.name), "member")).connection
    assert expired.close_time == window.end_time and expired.closer == ""


async def test_opening_rules(world, clock):
    system = await world.new_system()
    await world.set_up(system)

    def request(start: dt.timedelta | None, end: dt.timedelta | None, code="SSH") -> cp.OpenConnectionRequest:
        msg = cp.OpenConnectionRequest(parent=system, connection_type=f"connectionTypes/{code}")
        if start is not None:
            msg.start_time.CopyFrom(world.at(start))
        if end is not None:
            msg.end_time.CopyFrom(world.at(end))
        return msg

    await expect_error(world.call("OpenConnection", request(-US, HOUR), "opener"), INVALID, field="start_time")
    await expect_error(world.call("OpenConnection", request(2 * HOUR, HOUR), "opener"), INVALID, field="end_time")
    await expect_error(world.call("OpenConnection", request(None, 72 * HOUR + US), "opener"), INVALID,
                       field="end_time", message="maximum of 72 hours")
    await expect_error(world.call("OpenConnection", request(None, HOUR, "TELNET"), "opener"), FAILED,
                       "FAILED_PRECONDITION", message="not set up")
    await expect_error(world.call("OpenConnection", cp.OpenConnectionRequest(
        parent=system, connection_type="connectionTypes/NOPE", end_time=world.at(HOUR)), "opener"),
        INVALID, field="connection_type")
    first = (await world.call("OpenConnection", request(None, 72 * HOUR), "opener")).connection
    assert first.state == cp.CONNECTION_STATE_OPEN and first.opener == world.users["opener"]
    err = await expect_error(world.call("OpenConnection", request(71 * HOUR, 73 * HOUR), "opener"), FAILED,
                             "CONFLICT", message=first.name)
    assert status_details(err)[2]["existing_connection"] == first.name
    await world.call("OpenConnection", request(72 * HOUR, 73 * HOUR), "opener")  # adjacent is fine


async def test_closing_early_and_what_is_kept(world, clock):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0), length=2 * HOUR)
    clock.advance(minutes=30)
    closed = (await world.call("CloseConnection", cp.CloseConnectionRequest(name=window.name), "opener")).connection
    assert closed.state == cp.CONNECTION_STATE_CLOSED and closed.closer == world.users["opener"]
    assert timestamp(closed.close_time) == clock.now()
    assert (closed.opener, closed.create_time, closed.reason) == (window.opener, window.create_time, "analysis")
    await expect_error(world.call("CloseConnection", cp.CloseConnectionRequest(name=window.name), "opener"),
                       FAILED, message="already CLOSED")
    later = await world.open(system, start=HOUR, length=HOUR)
    clock.set(timestamp(later.end_time))
    await expect_error(world.call("CloseConnection", cp.CloseConnectionRequest(name=later.name), "opener"),
                       FAILED, message="already EXPIRED")


async def test_delete_is_refused_while_a_window_is_open(world):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0))
    await expect_error(world.call("DeleteSystem", cp.DeleteSystemRequest(name=system), "maintainer"), FAILED,
                       message=window.name)
    await expect_error(world.call("DeleteConnectionSetup", cp.DeleteConnectionSetupRequest(
        name=f"{system}/connectionSetups/SSH"), "opener"), FAILED, message=window.name)
    await world.call("CloseConnection", cp.CloseConnectionRequest(name=window.name), "opener")
    await world.call("DeleteSystem", cp.DeleteSystemRequest(name=system), "maintainer")


async def test_the_sweep_records_an_automatic_close_once(world, clock, app):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0), length=HOUR)
    clock.set(timestamp(window.end_time) - US)
    assert window.name not in (await app.sweep_once()).expired
    clock.set(timestamp(window.end_time))
    await app.sweep_once()  # records it, unless the background sweep just did
    assert window.name not in (await app.sweep_once()).expired
    got = (await world.call("GetConnection", cp.GetConnectionRequest(name=window.name), "member")).connection
    assert got.state == cp.CONNECTION_STATE_EXPIRED and got.close_time == window.end_time and got.closer == ""


# --- service connector -----------------------------------------------------------------------------


async def _connector(world, name) -> cp.ServiceConnector:
    response = await world.call("GetServiceConnector", cp.GetServiceConnectorRequest(name=name), "opener")
    return response.service_connector


async def _verify(world, content: bytes) -> cp.VerifyServiceConnectorResponse:
    return await world.call("VerifyServiceConnector", cp.VerifyServiceConnectorRequest(content=content), "member")


async def test_connector_of_an_open_window_is_valid_and_usable(world, clock):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0), length=HOUR)
    issued = await _connector(world, window.name)
    ticket = issued.ticket
    assert issued.file_name == "stfk.oez" and issued.content.startswith(b"STFK1\n")
    assert (ticket.connection, ticket.system, ticket.connection_type) == (window.name, system, "connectionTypes/SSH")
    assert ticket.saprouter_route == "/H/saprouter.example.com/S/3299/H/sapprd01"
    assert (ticket.not_before, ticket.not_after) == (window.start_time, window.end_time)
    assert timestamp(ticket.issue_time) == clock.now() and ticket.key_id
    verdict = await _verify(world, issued.content)
    assert verdict.valid and verdict.currently_usable and verdict.ticket == ticket and verdict.problem == ""
    clock.set(timestamp(window.end_time))  # the same file, once the window has expired
    verdict = await _verify(world, issued.content)
    assert verdict.valid and not verdict.currently_usable and "expired" in verdict.problem
    await expect_error(_connector(world, window.name), FAILED, message="EXPIRED")


async def test_connector_of_a_scheduled_window_and_of_a_closed_one(world):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=HOUR)
    issued = await _connector(world, window.name)
    verdict = await _verify(world, issued.content)
    assert verdict.valid and not verdict.currently_usable and "scheduled" in verdict.problem
    await world.call("CloseConnection", cp.CloseConnectionRequest(name=window.name), "opener")
    await expect_error(_connector(world, window.name), FAILED, "FAILED_PRECONDITION", message="CLOSED")
    verdict = await _verify(world, issued.content)
    assert verdict.valid and not verdict.currently_usable and "closed" in verdict.problem


async def test_a_tampered_connector_is_not_valid(world):
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0))
    content = (await _connector(world, window.name)).content
    magic, body, signature, _ = content.split(b"\n")
    ticket = cp.ConnectorTicket.FromString(base64.b64decode(body))
    ticket.not_after.CopyFrom(to_timestamp(timestamp(ticket.not_after) + 100 * HOUR))
    forged = b"\n".join([magic, base64.b64encode(ticket.SerializeToString()), signature, b""])
    for bad in (forged, content.replace(b"STFK1", b"STFK2"), b"MZ\x90\x00 not a connector", content[:-20]):
        verdict = await _verify(world, bad)
        assert not verdict.valid and not verdict.currently_usable and verdict.problem
        assert not verdict.HasField("ticket")


# --- incidents and the support assignment in authz ----------------------------------------------------


async def _engineer_sees(world, engineer: str, system: str) -> bool:
    try:
        await world.call("GetSystem", cp.GetSystemRequest(name=system), engineer)
    except grpc.RpcError as err:
        assert err.code() == DENIED, err.details()
        return False
    return True


async def _status(world, incident: str, status: int, principal: str) -> cp.Incident:
    return (await world.call("UpdateIncidentStatus", cp.UpdateIncidentStatusRequest(name=incident, status=status),
                             principal)).incident


async def test_the_assignment_follows_the_incident(world, suite):
    system, other_system = await world.new_system(), await world.new_system()
    world.users["taker"], world.tokens["taker"] = await suite.new_engineer()
    incident = (await world.new_incident(system)).name
    assert not await _engineer_sees(world, "taker", system)

    taken = (await world.call("AssignProcessor", cp.AssignProcessorRequest(name=incident), "taker")).incident
    assert taken.status == cp.INCIDENT_STATUS_IN_PROCESS_AT_VENDOR and taken.processor == world.users["taker"]
    assert await _engineer_sees(world, "taker", system)  # granted
    assert not await _engineer_sees(world, "taker", other_system)
    await world.call("ListConnectionSetups", cp.ListConnectionSetupsRequest(parent=system), "taker")

    await expect_error(_status(world, incident, cp.INCIDENT_STATUS_CUSTOMER_ACTION, "engineer"), DENIED)
    await _status(world, incident, cp.INCIDENT_STATUS_CUSTOMER_ACTION, "taker")
    assert not await _engineer_sees(world, "taker", system)  # revoked
    await _status(world, incident, cp.INCIDENT_STATUS_IN_PROCESS_AT_VENDOR, "reporter")
    assert await _engineer_sees(world, "taker", system)  # granted again
    await _status(world, incident, cp.INCIDENT_STATUS_CONFIRMED, "reporter")
    assert not await _engineer_sees(world, "taker", system)  # revoked for good
    err = await expect_error(_status(world, incident, cp.INCIDENT_STATUS_CUSTOMER_ACTION, "taker"), FAILED)
    assert "CONFIRMED" in err.details() and "CUSTOMER_ACTION" in err.details()


async def test_a_processor_authz_refuses_leaves_the_incident_unchanged(world, suite):
    incident = await world.new_incident()
    await expect_error(world.call("AssignProcessor", cp.AssignProcessorRequest(
        name=incident.name, processor=world.users["member"]), "engineer"), INVALID, field="processor")
    user, _ = await suite.new_engineer()
    await suite.stub("authz").UpdateUser(az.UpdateUserRequest(
        user=az.User(name=user, disabled=True), update_mask=field_mask_pb2.FieldMask(paths=["disabled"])),
        metadata=suite.md(suite.admin_token))
    await expect_error(world.call("AssignProcessor", cp.AssignProcessorRequest(name=incident.name, processor=user),
                                  "engineer"), INVALID, field="processor")
    after = (await world.call("GetIncident", cp.GetIncidentRequest(name=incident.name), "member")).incident
    assert after == incident


@contextlib.contextmanager
def assignments_via(app, replacement):
    original = app.workflow.assignments
    app.workflow.assignments = replacement
    try:
        yield
    finally:
        app.workflow.assignments = original


async def test_authz_unreachable_leaves_the_incident_unchanged(world, suite, app):
    system = await world.new_system()
    world.users["waiting"], world.tokens["waiting"] = await suite.new_engineer()
    incident = await world.new_incident(system)
    dead = clients.channel("127.0.0.1:1")  # nothing listens there
    try:
        with assignments_via(app, AuthzAssignments(dead, lambda: "unused", 1.0)):
            await expect_error(world.call("AssignProcessor", cp.AssignProcessorRequest(name=incident.name),
                                          "waiting"), grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
    finally:
        await dead.close()
    assert (await world.call("GetIncident", cp.GetIncidentRequest(name=incident.name), "member")).incident == incident
    assert not await _engineer_sees(world, "waiting", system)

    taken = (await world.call("AssignProcessor", cp.AssignProcessorRequest(name=incident.name), "waiting")).incident
    with assignments_via(app, AuthzAssignments(suite.channels["authz"], lambda: "bogus-token", 1.0)):
        await expect_error(_status(world, incident.name, cp.INCIDENT_STATUS_CUSTOMER_ACTION, "waiting"),
                           grpc.StatusCode.UNAVAILABLE)
    assert (await world.call("GetIncident", cp.GetIncidentRequest(name=incident.name), "member")).incident == taken
    assert await _engineer_sees(world, "waiting", system)  # still in process, still assigned
