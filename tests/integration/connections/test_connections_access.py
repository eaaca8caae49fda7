"""Every method of ConnectionsService through gRPC against real authz (SQLite and PostgreSQL): allowed for
the principal its rule names; PERMISSION_DENIED without the authorization; PERMISSION_DENIED (not NOT_FOUND)
for a user of another customer holding every authorization; INVALID_ARGUMENT naming the field for
malformed input."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Awaitable, Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from remotesupport.connections.v1 import connections_pb2 as cp
from services.kit.validate import to_timestamp
from tests.helpers import expect_error
from tests.integration.connections.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Case:
    method: str
    allowed: str  # a principal the rule allows
    denied: tuple[str, ...]  # principals without the authorization (same customer, engineer, admin)
    request: Callable[[World], Awaitable[object]]  # a valid request (fresh resources where the call changes them)
    malformed: Callable[[World], object]  # a request with one bad field
    field: str  # ... that field
    check: Callable[[World, object], None] = lambda w, response: None
    customer_scoped: bool = True  # False: global methods (any authenticated principal), no other customer


async def _same(value):
    return value


def const(build: Callable[[World], object]) -> Callable[[World], Awaitable[object]]:
    return lambda w: _same(build(w))


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def _fresh_system(w: World) -> cp.DeleteSystemRequest:
    return cp.DeleteSystemRequest(name=await w.new_system())


async def _fresh_window(w: World) -> cp.CloseConnectionRequest:
    return cp.CloseConnectionRequest(name=(await w.open()).name)


async def _extension(w: World) -> cp.ExtendConnectionRequest:
    window = await w.open()
    end = window.end_time.ToDatetime(dt.timezone.utc) + dt.timedelta(minutes=30)
    return cp.ExtendConnectionRequest(name=window.name, end_time=to_timestamp(end))


async def _fresh_setup(w: World) -> cp.DeleteConnectionSetupRequest:
    await w.set_up(w.system, "GOTOASSIST")
    return cp.DeleteConnectionSetupRequest(name=f"{w.system}/connectionSetups/GOTOASSIST")


async def _fresh_incident_confirm(w: World) -> cp.UpdateIncidentStatusRequest:
    return cp.UpdateIncidentStatusRequest(name=(await w.new_incident()).name, status=cp.INCIDENT_STATUS_CONFIRMED)


async def _fresh_incident_assign(w: World) -> cp.AssignProcessorRequest:
    return cp.AssignProcessorRequest(name=(await w.new_incident()).name)


async def _open_request(w: World) -> cp.OpenConnectionRequest:
    start = next(w._slots) * 2 * dt.timedelta(hours=1)
    return cp.OpenConnectionRequest(parent=w.system, connection_type="connectionTypes/SSH",
                                    start_time=w.at(start), end_time=w.at(start + dt.timedelta(hours=1)))


def _check_types(w, r):
    assert len(r.connection_types) == 33


def _check_system(w, r):
    assert r.system.name == w.system and r.system.system_id and r.system.etag


async def _live_session(w: World) -> str:
    """A fresh ACTIVE session of the shared window, of the engineer (inserted as the relay records one: the relay
    does not run in these tests)."""
    import uuid
    from services.connections.tables import SessionRow
    _, customer, _, number, _, window_id = w.window.split("/")
    row = SessionRow(id=uuid.uuid4().hex, customer=customer, system_number=number, window_id=window_id,
                     type_code="SSH", principal=w.users["engineer"], principal_kind="SUPPORT_ENGINEER",
                     relay_id="relay-a", state="ACTIVE", start_time=w.suite.clock.now(), bytes_to_target=0,
                     bytes_from_target=0, incident="", target="", end_reason="", refusal_reason="", detail="",
                     terminated_by="")
    async with w.suite.running["connections"].app.store.write() as uow:
        uow.add(row)
    return f"{w.system}/sessions/{row.id}"


async def _get_session(w: World) -> cp.GetSessionRequest:
    return cp.GetSessionRequest(name=await _live_session(w))


async def _terminate_session(w: World) -> cp.TerminateSessionRequest:
    return cp.TerminateSessionRequest(name=await _live_session(w))


CASES = [
    Case("ListConnectionTypes", "member", (), const(lambda w: cp.ListConnectionTypesRequest()),
         lambda w: cp.ListConnectionTypesRequest(category=99), "category", _check_types, customer_scoped=False),
    Case("GetConnectionType", "engineer", (), const(lambda w: cp.GetConnectionTypeRequest(name="connectionTypes/SSH")),
         lambda w: cp.GetConnectionTypeRequest(name="connectionTypes/ssh"), "name",
         lambda w, r: r.connection_type.display_name == "SSH Connection", customer_scoped=False),
    Case("VerifyServiceConnector", "engineer", (), const(lambda w: cp.VerifyServiceConnectorRequest(content=b"x")),
         lambda w: cp.VerifyServiceConnectorRequest(), "content", customer_scoped=False),
    Case("CreateSystem", "maintainer", ("opener", "reporter", "member", "unassigned", "admin"),
         const(lambda w: cp.CreateSystemRequest(parent=f"customers/{w.customer}", system=cp.System(
             installation_number="20099999", system_id="NEW", system_number="99"))),
         lambda w: cp.CreateSystemRequest(parent=f"customers/{w.customer}", system=cp.System(
             installation_number="20099999", system_id="new", system_number="98")), "system.system_id",
         lambda w, r: r.system.name == f"customers/{w.customer}/systems/99"),
    Case("GetSystem", "member", ("unassigned", "admin"), const(lambda w: cp.GetSystemRequest(name=w.system)),
         lambda w: cp.GetSystemRequest(name=f"customers/{w.customer}/system/1"), "name", _check_system),
    Case("ListSystems", "member", ("unassigned", "admin"),
         const(lambda w: cp.ListSystemsRequest(parent=f"customers/{w.customer}")),
         lambda w: cp.ListSystemsRequest(parent=f"customers/{w.customer}", page_size=-1), "page_size",
         lambda w, r: w.system in [s.name for s in r.systems]),
    Case("UpdateSystem", "maintainer", ("opener", "reporter", "member", "unassigned", "admin"),
         const(lambda w: cp.UpdateSystemRequest(system=cp.System(name=w.system, description="ERP, updated"),
                                                update_mask=_mask("description"))),
         lambda w: cp.UpdateSystemRequest(system=cp.System(name=w.system), update_mask=_mask("system_number")),
         "update_mask", lambda w, r: r.system.description == "ERP, updated"),
    Case("DeleteSystem", "maintainer", ("opener", "reporter", "member", "unassigned", "admin"), _fresh_system,
         lambda w: cp.DeleteSystemRequest(name="customers/x/systems/1"), "name"),
    Case("SetUpConnection", "opener", ("maintainer", "reporter", "member", "unassigned", "admin"),
         const(lambda w: cp.SetUpConnectionRequest(parent=w.system, connection_type="connectionTypes/TELNET",
                                                   parameters={"host": "10.0.0.1"})),
         lambda w: cp.SetUpConnectionRequest(parent=w.system, connection_type="connectionTypes/SSH",
                                             parameters={"host": "not a host"}), "parameters.host",
         lambda w, r: r.connection_setup.name == f"{w.system}/connectionSetups/TELNET"),
    Case("ListConnectionSetups", "member", ("unassigned", "admin"),
         const(lambda w: cp.ListConnectionSetupsRequest(parent=w.system)),
         lambda w: cp.ListConnectionSetupsRequest(parent=w.system, page_token="%%%"), "page_token",
         lambda w, r: "connectionTypes/SSH" in [s.connection_type for s in r.connection_setups]),
    Case("DeleteConnectionSetup", "opener", ("maintainer", "reporter", "member", "unassigned", "admin"), _fresh_setup,
         lambda w: cp.DeleteConnectionSetupRequest(name=f"{w.system}/connectionSetups/"), "name"),
    Case("OpenConnection", "opener", ("maintainer", "reporter", "member", "unassigned", "admin"), _open_request,
         lambda w: cp.OpenConnectionRequest(parent=w.system, connection_type="connectionTypes/SSH"), "end_time",
         lambda w, r: r.connection.state == cp.CONNECTION_STATE_SCHEDULED),
    Case("CloseConnection", "opener", ("maintainer", "reporter", "member", "unassigned", "admin"), _fresh_window,
         lambda w: cp.CloseConnectionRequest(name=f"{w.system}/connections/UPPER"), "name",
         lambda w, r: r.connection.state == cp.CONNECTION_STATE_CLOSED and r.connection.closer == w.users["opener"]),
    Case("ExtendConnection", "opener", ("maintainer", "reporter", "member", "unassigned", "admin"), _extension,
         lambda w: cp.ExtendConnectionRequest(name=w.window), "end_time",
         lambda w, r: r.connection.end_time.ToDatetime() - r.connection.start_time.ToDatetime()
         == dt.timedelta(minutes=90)),  # the hour w.open gives, and the half hour more
    Case("GetConnection", "member", ("unassigned", "admin"), const(lambda w: cp.GetConnectionRequest(name=w.window)),
         lambda w: cp.GetConnectionRequest(name=w.system), "name",
         lambda w, r: r.connection.state == cp.CONNECTION_STATE_OPEN),
    Case("ListConnections", "member", ("unassigned", "admin"),
         const(lambda w: cp.ListConnectionsRequest(parent=w.system)),
         lambda w: cp.ListConnectionsRequest(parent=w.system, state=42), "state",
         lambda w, r: w.window in [c.name for c in r.connections]),
    Case("GetServiceConnector", "opener", ("maintainer", "reporter", "member", "unassigned", "admin"),
         const(lambda w: cp.GetServiceConnectorRequest(name=w.window)),
         lambda w: cp.GetServiceConnectorRequest(name=""), "name",
         lambda w, r: r.service_connector.file_name == "stfk.oez"
         and r.service_connector.ticket.connection == w.window),
    Case("ListSessions", "member", ("admin",), const(lambda w: cp.ListSessionsRequest(parent=w.system)),
         lambda w: cp.ListSessionsRequest(parent=w.system, connection=f"{w.system}/sessions/x"), "connection"),
    Case("GetSession", "member", ("unassigned", "admin"), _get_session,
         lambda w: cp.GetSessionRequest(name=w.window), "name",
         lambda w, r: r.session.state == cp.SESSION_STATE_ACTIVE),
    Case("TerminateSession", "opener", ("maintainer", "reporter", "member", "engineer", "unassigned", "admin"),
         _terminate_session, lambda w: cp.TerminateSessionRequest(name=f"{w.system}/sessions/UPPER"), "name",
         lambda w, r: r.session.terminated_by == w.users["opener"]),
    Case("CreateIncident", "reporter", ("maintainer", "opener", "member", "unassigned", "admin"),
         const(lambda w: cp.CreateIncidentRequest(parent=f"customers/{w.customer}", incident=cp.Incident(
             system=w.system, title="Printing fails", priority=cp.INCIDENT_PRIORITY_LOW))),
         lambda w: cp.CreateIncidentRequest(parent=f"customers/{w.customer}", incident=cp.Incident(
             system=w.system, title="Printing fails")), "incident.priority",
         lambda w, r: r.incident.status == cp.INCIDENT_STATUS_NEW and r.incident.reporter == w.users["reporter"]),
    Case("GetIncident", "member", ("admin",), const(lambda w: cp.GetIncidentRequest(name=w.incident)),
         lambda w: cp.GetIncidentRequest(name=f"customers/{w.customer}/incidents/"), "name",
         lambda w, r: r.incident.name == w.incident),
    Case("ListIncidents", "member", ("admin",),
         const(lambda w: cp.ListIncidentsRequest(parent=f"customers/{w.customer}")),
         lambda w: cp.ListIncidentsRequest(parent=f"customers/{w.customer}", system="customers/1/systems/1"),
         "system", lambda w, r: w.incident in [i.name for i in r.incidents]),
    Case("UpdateIncidentStatus", "reporter", ("maintainer", "opener", "member", "admin"), _fresh_incident_confirm,
         lambda w: cp.UpdateIncidentStatusRequest(name=w.incident), "status",
         lambda w, r: r.incident.status == cp.INCIDENT_STATUS_CONFIRMED),
    Case("AssignProcessor", "engineer", ("maintainer", "opener", "reporter", "member", "admin"),
         _fresh_incident_assign, lambda w: cp.AssignProcessorRequest(name=w.incident, processor="eng.one"),
         "processor", lambda w, r: r.incident.processor == w.users["engineer"]),
    Case("WatchEvents", "member", ("admin",), const(lambda w: cp.WatchEventsRequest(parent=f"customers/{w.customer}")),
         lambda w: cp.WatchEventsRequest(parent=f"customers/{w.customer}", types=[999]), "types[0]",
         lambda w, r: bool(r.cursor) and not r.events),
]
IDS = [c.method for c in CASES]


async def test_every_method_has_a_case():
    methods = cp.DESCRIPTOR.services_by_name["ConnectionsService"].methods
    assert sorted(m.name for m in methods) == sorted(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_allowed(world, case):
    response = await world.call(case.method, await case.request(world), case.allowed)
    assert case.check(world, response) is not False


@pytest.mark.parametrize("case, principal", [(c, p) for c in CASES for p in c.denied],
                         ids=[f"{c.method}-{p}" for c in CASES for p in c.denied])
async def test_denied_without_the_authorization(world, case, principal):
    err = await expect_error(world.call(case.method, await case.request(world), principal), DENIED,
                             "PERMISSION_DENIED")
    assert world.tokens[principal] not in err.details()


@pytest.mark.parametrize("case", [c for c in CASES if c.customer_scoped], ids=[c.method for c in CASES
                                                                                if c.customer_scoped])
async def test_denied_for_another_customer(world, case):
    await expect_error(world.call(case.method, await case.request(world), "other"), DENIED, "PERMISSION_DENIED")


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_malformed_input_names_the_field(world, case):
    await expect_error(world.call(case.method, case.malformed(world), case.allowed), INVALID, "INVALID_ARGUMENT",
                       case.field)


@pytest.mark.parametrize("case", [c for c in CASES if not c.customer_scoped], ids=[c.method for c in CASES
                                                                                    if not c.customer_scoped])
async def test_global_methods_need_a_valid_token(world, case):
    await expect_error(case_call(world, case, "not-a-token"), grpc.StatusCode.UNAUTHENTICATED)


def case_call(world, case, token):
    async def go():
        return await getattr(world.conn, case.method)(await case.request(world), metadata=world.suite.md(token))
    return go()


@pytest.mark.parametrize("request_of", [
    lambda w: ("GetSystem", cp.GetSystemRequest(name=f"customers/{w.customer}/systems/424242")),
    lambda w: ("GetConnection", cp.GetConnectionRequest(name=f"customers/{w.customer}/systems/424242/connections/x1")),
    lambda w: ("GetIncident", cp.GetIncidentRequest(name=f"customers/{w.customer}/incidents/abc")),
    lambda w: ("DeleteSystem", cp.DeleteSystemRequest(name=f"customers/{w.customer}/systems/424242")),
], ids=["system", "connection", "incident", "delete"])
async def test_another_customer_learns_nothing_of_what_does_not_exist(world, request_of):
    method, request = request_of(world)
    await expect_error(world.call(method, request, "other"), DENIED)
    await expect_error(world.call(method, request, "maintainer" if method == "DeleteSystem" else "member"),
                       grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


async def test_denials_name_the_authorization_that_would_allow(world):
    err = await expect_error(world.call("OpenConnection", await _open_request(world), "member"), DENIED)
    from tests.helpers import status_details
    assert status_details(err)[2]["required_authorizations"] == "OPEN_REMOTE_CONNECTIONS"


async def test_installation_scoped_grants(world, suite):
    """A maintainer of installation 20012345 only: its systems, not another installation's."""
    _, token = await suite.new_user(world.customer, ["MAINTAIN_SYSTEM_DATA"], installations=["20012345"])
    md = suite.md(token)
    ok = await world.conn.CreateSystem(cp.CreateSystemRequest(parent=f"customers/{world.customer}", system=cp.System(
        installation_number="20012345", system_id="INS", system_number="5001")), metadata=md)
    await expect_error(world.conn.CreateSystem(cp.CreateSystemRequest(
        parent=f"customers/{world.customer}", system=cp.System(installation_number="20099999", system_id="INS",
                                                               system_number="5002")), metadata=md), DENIED)
    await expect_error(world.conn.UpdateSystem(cp.UpdateSystemRequest(  # moving it away needs the other one too
        system=cp.System(name=ok.system.name, installation_number="20099999"),
        update_mask=_mask("installation_number")), metadata=md), DENIED)
    await world.conn.DeleteSystem(cp.DeleteSystemRequest(name=ok.system.name), metadata=md)
