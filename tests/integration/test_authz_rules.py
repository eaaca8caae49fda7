"""authz: every authorization of DESIGN §5 allows what it says and nothing more; user administrators stay
inside their customer; support assignments open exactly their system."""
from __future__ import annotations

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as pb
from tests.harness import email_of
from tests.helpers import expect_error, status_details

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)

AUTHS = ["OPEN_REMOTE_CONNECTIONS", "MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS", "EDIT_MY_LOGIN_DATA",
         "EDIT_ALL_LOGIN_DATA", "USER_ADMIN"]
MY, ALL = "EDIT_MY_LOGIN_DATA", "EDIT_ALL_LOGIN_DATA"

# The reference table, written from DESIGN §5 independently of services/authz/policy.py:
# permission -> (authorizations allowing it on any resource of the own customer,
#                authorizations allowing it only on entries the user owns,
#                any member of the customer, assigned engineer, any engineer, platform admin)
EXPECTED = {
    "connections.systems.read": (set(), set(), True, True, False, False),
    "connections.systems.list": (set(), set(), True, False, False, False),
    "connections.systems.write": ({"MAINTAIN_SYSTEM_DATA"}, set(), False, False, False, False),
    "connections.setups.read": (set(), set(), True, True, False, False),
    "connections.setups.write": ({"OPEN_REMOTE_CONNECTIONS"}, set(), False, False, False, False),
    "connections.connections.read": (set(), set(), True, True, False, False),
    "connections.connections.write": ({"OPEN_REMOTE_CONNECTIONS"}, set(), False, False, False, False),
    "connections.connector.read": ({"OPEN_REMOTE_CONNECTIONS"}, set(), False, False, False, False),
    "connections.incidents.read": (set(), set(), True, True, True, False),
    "connections.incidents.create": ({"CREATE_INCIDENTS"}, set(), False, False, False, False),
    "connections.incidents.updateStatus": ({"CREATE_INCIDENTS"}, set(), False, True, True, False),
    "connections.incidents.assign": (set(), set(), False, True, True, False),
    "connections.sessions.read": (set(), set(), True, True, True, False),  # an engineer: its own (the service)
    "connections.sessions.terminate": ({"OPEN_REMOTE_CONNECTIONS"}, set(), False, False, False, False),
    "connections.relay.tunnel": ({"OPEN_REMOTE_CONNECTIONS"}, set(), False, True, False, False),
    "depot.logonData.read": ({MY, ALL}, set(), False, True, False, False),
    "depot.logonData.create": ({MY, ALL}, set(), False, False, False, False),
    "depot.logonData.update": ({ALL}, {MY}, False, True, False, False),
    "depot.logonData.overwriteSecret": ({MY, ALL}, set(), False, True, False, False),
    "depot.logonData.delete": ({ALL}, {MY}, False, False, False, False),
    "depot.logonData.reveal": ({ALL}, {MY}, False, True, False, False),
    "depot.restrictedViews.read": ({MY, ALL}, set(), False, False, False, False),
    "depot.restrictedViews.write": ({ALL}, set(), False, False, False, False),
    "depot.log.read": ({MY, ALL}, set(), False, False, False, False),
    "depot.keys.manage": (set(), set(), False, False, False, True),
    "authz.customers.create": (set(), set(), False, False, False, True),
    "authz.users.create": ({"USER_ADMIN"}, set(), False, False, False, True),
    "authz.users.list": ({"USER_ADMIN"}, set(), False, False, False, True),
    "authz.grants.write": ({"USER_ADMIN"}, set(), False, False, False, True),
    "authz.identityLog.read": ({"USER_ADMIN"}, set(), False, False, False, True),
    "authz.serviceTokens.create": (set(), set(), False, False, False, True),
    "authz.assignments.write": (set(), set(), False, False, False, False),
    "authz.check": (set(), set(), False, False, False, False),
    "authz.notifications.resolve": (set(), set(), False, False, False, False),  # the depot and connections only
    "gateway.remoteAccess.prepare": ({"OPEN_REMOTE_CONNECTIONS"}, set(), False, False, False, False),
    "gateway.systems.overview": (set(), set(), True, True, False, False),
    # an incident's evidence holds its system's log events: exactly the log's readers
    "gateway.evidence.export": ({MY, ALL}, set(), False, False, False, False),
    # the event feeds: a watch of a customer, then each event with the rule of the list showing the same thing;
    # "assigned engineer" here is the engineer processing an incident of the customer's system
    "connections.events.watch": (set(), set(), True, True, False, False),
    "connections.events.read": (set(), set(), True, True, False, False),
    "depot.events.watch": ({MY, ALL}, set(), False, False, False, False),
    "depot.events.read": ({MY, ALL}, set(), False, False, False, False),
    "gateway.events.watch": (set(), set(), True, True, False, False),
}


def service_md(suite, service="depot"):
    return suite.md((suite.var / "secrets" / f"{service}.token").read_text().strip())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    """Customer A with one user per authorization (and one with none) besides its first user administrator,
    customer B, two engineers."""
    a, b = await suite.new_customer(), await suite.new_customer()
    users = {name: await suite.new_user(a, [name]) for name in AUTHS}
    users["NONE"] = await suite.new_user(a)
    other = await suite.new_user(b, AUTHS)
    engineer = await suite.new_engineer()
    idle_engineer = await suite.new_engineer()
    system = f"customers/{a}/systems/1001"
    await suite.stub("authz").SetSupportAssignment(pb.SetSupportAssignmentRequest(assignment=pb.SupportAssignment(
        incident=f"customers/{a}/incidents/inc-1", engineer=engineer[0], system=system)),
        metadata=service_md(suite, "connections"))
    return dict(a=a, b=b, users=users, other=other, engineer=engineer, idle=idle_engineer, system=system)


async def decide(suite, token, permission, **resource):
    response = await suite.stub("authz").Check(
        pb.CheckRequest(subject_token=token, permission=permission, resource=pb.ResourceAttributes(**resource)),
        metadata=service_md(suite))
    return response


@pytest.mark.parametrize("permission", sorted(EXPECTED))
async def test_authorizations_allow_exactly_the_reference_table(suite, world, permission):
    anywhere, own_only, member, assigned, any_engineer, admin = EXPECTED[permission]
    customer = f"customers/{world['a']}"
    for name, (user, token) in world["users"].items():
        held = {name} if name != "NONE" else set()
        for owner in ("users/S0000000000", user):
            expected = member or bool(held & anywhere) or (owner == user and bool(held & own_only))
            got = await decide(suite, token, permission, customer=customer, system=world["system"], owner=owner)
            assert got.allowed == expected, (permission, name, owner, got.reason)
            if not got.allowed and (anywhere | own_only):
                assert got.required_authorizations, "a denial names the authorization that would allow it"
    # customer B's user, holding everything, never acts on customer A
    other_user, other_token = world["other"]
    got = await decide(suite, other_token, permission, customer=customer, system=world["system"], owner=other_user)
    assert not got.allowed, (permission, got.reason)
    # engineers
    got = await decide(suite, world["engineer"][1], permission, customer=customer, system=world["system"])
    assert got.allowed == (assigned or any_engineer), (permission, "assigned engineer", got.reason)
    got = await decide(suite, world["idle"][1], permission, customer=customer, system=world["system"])
    assert got.allowed == any_engineer, (permission, "unassigned engineer", got.reason)
    got = await decide(suite, suite.admin_token, permission, customer=customer, system=world["system"])
    assert got.allowed == admin, (permission, "admin", got.reason)


# Permissions any authenticated principal holds (public facts, still decided by authz on every call).
ANYONE = ["connections.types.read", "connections.connector.verify", "gateway.evidenceKey.read"]


@pytest.mark.parametrize("permission", ANYONE)
async def test_public_reads_allow_every_principal(suite, world, permission):
    tokens = [token for _, token in world["users"].values()]
    tokens += [world["other"][1], world["engineer"][1], world["idle"][1], suite.admin_token]
    for token in tokens:
        got = await decide(suite, token, permission)
        assert got.allowed, (permission, got.reason)
    got = await decide(suite, "rs_" + "x" * 43, permission)
    assert not got.allowed, "an unknown token is nobody"


async def test_denial_names_the_missing_authorization(suite, world):
    _, token = world["users"]["NONE"]
    got = await decide(suite, token, "connections.connections.write", customer=f"customers/{world['a']}")
    assert not got.allowed
    assert list(got.required_authorizations) == [pb.AUTHORIZATION_OPEN_REMOTE_CONNECTIONS]
    assert "OPEN_REMOTE_CONNECTIONS" in got.reason and "user administrator" in got.reason


async def test_installation_scoped_grant_covers_only_its_installations(suite, world):
    _, token = await suite.new_user(world["a"], ["OPEN_REMOTE_CONNECTIONS"], installations=["20012345"])
    customer = f"customers/{world['a']}"
    assert (await decide(suite, token, "connections.connections.write", customer=customer,
                         installation="20012345")).allowed
    assert not (await decide(suite, token, "connections.connections.write", customer=customer,
                             installation="20099999")).allowed
    assert not (await decide(suite, token, "connections.connections.write", customer=customer)).allowed


async def test_assignment_allows_exactly_its_system_and_ends_with_delete(suite, world):
    engineer, token = await suite.new_engineer()
    customer = f"customers/{world['a']}"
    system, other_system = f"{customer}/systems/2001", f"{customer}/systems/2002"
    incident = f"{customer}/incidents/inc-77"
    authz, md = suite.stub("authz"), service_md(suite, "connections")
    assert not (await decide(suite, token, "depot.logonData.reveal", customer=customer, system=system)).allowed
    await authz.SetSupportAssignment(pb.SetSupportAssignmentRequest(assignment=pb.SupportAssignment(
        incident=incident, engineer=engineer, system=system)), metadata=md)
    got = await decide(suite, token, "depot.logonData.reveal", customer=customer, system=system)
    assert got.allowed and list(got.incidents) == [incident]
    assert not (await decide(suite, token, "depot.logonData.reveal", customer=customer, system=other_system)).allowed
    assert not (await decide(suite, token, "depot.logonData.reveal", customer=customer, system=system,
                             incident=f"{customer}/incidents/other")).allowed
    await authz.SetSupportAssignment(pb.SetSupportAssignmentRequest(assignment=pb.SupportAssignment(
        incident=incident, engineer=engineer, system=system)), metadata=md)  # a retry is harmless
    await authz.DeleteSupportAssignment(pb.DeleteSupportAssignmentRequest(incident=incident), metadata=md)
    assert not (await decide(suite, token, "depot.logonData.reveal", customer=customer, system=system)).allowed
    await authz.DeleteSupportAssignment(pb.DeleteSupportAssignmentRequest(incident=incident), metadata=md)


async def test_assignments_are_written_by_the_connections_service_only(suite, world):
    engineer, _ = world["engineer"]
    request = pb.SetSupportAssignmentRequest(assignment=pb.SupportAssignment(
        incident=f"customers/{world['a']}/incidents/x1", engineer=engineer, system=world["system"]))
    for md in (service_md(suite, "depot"), suite.md(suite.admin_token), suite.md(world["users"]["USER_ADMIN"][1])):
        await expect_error(suite.stub("authz").SetSupportAssignment(request, metadata=md),
                           grpc.StatusCode.PERMISSION_DENIED)


async def test_assignment_needs_a_support_engineer_and_matching_names(suite, world):
    authz, md = suite.stub("authz"), service_md(suite, "connections")
    customer_user, _ = world["users"]["NONE"]
    await expect_error(authz.SetSupportAssignment(pb.SetSupportAssignmentRequest(assignment=pb.SupportAssignment(
        incident=f"customers/{world['a']}/incidents/x2", engineer=customer_user, system=world["system"])),
        metadata=md), grpc.StatusCode.INVALID_ARGUMENT, field="assignment.engineer")
    await expect_error(authz.SetSupportAssignment(pb.SetSupportAssignmentRequest(assignment=pb.SupportAssignment(
        incident=f"customers/{world['b']}/incidents/x2", engineer=world["engineer"][0], system=world["system"])),
        metadata=md), grpc.StatusCode.INVALID_ARGUMENT, field="assignment.system")
    await expect_error(authz.SetSupportAssignment(pb.SetSupportAssignmentRequest(assignment=pb.SupportAssignment(
        incident="incidents/x2", engineer=world["engineer"][0], system=world["system"])),
        metadata=md), grpc.StatusCode.INVALID_ARGUMENT, field="assignment.incident")


async def test_user_admin_creates_and_grants_only_inside_its_customer(suite, world):
    authz = suite.stub("authz")
    _, admin_a = world["users"]["USER_ADMIN"]
    md = suite.md(admin_a)
    created = await suite.create_user("S0700000001", pb.PRINCIPAL_KIND_CUSTOMER_USER, world["a"], admin_a)
    # customer A has two user administrators: the grant waits for the other one's approval (suite.grant asks it)
    grant = await suite.grant(world["a"], created.user.name, "EDIT_ALL_LOGIN_DATA", by=admin_a)
    assert grant.state == pb.GRANT_STATE_ACTIVE and grant.granted_by == world["users"]["USER_ADMIN"][0]
    grants = await authz.ListAuthorizations(pb.ListAuthorizationsRequest(user=created.user.name), metadata=md)
    assert [(g.authorization, g.state) for g in grants.grants] == [
        (pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA, pb.GRANT_STATE_ACTIVE)]
    await authz.RevokeAuthorization(pb.RevokeAuthorizationRequest(
        user=created.user.name, authorization=pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=md)
    # another customer: neither users nor grants
    await expect_error(suite.create_user("S0700000002", pb.PRINCIPAL_KIND_CUSTOMER_USER, world["b"], admin_a),
                       grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(authz.GrantAuthorization(pb.GrantAuthorizationRequest(
        user=world["other"][0], authorization=pb.AUTHORIZATION_USER_ADMIN), metadata=md),
        grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(authz.ListUsers(pb.ListUsersRequest(customer=f"customers/{world['b']}"), metadata=md),
                       grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(authz.GetUser(pb.GetUserRequest(name=world["other"][0]), metadata=md),
                       grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(authz.UpdateUser(pb.UpdateUserRequest(
        user=pb.User(name=world["other"][0], disabled=True), update_mask=field_mask_pb2.FieldMask(paths=["disabled"])),
        metadata=md), grpc.StatusCode.PERMISSION_DENIED)


async def test_user_admin_cannot_escalate(suite, world):
    authz = suite.stub("authz")
    md = suite.md(world["users"]["USER_ADMIN"][1])
    for kind in (pb.PRINCIPAL_KIND_SUPPORT_ENGINEER, pb.PRINCIPAL_KIND_PLATFORM_ADMIN,
                 pb.PRINCIPAL_KIND_SERVICE_ACCOUNT):
        await expect_error(authz.CreateUser(pb.CreateUserRequest(user=pb.User(
            user_id="escalator", kind=kind, display_name="x", email=email_of("escalator"))), metadata=md),
            grpc.StatusCode.PERMISSION_DENIED)
    # nobody, not even the platform admin, can create another admin or a service account
    for kind in (pb.PRINCIPAL_KIND_PLATFORM_ADMIN, pb.PRINCIPAL_KIND_SERVICE_ACCOUNT):
        await expect_error(authz.CreateUser(pb.CreateUserRequest(user=pb.User(
            user_id="escalator", kind=kind, display_name="x", email=email_of("escalator"))),
            metadata=suite.md(suite.admin_token)), grpc.StatusCode.INVALID_ARGUMENT, field="user.kind")
    for target in ("users/admin", "users/svc-depot", world["engineer"][0]):
        await expect_error(authz.GrantAuthorization(pb.GrantAuthorizationRequest(
            user=target, authorization=pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=md),
            grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(authz.GrantAuthorization(pb.GrantAuthorizationRequest(
        user=world["users"]["NONE"][0], authorization=99), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, field="authorization")
    await expect_error(authz.GrantAuthorization(pb.GrantAuthorizationRequest(
        user=world["users"]["NONE"][0]), metadata=md), grpc.StatusCode.INVALID_ARGUMENT, field="authorization")


async def test_platform_admin_creates_customers_and_their_first_user_admin(suite):
    authz, md = suite.stub("authz"), suite.md(suite.admin_token)
    await authz.CreateCustomer(pb.CreateCustomerRequest(customer=pb.Customer(
        customer_number="9100000001", display_name="Fresh Corp")), metadata=md)
    await expect_error(authz.CreateCustomer(pb.CreateCustomerRequest(customer=pb.Customer(
        customer_number="9100000001", display_name="Fresh Corp")), metadata=md),
        grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    user = await suite.create_user("S9100000001", pb.PRINCIPAL_KIND_CUSTOMER_USER, "9100000001", suite.admin_token)
    grant = (await authz.GrantAuthorization(pb.GrantAuthorizationRequest(
        user=user.user.name, authorization=pb.AUTHORIZATION_USER_ADMIN), metadata=md)).grant
    assert grant.state == pb.GRANT_STATE_ACTIVE and grant.granted_by == "users/admin"
    listed = await authz.ListUsers(pb.ListUsersRequest(customer="customers/9100000001"), metadata=md)
    assert [u.name for u in listed.users] == [user.user.name]
    await expect_error(suite.create_user("S9100000009", pb.PRINCIPAL_KIND_CUSTOMER_USER, "9199999999",
                                         suite.admin_token), grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize("user,field", [
    (pb.User(user_id="s123", kind=pb.PRINCIPAL_KIND_CUSTOMER_USER, display_name="x"), "user.user_id"),
    (pb.User(user_id="S0000000001", kind=pb.PRINCIPAL_KIND_CUSTOMER_USER, display_name=""), "user.display_name"),
    (pb.User(user_id="S0000000001", kind=pb.PRINCIPAL_KIND_CUSTOMER_USER, display_name="x" * 201),
     "user.display_name"),
    (pb.User(user_id="S0000000001", kind=pb.PRINCIPAL_KIND_CUSTOMER_USER, display_name="x", email="nope"),
     "user.email"),
    (pb.User(user_id="S0000000001", kind=0, display_name="x"), "user.kind"),
    (pb.User(user_id="S0000000001", kind=42, display_name="x"), "user.kind"),
])
async def test_create_user_rejects_bad_fields(suite, world, user, field):
    user = pb.User(user_id=user.user_id, kind=user.kind, display_name=user.display_name,
                   email=user.email or "bad-fields@users.example.com")
    if user.kind == pb.PRINCIPAL_KIND_CUSTOMER_USER:
        user.customer = f"customers/{world['a']}"
    err = await expect_error(suite.stub("authz").CreateUser(pb.CreateUserRequest(user=user),
                                                            metadata=suite.md(suite.admin_token)),
                             grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field=field)
    assert [f for f, _ in status_details(err)[1]] == [field]  # the one bad field, nothing else


async def test_malformed_names_are_invalid_argument(suite, world):
    authz, md = suite.stub("authz"), suite.md(suite.admin_token)
    await expect_error(authz.GetUser(pb.GetUserRequest(name="people/x"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, field="name")
    await expect_error(authz.ListUsers(pb.ListUsersRequest(customer="customer/1"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, field="customer")
    await expect_error(authz.ListUsers(pb.ListUsersRequest(customer=f"customers/{world['a']}", page_token="!!"),
                                       metadata=md), grpc.StatusCode.INVALID_ARGUMENT, field="page_token")
    await expect_error(authz.ListUsers(pb.ListUsersRequest(customer=f"customers/{world['a']}", page_size=5000),
                                       metadata=md), grpc.StatusCode.INVALID_ARGUMENT, field="page_size")
    await expect_error(authz.GetUser(pb.GetUserRequest(name="users/" + "a" * 400), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, field="name")


async def test_list_users_pages(suite, world):
    authz, md = suite.stub("authz"), suite.md(suite.admin_token)
    seen, token = [], ""
    while True:
        page = await authz.ListUsers(pb.ListUsersRequest(customer=f"customers/{world['a']}", page_size=2,
                                                         page_token=token), metadata=md)
        seen += [u.name for u in page.users]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) and len(seen) >= 7 and seen == sorted(seen)
