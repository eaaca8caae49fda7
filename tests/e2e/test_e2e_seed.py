"""The seed's story, end to end, through the gateway on the four real processes, with users made as the README
makes them: the platform admin creates the customer and its first user administrator, every user sets its own
password with the one-time code mailed to it (read from the supervisor's mail folder), the user administrators
create the other users, and a second one approves what needs four eyes."""
from __future__ import annotations

import datetime as dt
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.depot.v1 import depot_pb2_grpc

PASSWORD = "a long enough password 1"
CUSTOMER = "4711000"


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def md(token: str):
    return (("authorization", f"Bearer {token}"),)


def denied(call, code=grpc.StatusCode.PERMISSION_DENIED) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value.details()
    return err.value


def email(user_id: str) -> str:
    return f"{user_id}@acme.example"


class Actors:
    def __init__(self, e2e):
        self.e2e = e2e
        self.authz = authz_pb2_grpc.AuthzServiceStub(e2e.channel)
        self.conn = connections_pb2_grpc.ConnectionsServiceStub(e2e.channel)
        self.depot = depot_pb2_grpc.LogonDepotServiceStub(e2e.channel)
        self.codes: list[str] = []

    def login(self, user_id: str) -> str:
        return self.authz.Login(az.LoginRequest(user_id=user_id, password=PASSWORD)).access_token

    def enroll(self, user_id: str) -> str:
        """The user reads its code from its mail, sets its password (no token needed) and logs in."""
        code = self.e2e.code_for(email(user_id))
        self.codes.append(code)
        self.authz.SetPassword(az.SetPasswordRequest(user_id=user_id, code=code, new_password=PASSWORD))
        return self.login(user_id)

    def grant(self, token: str, user_id: str, authorization: int) -> az.Grant:
        return self.authz.GrantAuthorization(az.GrantAuthorizationRequest(user=f"users/{user_id}",
                                                                          authorization=authorization),
                                             metadata=md(token)).grant

    def create_user(self, token: str, user_id: str, grants: list[int], *, engineer: bool = False) -> str:
        user = az.User(user_id=user_id, display_name=user_id, email=email(user_id),
                       kind=az.PRINCIPAL_KIND_SUPPORT_ENGINEER if engineer else az.PRINCIPAL_KIND_CUSTOMER_USER,
                       customer="" if engineer else f"customers/{CUSTOMER}")
        created = self.authz.CreateUser(az.CreateUserRequest(user=user), metadata=md(token)).user
        assert not created.password_set
        for grant in grants:
            assert self.grant(token, user_id, grant).state == az.GRANT_STATE_ACTIVE
        return self.enroll(user_id)


def test_the_seed_end_to_end(e2e):
    a = Actors(e2e)
    admin = e2e.admin_token
    now = dt.datetime.now(dt.timezone.utc)

    # The platform admin creates the customer and its first user administrator, who sets its own password with
    # the code mailed to it; nobody else ever knows it.
    a.authz.CreateCustomer(az.CreateCustomerRequest(customer=az.Customer(customer_number=CUSTOMER,
                                                                         display_name="ACME Corp")), metadata=md(admin))
    useradmin = a.create_user(admin, "S0004711001", [az.AUTHORIZATION_USER_ADMIN])
    # Now the customer has a user administrator: the platform admin creates and grants no more of its users.
    denied(lambda: a.authz.CreateUser(az.CreateUserRequest(user=az.User(
        user_id="S0004711009", kind=az.PRINCIPAL_KIND_CUSTOMER_USER, customer=f"customers/{CUSTOMER}",
        display_name="late", email=email("S0004711009"))), metadata=md(admin)))
    # The user administrator creates users with the authorizations of DESIGN §5, and a second user administrator.
    basis = a.create_user(useradmin, "S0004711002", [az.AUTHORIZATION_OPEN_REMOTE_CONNECTIONS,
                                                     az.AUTHORIZATION_MAINTAIN_SYSTEM_DATA,
                                                     az.AUTHORIZATION_CREATE_INCIDENTS])
    second = a.create_user(useradmin, "S0004711005", [az.AUTHORIZATION_USER_ADMIN])
    colleague = a.create_user(useradmin, "S0004711004", [az.AUTHORIZATION_EDIT_MY_LOGIN_DATA])
    # Four eyes: EDIT_ALL_LOGIN_DATA waits until the second user administrator approves it.
    keeper = a.create_user(useradmin, "S0004711003", [])
    pending = a.grant(useradmin, "S0004711003", az.AUTHORIZATION_EDIT_ALL_LOGIN_DATA)
    assert pending.state == az.GRANT_STATE_PENDING_APPROVAL and pending.granted_by == "users/S0004711001"
    denied(lambda: a.authz.ApproveAuthorization(az.ApproveAuthorizationRequest(
        user="users/S0004711003", authorization=az.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=md(useradmin)))
    approved = a.authz.ApproveAuthorization(az.ApproveAuthorizationRequest(
        user="users/S0004711003", authorization=az.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=md(second)).grant
    assert approved.state == az.GRANT_STATE_ACTIVE and approved.approved_by == "users/S0004711005"
    engineer = a.create_user(admin, "eng.miller", [], engineer=True)
    # The user administrator cannot grant beyond its customer (the engineer is not its user).
    denied(lambda: a.authz.GrantAuthorization(az.GrantAuthorizationRequest(
        user="users/eng.miller", authorization=az.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=md(useradmin)))
    # The customer's identity log holds each of these changes, with who made it, and verifies.
    identity = a.authz.ListIdentityEvents(az.ListIdentityEventsRequest(parent=f"customers/{CUSTOMER}",
                                                                       page_size=1000), metadata=md(second)).events
    changes = {(e.action, e.actor, e.target) for e in identity}
    assert {("USER_CREATED", "users/admin", "users/S0004711001"),
            ("PASSWORD_SET", "users/S0004711001", "users/S0004711001"),
            ("GRANT_REQUESTED", "users/S0004711001", "users/S0004711003"),
            ("GRANT_APPROVED", "users/S0004711005", "users/S0004711003")} <= changes
    assert a.authz.VerifyIdentityLog(az.VerifyIdentityLogRequest(parent=f"customers/{CUSTOMER}"),
                                     metadata=md(useradmin)).valid

    # A system is registered; R/3 Support is set up; it is opened for two hours.
    system = a.conn.CreateSystem(cn.CreateSystemRequest(parent=f"customers/{CUSTOMER}", system=cn.System(
        installation_number="20047110", system_id="PRD", system_number="310000471100",
        description="Production ERP", saprouter_route="/H/saprouter.acme.example/S/3299/H/prd-app01")),
        metadata=md(basis)).system
    a.conn.SetUpConnection(cn.SetUpConnectionRequest(parent=system.name, connection_type="connectionTypes/R3_SUPPORT",
                                                     parameters={"host": "prd-app01", "instance_number": "00"}),
                           metadata=md(basis))
    window = a.conn.OpenConnection(cn.OpenConnectionRequest(
        parent=system.name, connection_type="connectionTypes/R3_SUPPORT", end_time=ts(now + dt.timedelta(hours=2)),
        reason="incident analysis"), metadata=md(basis)).connection
    assert window.state == cn.CONNECTION_STATE_OPEN

    # The connector file is downloaded and verifies.
    connector = a.conn.GetServiceConnector(cn.GetServiceConnectorRequest(name=window.name),
                                           metadata=md(basis)).service_connector
    assert connector.file_name == "stfk.oez"
    verdict = a.conn.VerifyServiceConnector(cn.VerifyServiceConnectorRequest(content=connector.content),
                                            metadata=md(basis))
    assert verdict.valid and verdict.currently_usable and verdict.ticket.connection == window.name

    # Logon data is stored with an expiry.
    expiry = ts(now + dt.timedelta(days=7))
    sap_user = a.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=system.name, secret="Pr0d-Secret-A", logon_data=dp.LogonData(
        kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT01", client="100", expire_time=expiry,
        connection_type="connectionTypes/R3_SUPPORT")), metadata=md(keeper)).logon_data
    hidden = a.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=system.name, secret="Pr0d-Secret-B", logon_data=dp.LogonData(
        kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="DDIC", client="000", expire_time=expiry)),
        metadata=md(keeper)).logon_data
    router = a.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=system.name, secret="Router-Pass", logon_data=dp.LogonData(
        kind=dp.LOGON_DATA_KIND_SAPROUTER_PASSWORD, server="saprouter.acme.example", expire_time=expiry)),
        metadata=md(colleague)).logon_data

    # An engineer without an assignment is denied.
    denied(lambda: a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=sap_user.name), metadata=md(engineer)))

    # An incident is reported and taken by the engineer, who now reveals the system user.
    incident = a.conn.CreateIncident(cn.CreateIncidentRequest(parent=f"customers/{CUSTOMER}", incident=cn.Incident(
        system=system.name, title="Short dumps in billing", priority=cn.INCIDENT_PRIORITY_HIGH)),
        metadata=md(basis)).incident
    incident = a.conn.AssignProcessor(cn.AssignProcessorRequest(name=incident.name), metadata=md(engineer)).incident
    assert incident.status == cn.INCIDENT_STATUS_IN_PROCESS_AT_VENDOR
    revealed = a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=sap_user.name), metadata=md(engineer))
    assert revealed.secret == "Pr0d-Secret-A"

    # A restricted view hides another entry from the engineer (SAProuter entries stay visible).
    incident_id = incident.name.rsplit("/", 1)[1]
    a.depot.SetRestrictedView(dp.SetRestrictedViewRequest(restricted_view=dp.RestrictedView(
        name=f"{system.name}/restrictedViews/{incident_id}", logon_data=[sap_user.name])), metadata=md(keeper))
    seen = {e.name for e in a.depot.ListLogonData(dp.ListLogonDataRequest(parent=system.name),
                                                  metadata=md(engineer)).logon_data}
    assert seen == {sap_user.name, router.name}
    with pytest.raises(grpc.RpcError) as err:
        a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=hidden.name), metadata=md(engineer))
    assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
    assert "Pr0d-Secret-B" not in err.value.details()

    # The incident goes to CUSTOMER_ACTION and the engineer is denied again.
    a.conn.UpdateIncidentStatus(cn.UpdateIncidentStatusRequest(name=incident.name,
                                                               status=cn.INCIDENT_STATUS_CUSTOMER_ACTION),
                                metadata=md(engineer))
    denied(lambda: a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=sap_user.name), metadata=md(engineer)))

    # An EDIT_MY user sees a colleague's entry masked, cannot reveal it, but overwrites its secret.
    listed = {e.name: e for e in a.depot.ListLogonData(dp.ListLogonDataRequest(parent=system.name),
                                                       metadata=md(colleague)).logon_data}
    assert sap_user.name in listed and listed[sap_user.name].has_secret
    assert "Pr0d-Secret-A" not in str(listed[sap_user.name])
    denied(lambda: a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=sap_user.name), metadata=md(colleague)))
    current = a.depot.GetLogonData(dp.GetLogonDataRequest(name=sap_user.name), metadata=md(colleague)).logon_data
    a.depot.UpdateLogonData(dp.UpdateLogonDataRequest(
        logon_data=dp.LogonData(name=sap_user.name, etag=current.etag), secret="New-Secret-C",
        update_mask=field_mask_pb2.FieldMask(paths=["secret"])), metadata=md(colleague))
    assert a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=sap_user.name),
                                   metadata=md(keeper)).secret == "New-Secret-C"
    assert a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=router.name),
                                   metadata=md(colleague)).secret == "Router-Pass"

    # The entry expires and is gone.
    short = a.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=system.name, secret="Short-Lived", logon_data=dp.LogonData(
        kind=dp.LOGON_DATA_KIND_OTHER, user_name="temp", expire_time=ts(dt.datetime.now(dt.timezone.utc)
                                                                      + dt.timedelta(seconds=2)))),
        metadata=md(keeper)).logon_data
    time.sleep(2.2)
    denied(lambda: a.depot.GetLogonData(dp.GetLogonDataRequest(name=short.name), metadata=md(keeper)),
           grpc.StatusCode.NOT_FOUND)
    denied(lambda: a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=short.name), metadata=md(keeper)),
           grpc.StatusCode.NOT_FOUND)

    # The log shows every one of these steps and verifies.
    deadline = time.monotonic() + 10
    while True:
        events = a.depot.ListLogEvents(dp.ListLogEventsRequest(parent=f"customers/{CUSTOMER}", page_size=1000),
                                       metadata=md(keeper)).events
        actions = [e.action for e in events]
        if dp.LOG_ACTION_PURGE in actions or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for action in (dp.LOG_ACTION_CREATE, dp.LOG_ACTION_REVEAL, dp.LOG_ACTION_REVEAL_DENIED,
                   dp.LOG_ACTION_RESTRICTED_VIEW_CHANGE, dp.LOG_ACTION_SECRET_OVERWRITE, dp.LOG_ACTION_PURGE):
        assert action in actions, dp.LogAction.Name(action)
    reveals = [e for e in events if e.action == dp.LOG_ACTION_REVEAL]
    assert {e.actor for e in reveals} >= {"users/eng.miller", "users/S0004711003", "users/S0004711004"}
    verified = a.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{CUSTOMER}"), metadata=md(keeper))
    assert verified.valid and verified.events_checked == len(events)

    # No secret ever reached a log line of any of the four processes.
    logs = e2e.logs()
    for secret in ("Pr0d-Secret-A", "Pr0d-Secret-B", "Router-Pass", "New-Secret-C", "Short-Lived", PASSWORD,
                   admin, engineer, keeper, *a.codes):
        assert secret not in logs
