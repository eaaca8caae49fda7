"""authz's separation of duties (issue 15 point 1), against the real in-process authz and the suite's SMTP sink:
nobody who administers identities obtains a credential or an authorization of its own by it.

- Enrollment and reset: a user has no password until it sets one with the one-time code mailed to its own
  address (SetPassword); a wrong, used, expired, voided or replaced code - or an unknown user - is the same
  UNAUTHENTICATED. A reset ends the user's sessions and password and mails the code to the user only.
- The password and the address are changed by the user itself only; addresses are unique (without case and
  "+tag"). CreateUser takes no password and needs an address.
- Grants: never to oneself; the platform admin grants only a customer's first USER_ADMIN (and creates its users
  only until then); EDIT_ALL_LOGIN_DATA and USER_ADMIN wait for a second user administrator (four eyes) where
  the customer has one, else take effect at once with the notices grants.py sends.
- The identity log: every change with the real actor, paged, verified; edits, deletions and rollbacks made
  through the database are detected.
- A mail server that does not take a code: CreateUser is UNAVAILABLE and the user does not exist.
- No one-time code reaches a log line (checked after every test)."""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import random

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as pb
from services.authz import identity_log
from services.authz.model import CODE_REFUSED, LOGIN_REFUSED
from services.authz.settings import AuthzSettings
from services.authz.tables import IdentityEventRow, IdentityHeadRow
from services.kit.db import sync_url
from services.kit.mailsink import Sink
from tests.harness import CODE, TEST_PASSWORD, code_in, email_of
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
SETTINGS = AuthzSettings()  # the code lifetimes the suite's authz runs with (no RS_AUTHZ_*_CODE_TTL_S set)
NEW_PASSWORD = "a brand new long password"
WRONG_CODE = "AAAAA-BBBBB-CCCCC-DDDDD"
REVEAL = "depot.logonData.reveal"
AUTHORIZATIONS = ["OPEN_REMOTE_CONNECTIONS", "MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS", "EDIT_MY_LOGIN_DATA",
                  "EDIT_ALL_LOGIN_DATA", "USER_ADMIN"]
# user IDs "S9..." and customer numbers of ten digits "8...": never those of the harness (S0..., nine digits)
_ids = itertools.count(random.randint(10**7, 8 * 10**7) * 10)


def new_id() -> str:
    return f"S9{next(_ids):09d}"


def new_number() -> str:
    return f"8{next(_ids):09d}"


def uid(name: str) -> str:
    return name.removeprefix("users/")


def authz(suite):
    return suite.stub("authz")


def inbox(suite, name: str) -> list:
    """The messages the sink received for the user `name` ("users/..." or a user ID), at its own address."""
    return suite.mail.messages(email_of(uid(name)))


def value(authorization: str) -> int:
    return pb.Authorization.Value(f"AUTHORIZATION_{authorization}")


async def check(suite, token: str, permission: str, customer: str, **resource) -> pb.CheckResponse:
    """authz's decision for `token`, asked as the depot asks it."""
    depot = (suite.var / "secrets" / "depot.token").read_text().strip()
    return await authz(suite).Check(pb.CheckRequest(subject_token=token, permission=permission, resource=(
        pb.ResourceAttributes(customer=f"customers/{customer}", **resource))), metadata=suite.md(depot))


async def reveal_allowed(suite, token: str, customer: str) -> bool:
    """Whether the token's user may reveal a logon-data entry of another user of `customer` (EDIT_ALL only)."""
    return (await check(suite, token, REVEAL, customer, owner="users/S0000000000")).allowed


async def set_password(suite, user_id: str, code: str, password: str = NEW_PASSWORD):
    return await authz(suite).SetPassword(pb.SetPasswordRequest(user_id=user_id, code=code, new_password=password))


async def refused_code(suite, user_id: str, code: str) -> None:
    err = await expect_error(set_password(suite, user_id, code), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert err.details() == CODE_REFUSED, err.details()


async def refused_login(suite, user_id: str, password: str) -> None:
    err = await expect_error(suite.login(user_id, password), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert err.details() == LOGIN_REFUSED, err.details()


async def get_user(suite, name: str) -> pb.User:
    return (await authz(suite).GetUser(pb.GetUserRequest(name=name), metadata=suite.md(suite.admin_token))).user


async def reset(suite, name: str, token: str) -> pb.ResetPasswordResponse:
    return await authz(suite).ResetPassword(pb.ResetPasswordRequest(name=name), metadata=suite.md(token))


def update(name: str, paths: list[str], **fields) -> pb.UpdateUserRequest:
    new_password = fields.pop("new_password", "")
    return pb.UpdateUserRequest(user=pb.User(name=name, **fields), update_mask=field_mask_pb2.FieldMask(paths=paths),
                                new_password=new_password)


def grant_request(user: str, authorization: str, installations=()) -> pb.GrantAuthorizationRequest:
    return pb.GrantAuthorizationRequest(user=user, authorization=value(authorization),
                                        installations=list(installations))


def approve_request(user: str, authorization: str) -> pb.ApproveAuthorizationRequest:
    return pb.ApproveAuthorizationRequest(user=user, authorization=value(authorization))


async def grants_of(suite, user: str) -> list[tuple[str, str]]:
    listed = await authz(suite).ListAuthorizations(pb.ListAuthorizationsRequest(user=user),
                                                   metadata=suite.md(suite.admin_token))
    return [(pb.Authorization.Name(g.authorization).removeprefix("AUTHORIZATION_"),
             pb.GrantState.Name(g.state).removeprefix("GRANT_STATE_")) for g in listed.grants]


async def events(suite, parent: str, token: str | None = None, page_size: int = 1000) -> list[pb.IdentityEvent]:
    """Every event of one identity log, page by page."""
    out, page_token = [], ""
    while True:
        page = await authz(suite).ListIdentityEvents(pb.ListIdentityEventsRequest(
            parent=parent, page_size=page_size, page_token=page_token), metadata=suite.md(token or suite.admin_token))
        out += page.events
        page_token = page.next_page_token
        if not page_token:
            return out


async def verify(suite, parent: str, kept: pb.IdentityLogHead | None = None,
                 token: str | None = None) -> pb.VerifyIdentityLogResponse:
    request = pb.VerifyIdentityLogRequest(parent=parent)
    if kept is not None:
        request.kept_head.CopyFrom(kept)
    return await authz(suite).VerifyIdentityLog(request, metadata=suite.md(token or suite.admin_token))


def story(log: list[pb.IdentityEvent]) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor, e.target) for e in log]


def mail_count(suite) -> int:
    return len(suite.mail.messages())


@pytest.fixture(autouse=True)
def no_code_in_the_logs(suite, caplog):
    """After each test: no one-time code the sink ever received is in a log record of this process (authz
    runs in it), with or without its dashes."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="services")  # the suite's own loggers, to their last line
    yield
    codes = {m.group(1) for message in suite.mail.messages() for m in CODE.finditer(message.get_content())}
    assert codes, "the sink received codes (every test's customer has enrolled users)"
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    leaked = [c for c in codes if c in logged or c.replace("-", "") in logged]
    assert not leaked, f"one-time codes in the logs: {leaked}"


# --- enrollment and one-time codes --------------------------------------------------------------------
async def test_a_new_user_has_no_password_until_it_sets_one_with_the_code_mailed_to_it(suite):
    customer = await suite.new_customer()
    admin, admin_token = suite.customer_admin(customer)
    user_id, before = new_id(), len(inbox(suite, admin))
    created = (await suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, admin_token)).user
    assert not created.password_set and created.email == email_of(user_id)
    assert not (await get_user(suite, created.name)).password_set
    await refused_login(suite, user_id, TEST_PASSWORD)  # no password at all yet
    await expect_error(suite.login(user_id, ""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT",
                       field="password")
    mails = inbox(suite, user_id)
    assert len(mails) == 1 and mails[0]["To"] == email_of(user_id) and f"users/{user_id}" in mails[0]["Subject"]
    assert len(inbox(suite, admin)) == before, "the creator is sent nothing"
    assert await set_password(suite, user_id, suite.code_for(user_id), TEST_PASSWORD) == pb.SetPasswordResponse()
    assert (await get_user(suite, created.name)).password_set
    response = await authz(suite).Login(pb.LoginRequest(user_id=user_id, password=TEST_PASSWORD))
    assert response.access_token and response.user.password_set


async def test_a_wrong_code_is_refused_as_an_unknown_user_is(suite):
    customer = await suite.new_customer()
    user, _ = await suite.new_user(customer)
    other_id = new_id()
    await suite.create_user(other_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, suite.customer_admin(customer)[1])
    await refused_code(suite, other_id, WRONG_CODE)
    await refused_code(suite, "S9999999990", WRONG_CODE)  # no such user: the same answer
    await refused_code(suite, "S9999999990", suite.code_for(other_id))
    await refused_code(suite, uid(user), suite.code_for(other_id))  # another user's code
    await refused_code(suite, other_id, suite.code_for(uid(user)))  # a code used already, of another user
    for request, field in [(pb.SetPasswordRequest(code=WRONG_CODE, new_password=NEW_PASSWORD), "user_id"),
                           (pb.SetPasswordRequest(user_id=other_id, new_password=NEW_PASSWORD), "code"),
                           (pb.SetPasswordRequest(user_id=other_id, code=WRONG_CODE, new_password="short"),
                            "new_password"),
                           (pb.SetPasswordRequest(user_id=other_id, code="A" * 65, new_password=NEW_PASSWORD),
                            "code")]:
        await expect_error(authz(suite).SetPassword(request), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT",
                           field=field)
    # two wrong tries counted against other_id's code: it still works (in any case, with or without its dashes)
    await set_password(suite, other_id, suite.code_for(other_id).lower().replace("-", ""))
    assert await suite.login(other_id, NEW_PASSWORD)


async def test_a_used_code_is_refused(suite):
    customer = await suite.new_customer()
    user_id = new_id()
    await suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, suite.customer_admin(customer)[1])
    code = suite.code_for(user_id)
    await set_password(suite, user_id, code, TEST_PASSWORD)
    await refused_code(suite, user_id, code)
    assert await suite.login(user_id, TEST_PASSWORD)
    await refused_login(suite, user_id, NEW_PASSWORD)  # the refused call set nothing


async def test_an_expired_code_is_refused(suite):
    customer = await suite.new_customer()
    admin, admin_token = suite.customer_admin(customer)
    user_id = new_id()
    start = suite.clock.now()
    await suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, admin_token)
    try:
        suite.clock.set(start + SETTINGS.enroll_code_ttl)  # the enrollment code's last instant is before this one
        await refused_code(suite, user_id, suite.code_for(user_id))
        admin_token = await suite.login(uid(admin))  # days later: a new session
        issued = suite.clock.now()
        response = await reset(suite, f"users/{user_id}", admin_token)  # a new code, for an hour
        expires = response.code_expire_time.ToDatetime(dt.timezone.utc)
        assert expires == issued + SETTINGS.reset_code_ttl
        suite.clock.set(expires)
        await refused_code(suite, user_id, suite.code_for(user_id))
        await reset(suite, f"users/{user_id}", admin_token)
        suite.clock.set(suite.clock.now() + SETTINGS.reset_code_ttl - dt.timedelta(seconds=1))
        await set_password(suite, user_id, suite.code_for(user_id))
        assert await suite.login(user_id, NEW_PASSWORD)
    finally:
        suite.clock.set(start)


async def test_five_wrong_tries_void_the_code(suite):
    customer = await suite.new_customer()
    admin, admin_token = suite.customer_admin(customer)
    almost, voided = new_id(), new_id()
    for user_id in (almost, voided):
        await suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, admin_token)
    for _ in range(4):
        await refused_code(suite, almost, WRONG_CODE)
    await set_password(suite, almost, suite.code_for(almost))  # the fifth try is the right code: it works
    for _ in range(5):
        await refused_code(suite, voided, WRONG_CODE)
    await refused_code(suite, voided, suite.code_for(voided))  # void: the right code no longer works
    assert not (await get_user(suite, f"users/{voided}")).password_set
    log = await events(suite, f"customers/{customer}", admin_token)
    assert [(e.action, e.detail) for e in log if e.target == f"users/{voided}"][-1] == (
        "CODE_VOIDED", "5 wrong tries by unauthenticated callers")
    await reset(suite, f"users/{voided}", admin_token)  # the user administrator mails it a new one
    await set_password(suite, voided, suite.code_for(voided))
    assert await suite.login(voided, NEW_PASSWORD)


async def test_a_new_code_replaces_the_old_one(suite):
    customer = await suite.new_customer()
    admin_token = suite.customer_admin(customer)[1]
    user_id = new_id()
    await suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, admin_token)
    enrollment = suite.code_for(user_id)
    await reset(suite, f"users/{user_id}", admin_token)
    replacement = suite.code_for(user_id)
    assert replacement != enrollment and len(inbox(suite, user_id)) == 2
    await refused_code(suite, user_id, enrollment)
    await set_password(suite, user_id, replacement)
    assert await suite.login(user_id, NEW_PASSWORD)


async def test_set_password_is_rate_limited_like_login(suite):
    """The user ID's bucket (RS_AUTHZ_USER_LOGIN_BURST, 20 by default) is shared with Login; beyond it the
    answer is RESOURCE_EXHAUSTED, the same whether or not the user exists, before anything is read."""
    user_id = "S9999999991"  # nobody
    for _ in range(SETTINGS.user_logins.burst):
        await refused_code(suite, user_id, WRONG_CODE)
    await expect_error(set_password(suite, user_id, WRONG_CODE), grpc.StatusCode.RESOURCE_EXHAUSTED,
                       "RESOURCE_EXHAUSTED")
    await expect_error(suite.login(user_id, TEST_PASSWORD), grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED")


# --- resets ---------------------------------------------------------------------------------------------
async def test_a_reset_ends_the_sessions_and_the_password_and_mails_the_code_to_the_user_only(suite):
    customer = await suite.new_customer()
    admin, admin_token = suite.customer_admin(customer)
    user, token = await suite.new_user(customer, ["EDIT_MY_LOGIN_DATA"])
    second_session = await suite.login(uid(user))
    assert (await check(suite, token, "authz.session", customer)).authenticated
    mails_before, admin_before = mail_count(suite), len(inbox(suite, admin))
    now = suite.clock.now()
    response = await reset(suite, user, admin_token)
    assert response.user.name == user and not response.user.password_set
    assert response.code_expire_time.ToDatetime(dt.timezone.utc) == now + SETTINGS.reset_code_ttl
    for session in (token, second_session):  # every session ended at once
        assert not (await check(suite, session, "authz.session", customer)).authenticated
        await expect_error(authz(suite).Logout(pb.LogoutRequest(), metadata=suite.md(session)),
                           grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    await refused_login(suite, uid(user), TEST_PASSWORD)  # the old password is gone
    assert mail_count(suite) == mails_before + 1 and len(inbox(suite, admin)) == admin_before
    mail = inbox(suite, user)[-1]
    code = suite.code_for(uid(user))
    assert mail["To"] == email_of(uid(user)) and "reset" in mail.get_content()
    assert code not in str(response) and code.replace("-", "") not in str(response), "the resetter learns no code"
    # the resetter has no way in: no password works, and no code it could know
    await refused_login(suite, uid(user), TEST_PASSWORD)
    await refused_code(suite, uid(user), WRONG_CODE)
    await set_password(suite, uid(user), code)
    new_token = await suite.login(uid(user), NEW_PASSWORD)
    assert (await check(suite, new_token, "depot.logonData.create", customer)).allowed  # its grants stayed
    log = story(await events(suite, f"customers/{customer}", admin_token))
    assert log[-2:] == [("PASSWORD_RESET", admin, user), ("PASSWORD_SET", user, user)]


async def test_who_may_reset_a_password(suite):
    customer, other = await suite.new_customer(), await suite.new_customer()
    member, member_token = await suite.new_user(customer)
    colleague, _ = await suite.new_user(customer)
    engineer, _ = await suite.new_engineer()
    admin_md = suite.md(suite.admin_token)
    for name, token in [(colleague, member_token), (colleague, suite.customer_admin(other)[1])]:
        await expect_error(reset(suite, name, token), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    await reset(suite, member, member_token)  # the user itself
    await set_password(suite, uid(member), suite.code_for(uid(member)))
    await reset(suite, colleague, suite.admin_token)  # the platform admin
    await reset(suite, engineer, suite.admin_token)  # engineers are the vendor's: its platform admin
    for name in ("users/admin", "users/svc-depot"):
        await expect_error(authz(suite).ResetPassword(pb.ResetPasswordRequest(name=name), metadata=admin_md),
                           grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION")
    await expect_error(authz(suite).ResetPassword(pb.ResetPasswordRequest(name="users/S9999999992"),
                                                  metadata=admin_md), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await expect_error(authz(suite).ResetPassword(pb.ResetPasswordRequest(name="people/x"), metadata=admin_md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="name")
    # a user whose address is gone (a row from before addresses were required): no code can be sent
    engine = sa.create_engine(sync_url(suite.db_url["authz"]))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE principals SET email = '', email_key = NULL WHERE user_id = :u"),
                         {"u": uid(colleague)})
        err = await expect_error(reset(suite, colleague, suite.customer_admin(customer)[1]),
                                 grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION")
        assert "no e-mail address" in err.details()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE principals SET email = :e, email_key = :e WHERE user_id = :u"),
                         {"u": uid(colleague), "e": email_of(uid(colleague))})
        engine.dispose()


# --- the user's own fields ------------------------------------------------------------------------------
async def test_only_the_user_changes_its_password_and_its_address(suite):
    customer = await suite.new_customer()
    admin, admin_token = suite.customer_admin(customer)
    user, token = await suite.new_user(customer)
    for md in (suite.md(admin_token), suite.md(suite.admin_token)):
        for request in (update(user, ["password"], new_password=NEW_PASSWORD),
                        update(user, ["email"], email="taken-over@attacker.example.com"),
                        update(user, ["display_name", "email"], display_name="Renamed",
                               email="taken-over@attacker.example.com")):
            await expect_error(authz(suite).UpdateUser(request, metadata=md), grpc.StatusCode.PERMISSION_DENIED,
                               "PERMISSION_DENIED")
    shown = await get_user(suite, user)
    assert shown.email == email_of(uid(user)) and shown.display_name != "Renamed"
    assert await suite.login(uid(user), TEST_PASSWORD)
    await authz(suite).UpdateUser(update(user, ["display_name"], display_name="Renamed"),
                                  metadata=suite.md(admin_token))  # the rest: as before
    # the user itself
    moved = f"moved-{uid(user).lower()}@elsewhere.example.com"
    assert (await authz(suite).UpdateUser(update(user, ["email"], email=moved), metadata=suite.md(token))).user.email \
        == moved
    await reset(suite, user, admin_token)
    assert suite.mail.messages(moved) and len(inbox(suite, user)) == 1, "the reset code went to the new address"
    await set_password(suite, uid(user), code_in(suite.mail.messages(moved)), TEST_PASSWORD)
    token = await suite.login(uid(user), TEST_PASSWORD)
    await authz(suite).UpdateUser(update(user, ["password"], new_password=NEW_PASSWORD), metadata=suite.md(token))
    assert await suite.login(uid(user), NEW_PASSWORD)
    await authz(suite).UpdateUser(update(admin, ["email"], email=f"admin-{customer}@users.example.com"),
                                  metadata=suite.md(admin_token))  # a user administrator: its own too
    log = story(await events(suite, f"customers/{customer}", admin_token))
    assert ("USER_UPDATED", user, user) in log and ("PASSWORD_CHANGED", user, user) in log
    assert ("USER_UPDATED", admin, admin) in log


async def test_an_address_is_one_users_own(suite):
    customer = await suite.new_customer()
    user, token = await suite.new_user(customer)
    other, _ = await suite.new_user(customer)
    theirs = uid(other).lower()
    for address in (f"{theirs}@users.example.com", f"{theirs.upper()}@USERS.example.COM",
                    f"{theirs}+work@users.example.com", f" {theirs}+x+y@Users.Example.Com "):
        await expect_error(authz(suite).UpdateUser(update(user, ["email"], email=address.strip()),
                                                   metadata=suite.md(token)),
                           grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    await expect_error(authz(suite).UpdateUser(update(user, ["email"], email="not an address"),
                                               metadata=suite.md(token)),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="user.email")
    await expect_error(authz(suite).UpdateUser(update(user, ["email"], email=""), metadata=suite.md(token)),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="user.email")
    own_tagged = f"{uid(user).lower()}+remote-support@users.example.com"  # its own address, tagged: still its own
    await authz(suite).UpdateUser(update(user, ["email"], email=own_tagged), metadata=suite.md(token))
    assert (await get_user(suite, user)).email == own_tagged


async def test_create_user_takes_no_password_and_needs_an_address_of_its_own(suite):
    customer = await suite.new_customer()
    admin_token = suite.customer_admin(customer)[1]
    existing, _ = await suite.new_user(customer)
    user_id = new_id()

    def request(**fields) -> pb.CreateUserRequest:
        initial_password = fields.pop("initial_password", "")
        user = dict(user_id=user_id, kind=pb.PRINCIPAL_KIND_CUSTOMER_USER, customer=f"customers/{customer}",
                    display_name="New", email=email_of(user_id))
        user.update(fields)
        return pb.CreateUserRequest(user=pb.User(**user), initial_password=initial_password)

    for md, wrong, field in [
            (suite.md(admin_token), request(email=""), "user.email"),
            (suite.md(admin_token), request(initial_password=TEST_PASSWORD), "initial_password"),
            (suite.md(suite.admin_token), request(user_id="sep-engineer", kind=pb.PRINCIPAL_KIND_SUPPORT_ENGINEER,
                                                  customer="", email=""), "user.email")]:
        await expect_error(authz(suite).CreateUser(wrong, metadata=md), grpc.StatusCode.INVALID_ARGUMENT,
                           "INVALID_ARGUMENT", field=field)
    for address in (email_of(uid(existing)).upper(), email_of(uid(existing)).replace("@", "+new@")):
        await expect_error(authz(suite).CreateUser(request(email=address), metadata=suite.md(admin_token)),
                           grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    await expect_error(get_user(suite, f"users/{user_id}"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    assert not inbox(suite, user_id)
    await authz(suite).CreateUser(request(), metadata=suite.md(admin_token))
    await expect_error(authz(suite).CreateUser(request(email=f"second-{user_id.lower()}@users.example.com"),
                                               metadata=suite.md(admin_token)),
                       grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")  # the same user ID


# --- grants ---------------------------------------------------------------------------------------------
async def test_nobody_grants_an_authorization_to_itself(suite):
    customer = await suite.new_customer()
    await suite.new_user(customer, ["USER_ADMIN"])  # a second user administrator: it could approve
    for admin, token in suite.admins[customer]:
        before = await grants_of(suite, admin)
        for name in AUTHORIZATIONS:
            for installations in ((), ("20012345",)):
                err = await expect_error(authz(suite).GrantAuthorization(grant_request(admin, name, installations),
                                                                         metadata=suite.md(token)),
                                         grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
                assert "to itself" in err.details()
        assert await grants_of(suite, admin) == before


async def test_the_platform_admin_makes_only_a_customers_first_user_admin(suite):
    pa, number = suite.md(suite.admin_token), new_number()
    await authz(suite).CreateCustomer(pb.CreateCustomerRequest(customer=pb.Customer(
        customer_number=number, display_name="Separated Corp")), metadata=pa)
    first, second, later = new_id(), new_id(), new_id()
    for user_id in (first, second):  # no user administrator yet: the platform admin creates users
        await suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, number, suite.admin_token)
    for name in AUTHORIZATIONS[:-1]:  # ... and grants nothing but USER_ADMIN
        await expect_error(authz(suite).GrantAuthorization(grant_request(f"users/{first}", name), metadata=pa),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    granted = (await authz(suite).GrantAuthorization(grant_request(f"users/{first}", "USER_ADMIN"), metadata=pa)).grant
    assert granted.state == pb.GRANT_STATE_ACTIVE and granted.granted_by == "users/admin"
    # the customer has a user administrator: from now on it grants and creates, not the platform admin
    for name in ("USER_ADMIN", "EDIT_ALL_LOGIN_DATA"):
        await expect_error(authz(suite).GrantAuthorization(grant_request(f"users/{second}", name), metadata=pa),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    err = await expect_error(suite.create_user(later, pb.PRINCIPAL_KIND_CUSTOMER_USER, number, suite.admin_token),
                             grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "first user administrator" in err.details()
    await expect_error(get_user(suite, f"users/{later}"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    assert await grants_of(suite, f"users/{second}") == []
    first_token = await suite.enroll(first)
    await suite.create_user(later, pb.PRINCIPAL_KIND_CUSTOMER_USER, number, first_token)
    await authz(suite).GrantAuthorization(grant_request(f"users/{second}", "USER_ADMIN"),
                                          metadata=suite.md(first_token))
    assert await grants_of(suite, f"users/{second}") == [("USER_ADMIN", "ACTIVE")]
    engineer = f"sep-eng-{next(_ids)}"  # the vendor's side stays the platform admin's
    await suite.create_user(engineer, pb.PRINCIPAL_KIND_SUPPORT_ENGINEER, "", suite.admin_token)
    await expect_error(suite.create_user(f"sep-eng-{next(_ids)}", pb.PRINCIPAL_KIND_SUPPORT_ENGINEER, "",
                                         first_token), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_four_eyes_a_grant_of_edit_all_waits_for_a_second_user_admin(suite):
    customer = await suite.new_customer()
    a, a_token = suite.customer_admin(customer)
    b, b_token = await suite.new_user(customer, ["USER_ADMIN"])
    u, u_token = await suite.new_user(customer)
    mails = {who: len(inbox(suite, who)) for who in (a, b, u)}
    requested = (await authz(suite).GrantAuthorization(grant_request(u, "EDIT_ALL_LOGIN_DATA"),
                                                       metadata=suite.md(a_token))).grant
    assert requested.state == pb.GRANT_STATE_PENDING_APPROVAL and requested.granted_by == a
    assert not requested.approved_by
    assert await grants_of(suite, u) == [("EDIT_ALL_LOGIN_DATA", "PENDING_APPROVAL")]
    denied = await check(suite, u_token, REVEAL, customer, owner="users/S0000000000")
    assert not denied.allowed and pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA in denied.required_authorizations
    # the other user administrator is asked, nobody else is mailed
    assert [len(inbox(suite, w)) - mails[w] for w in (a, b, u)] == [0, 1, 0]
    assert f"approve EDIT_ALL_LOGIN_DATA for {u}?" in inbox(suite, b)[-1]["Subject"]
    # who may not approve it
    for token, code, reason in [(a_token, grpc.StatusCode.PERMISSION_DENIED, "requester"),
                                (u_token, grpc.StatusCode.PERMISSION_DENIED, None),  # no USER_ADMIN at all
                                (suite.admin_token, grpc.StatusCode.PERMISSION_DENIED, "platform admin")]:
        err = await expect_error(authz(suite).ApproveAuthorization(approve_request(u, "EDIT_ALL_LOGIN_DATA"),
                                                                   metadata=suite.md(token)), code, code.name)
        assert reason is None or reason in err.details(), err.details()
    assert not await reveal_allowed(suite, u_token, customer)
    approved = (await authz(suite).ApproveAuthorization(approve_request(u, "EDIT_ALL_LOGIN_DATA"),
                                                        metadata=suite.md(b_token))).grant
    assert approved.state == pb.GRANT_STATE_ACTIVE and (approved.granted_by, approved.approved_by) == (a, b)
    assert await reveal_allowed(suite, u_token, customer)  # in effect at once
    assert await grants_of(suite, u) == [("EDIT_ALL_LOGIN_DATA", "ACTIVE")]
    assert [len(inbox(suite, w)) - mails[w] for w in (a, b, u)] == [1, 1, 0]  # the requester hears of it
    assert "was approved" in inbox(suite, a)[-1]["Subject"]
    # nothing (more) to approve
    for user, name in [(u, "EDIT_ALL_LOGIN_DATA"), (u, "USER_ADMIN")]:
        await expect_error(authz(suite).ApproveAuthorization(approve_request(user, name), metadata=suite.md(b_token)),
                           grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await expect_error(authz(suite).ApproveAuthorization(pb.ApproveAuthorizationRequest(user=u),
                                                         metadata=suite.md(b_token)),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="authorization")
    log = story(await events(suite, f"customers/{customer}", a_token))
    assert log[-2:] == [("GRANT_REQUESTED", a, u), ("GRANT_APPROVED", b, u)]


async def test_four_eyes_the_grantee_never_approves_its_own_grant(suite):
    """A user administrator asks for EDIT_ALL_LOGIN_DATA for another one: that one may not approve it, a third
    may. USER_ADMIN waits for four eyes as EDIT_ALL does."""
    customer = await suite.new_customer()
    a, a_token = suite.customer_admin(customer)
    b, b_token = await suite.new_user(customer, ["USER_ADMIN"])  # immediate: a is the only other
    c_user, _ = await suite.new_user(customer)
    pending = (await authz(suite).GrantAuthorization(grant_request(c_user, "USER_ADMIN"),
                                                     metadata=suite.md(a_token))).grant
    assert pending.state == pb.GRANT_STATE_PENDING_APPROVAL
    await authz(suite).ApproveAuthorization(approve_request(c_user, "USER_ADMIN"), metadata=suite.md(b_token))
    c, c_token = c_user, await suite.login(uid(c_user))
    request = (await authz(suite).GrantAuthorization(grant_request(b, "EDIT_ALL_LOGIN_DATA"),
                                                     metadata=suite.md(a_token))).grant
    assert request.state == pb.GRANT_STATE_PENDING_APPROVAL
    err = await expect_error(authz(suite).ApproveAuthorization(approve_request(b, "EDIT_ALL_LOGIN_DATA"),
                                                               metadata=suite.md(b_token)),
                             grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "grantee" in err.details()
    assert not await reveal_allowed(suite, b_token, customer)
    await authz(suite).ApproveAuthorization(approve_request(b, "EDIT_ALL_LOGIN_DATA"), metadata=suite.md(c_token))
    assert await reveal_allowed(suite, b_token, customer)


async def test_a_revoke_withdraws_a_pending_request(suite):
    customer = await suite.new_customer()
    a, a_token = suite.customer_admin(customer)
    _, b_token = await suite.new_user(customer, ["USER_ADMIN"])
    u, u_token = await suite.new_user(customer, ["EDIT_MY_LOGIN_DATA"])
    await authz(suite).GrantAuthorization(grant_request(u, "EDIT_ALL_LOGIN_DATA"), metadata=suite.md(a_token))
    assert await grants_of(suite, u) == [("EDIT_ALL_LOGIN_DATA", "PENDING_APPROVAL"), ("EDIT_MY_LOGIN_DATA", "ACTIVE")]
    revoke = pb.RevokeAuthorizationRequest(user=u, authorization=pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA)
    await authz(suite).RevokeAuthorization(revoke, metadata=suite.md(a_token))
    assert await grants_of(suite, u) == [("EDIT_MY_LOGIN_DATA", "ACTIVE")]
    await expect_error(authz(suite).ApproveAuthorization(approve_request(u, "EDIT_ALL_LOGIN_DATA"),
                                                         metadata=suite.md(b_token)),
                       grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await expect_error(authz(suite).RevokeAuthorization(revoke, metadata=suite.md(a_token)),
                       grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    assert not await reveal_allowed(suite, u_token, customer)
    assert story(await events(suite, f"customers/{customer}", a_token))[-1] == ("GRANT_WITHDRAWN", a, u)


async def test_without_a_second_user_admin_a_grant_takes_effect_at_once_with_the_notices_of_grants_py(suite):
    """grants.py mails an immediate EDIT_ALL_LOGIN_DATA or USER_ADMIN grant's notice to every enabled user
    administrator of the customer as it is after the grant (the granting one too: a receipt) and to the grantee,
    once each. Other authorizations: no notice."""
    customer = await suite.new_customer()
    a, a_token = suite.customer_admin(customer)
    u, u_token = await suite.new_user(customer)
    before = mail_count(suite)
    granted = (await authz(suite).GrantAuthorization(grant_request(u, "OPEN_REMOTE_CONNECTIONS"),
                                                     metadata=suite.md(a_token))).grant
    assert granted.state == pb.GRANT_STATE_ACTIVE and mail_count(suite) == before
    granted = (await authz(suite).GrantAuthorization(grant_request(u, "EDIT_ALL_LOGIN_DATA"),
                                                     metadata=suite.md(a_token))).grant
    assert granted.state == pb.GRANT_STATE_ACTIVE and not granted.approved_by
    assert await reveal_allowed(suite, u_token, customer)
    assert mail_count(suite) == before + 2, "the granting user administrator and the grantee"
    assert "EDIT_ALL_LOGIN_DATA for " + u in inbox(suite, u)[-1]["Subject"]
    assert "EDIT_ALL_LOGIN_DATA for " + u in inbox(suite, a)[-1]["Subject"]
    b, _ = await suite.new_user(customer)
    before = mail_count(suite)
    await authz(suite).GrantAuthorization(grant_request(b, "USER_ADMIN"), metadata=suite.md(a_token))
    assert mail_count(suite) == before + 2 and "USER_ADMIN for " + b in inbox(suite, b)[-1]["Subject"]
    await authz(suite).GrantAuthorization(grant_request(b, "EDIT_ALL_LOGIN_DATA"), metadata=suite.md(a_token))
    assert mail_count(suite) == before + 4, "both user administrators, the grantee being one of them"
    notice = inbox(suite, b)[-1]
    assert f"EDIT_ALL_LOGIN_DATA for {b} was granted" in notice["Subject"]
    assert "without a second user administrator's approval" in notice.get_content()
    assert await grants_of(suite, b) == [("EDIT_ALL_LOGIN_DATA", "ACTIVE"), ("USER_ADMIN", "ACTIVE")]
    log = await events(suite, f"customers/{customer}", a_token)
    assert [(e.action, e.actor, e.target, e.detail) for e in log[-2:]] == [
        ("GRANTED", a, b, "USER_ADMIN; no second user administrator to approve it"),
        ("GRANTED", a, b, "EDIT_ALL_LOGIN_DATA; no second user administrator to approve it")]


# --- the identity log -----------------------------------------------------------------------------------
async def test_the_identity_log_records_each_change_with_its_real_actor(suite):
    customer = await suite.new_customer()
    parent = f"customers/{customer}"
    a, a_token = suite.customer_admin(customer)
    v, _ = await suite.new_user(customer)
    md = suite.md(a_token)
    await reset(suite, v, a_token)
    await set_password(suite, uid(v), suite.code_for(uid(v)))
    await authz(suite).GrantAuthorization(grant_request(v, "CREATE_INCIDENTS"), metadata=md)
    await authz(suite).RevokeAuthorization(pb.RevokeAuthorizationRequest(
        user=v, authorization=pb.AUTHORIZATION_CREATE_INCIDENTS), metadata=md)
    await authz(suite).UpdateUser(update(v, ["disabled"], disabled=True), metadata=md)
    await authz(suite).UpdateUser(update(v, ["disabled"], disabled=False), metadata=md)
    await authz(suite).UpdateUser(update(v, ["display_name"], display_name="Renamed"), metadata=md)
    log = await events(suite, parent, a_token)
    assert story(log) == [
        ("USER_CREATED", "users/admin", a), ("GRANTED", "users/admin", a), ("PASSWORD_SET", a, a),
        ("USER_CREATED", a, v), ("PASSWORD_SET", v, v),
        ("PASSWORD_RESET", a, v), ("PASSWORD_SET", v, v),
        ("GRANTED", a, v), ("REVOKED", a, v), ("USER_DISABLED", a, v), ("USER_ENABLED", a, v),
        ("USER_UPDATED", a, v)]
    assert [e.sequence for e in log] == list(range(1, len(log) + 1))
    assert {e.customer for e in log} == {parent}
    assert log[0].previous_hash == identity_log.GENESIS
    assert all(e.previous_hash == p.hash for p, e in zip(log, log[1:]))
    assert [e.detail for e in log if e.action == "PASSWORD_SET"][-1] == "with a one-time code (after a reset)"
    # the vendor side's log: the customer's creation by the platform admin, engineers, service tokens
    engineer, _ = await suite.new_engineer()
    await authz(suite).CreateServiceToken(pb.CreateServiceTokenRequest(service_account="users/svc-depot"),
                                          metadata=suite.md(suite.admin_token))
    vendor = story(await events(suite, ""))
    assert ("CUSTOMER_CREATED", "users/admin", parent) in vendor
    assert vendor[-3:] == [("USER_CREATED", "users/admin", engineer), ("PASSWORD_SET", engineer, engineer),
                           ("SERVICE_TOKEN_CREATED", "users/admin", "users/svc-depot")]
    assert (await verify(suite, "")).valid


async def test_identity_events_page_and_verify(suite):
    customer, other = await suite.new_customer(), await suite.new_customer()
    parent = f"customers/{customer}"
    a, a_token = suite.customer_admin(customer)
    for _ in range(2):
        await suite.new_user(customer, ["CREATE_INCIDENTS"])
    everything = await events(suite, parent, a_token)
    assert len(everything) == 3 + 2 * 3
    assert await events(suite, parent, a_token, page_size=2) == everything
    assert await events(suite, parent, suite.admin_token, page_size=4) == everything  # the platform admin too
    first = await authz(suite).ListIdentityEvents(pb.ListIdentityEventsRequest(parent=parent, page_size=2),
                                                  metadata=suite.md(a_token))
    await expect_error(authz(suite).ListIdentityEvents(pb.ListIdentityEventsRequest(
        parent=f"customers/{other}", page_size=2, page_token=first.next_page_token),
        metadata=suite.md(suite.admin_token)), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_token")
    for size in (-1, 1001):
        await expect_error(authz(suite).ListIdentityEvents(pb.ListIdentityEventsRequest(
            parent=parent, page_size=size), metadata=suite.md(a_token)),
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_size")
    verdict = await verify(suite, parent, token=a_token)
    last = everything[-1]
    assert verdict.valid and verdict.events_checked == len(everything) and not verdict.first_broken_sequence
    assert (verdict.head.sequence, verdict.head.hash) == (last.sequence, last.hash)
    for kept in (verdict.head, pb.IdentityLogHead(sequence=3, hash=everything[2].hash)):
        assert (await verify(suite, parent, kept, a_token)).valid
    wrong = await verify(suite, parent, pb.IdentityLogHead(sequence=3, hash=everything[3].hash), a_token)
    assert not wrong.valid and wrong.first_broken_sequence == 3 and "rewritten" in wrong.problem
    beyond = await verify(suite, parent, pb.IdentityLogHead(sequence=last.sequence + 1, hash=last.hash), a_token)
    assert not beyond.valid and "rolled back or truncated" in beyond.problem
    for kept, field in [(pb.IdentityLogHead(sequence=0, hash=last.hash), "kept_head.sequence"),
                        (pb.IdentityLogHead(sequence=1, hash="ab"), "kept_head.hash"),
                        (pb.IdentityLogHead(sequence=1, hash=last.hash.upper()), "kept_head.hash")]:
        await expect_error(verify(suite, parent, kept, a_token), grpc.StatusCode.INVALID_ARGUMENT,
                           "INVALID_ARGUMENT", field=field)


async def test_an_identity_log_is_read_by_its_customers_user_admins_and_the_platform_admin_only(suite):
    customer, other = await suite.new_customer(), await suite.new_customer()
    _, a_token = suite.customer_admin(customer)
    _, member_token = await suite.new_user(customer, ["EDIT_ALL_LOGIN_DATA"])
    _, engineer_token = await suite.new_engineer()
    for parent, token in [(f"customers/{other}", a_token), (f"customers/{customer}", member_token),
                          (f"customers/{customer}", engineer_token), ("", engineer_token)]:
        for call in (events(suite, parent, token), verify(suite, parent, token=token)):
            await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    # the vendor side's log, parent "": the platform admin's only (a customer's user administrator is refused)
    for call in (events(suite, "", a_token), verify(suite, "", token=a_token)):
        await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    for call in (events(suite, "customer/1"), verify(suite, "customer/1")):
        await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="parent")


async def test_tampering_with_the_identity_log_in_the_database_is_detected(suite):
    """Edit an event's detail, delete an event: VerifyIdentityLog finds the first broken one. Roll the log back
    to an earlier state of itself (later events deleted, the head row put back to the earlier last event): the
    chain is whole again, so only the head the customer kept tells - VerifyIdentityLog with kept_head."""
    customer = await suite.new_customer()
    parent = f"customers/{customer}"
    _, a_token = suite.customer_admin(customer)
    for _ in range(2):
        await suite.new_user(customer, ["OPEN_REMOTE_CONNECTIONS"])
    log = await events(suite, parent, a_token)
    kept = (await verify(suite, parent, token=a_token)).head
    n = len(log)
    assert kept.sequence == n == 9
    engine = sa.create_engine(sync_url(suite.db_url["authz"]))
    key, table, heads = {"c": customer}, IdentityEventRow.__table__, IdentityHeadRow.__table__
    try:
        with engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(table).where(table.c.customer == customer)
                                                  .order_by(table.c.sequence)).mappings()]
            head = conn.execute(sa.select(heads.c.sequence, heads.c.hash).where(heads.c.customer == customer)).one()
        assert [r["sequence"] for r in rows] == list(range(1, n + 1)) and tuple(head) == (n, kept.hash)

        async def broken_at(sequence: int, what: str, kept_head=None) -> None:
            verdict = await verify(suite, parent, kept_head, a_token)
            assert not verdict.valid and verdict.first_broken_sequence == sequence, verdict
            assert what in verdict.problem, verdict.problem

        def restore() -> None:
            with engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM identity_events WHERE customer = :c"), key)
                conn.execute(table.insert(), rows)
                conn.execute(sa.text("UPDATE identity_log_heads SET sequence = :s, hash = :h WHERE customer = :c"),
                             dict(key, s=head[0], h=head[1]))

        # an edited detail
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE identity_events SET detail = 'nothing happened' WHERE customer = :c AND "
                                 "sequence = 5"), key)
        await broken_at(5, "was changed")
        restore()
        assert (await verify(suite, parent, kept, a_token)).valid
        # an edited actor: someone else's name on a change
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE identity_events SET actor = 'users/admin' WHERE customer = :c AND "
                                 "sequence = 4"), key)
        await broken_at(4, "was changed")
        restore()
        # a deleted event
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM identity_events WHERE customer = :c AND sequence = 6"), key)
        await broken_at(6, "event 6 is missing")
        restore()
        # the last event deleted: the head no longer matches
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM identity_events WHERE customer = :c AND sequence = :s"),
                         dict(key, s=n))
        await broken_at(n - 1, "head does not match")
        restore()
        # rolled back to its state after event 6, the head row put back to event 6
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM identity_events WHERE customer = :c AND sequence > 6"), key)
            conn.execute(sa.text("UPDATE identity_log_heads SET sequence = 6, hash = :h WHERE customer = :c"),
                         dict(key, h=rows[5]["hash"]))
        plain = await verify(suite, parent, token=a_token)
        assert plain.valid and plain.events_checked == 6 and plain.head.sequence == 6, "a whole, earlier log"
        await broken_at(n, "rolled back or truncated", kept)
        restore()
        # a rewritten chain: event 5 edited and every hash from it on recomputed, the head too
        with engine.begin() as conn:
            previous = rows[3]["hash"]
            for row in rows[4:]:
                detail = "nothing happened" if row["sequence"] == 5 else row["detail"]
                digest = identity_log.event_hash(previous, customer, row["sequence"], row["event_time"], row["actor"],
                                                 row["action"], row["target"], detail)
                conn.execute(sa.text("UPDATE identity_events SET detail = :d, previous_hash = :p, hash = :h "
                                     "WHERE customer = :c AND sequence = :s"),
                             dict(key, d=detail, p=previous, h=digest, s=row["sequence"]))
                previous = digest
            conn.execute(sa.text("UPDATE identity_log_heads SET hash = :h WHERE customer = :c"), dict(key, h=previous))
        await broken_at(n, "rewritten", kept)
        restore()
        final = await verify(suite, parent, kept, a_token)
        assert final.valid and final.events_checked == n
    finally:
        engine.dispose()


# --- a mail server that does not take the code ----------------------------------------------------------
async def test_without_a_mail_server_create_user_is_unavailable_and_the_user_is_not_created(suite, caplog):
    customer = await suite.new_customer()
    a, a_token = suite.customer_admin(customer)
    _, b_token = await suite.new_user(customer, ["USER_ADMIN"])
    v, _ = await suite.new_user(customer)
    u, u_token = await suite.new_user(customer)
    user_id, folder, port = new_id(), suite.mail.folder, suite.mail.port
    suite.mail.stop()
    try:
        err = await expect_error(suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, a_token),
                                 grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
        assert f"users/{user_id} was not created" in err.details()
        await expect_error(get_user(suite, f"users/{user_id}"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
        # a reset stands (sessions and password ended) and says the code was not mailed
        err = await expect_error(reset(suite, v, a_token), grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
        assert "call ResetPassword again" in err.details()
        assert not (await get_user(suite, v)).password_set
        await refused_login(suite, uid(v), TEST_PASSWORD)
        # a notice that cannot be mailed: the change stands, the failure is logged
        with caplog.at_level(logging.WARNING, logger="services.authz.grants"):
            pending = (await authz(suite).GrantAuthorization(grant_request(u, "EDIT_ALL_LOGIN_DATA"),
                                                             metadata=suite.md(a_token))).grant
        assert pending.state == pb.GRANT_STATE_PENDING_APPROVAL
        assert any("an identity notice was not mailed" in r.getMessage() for r in caplog.records)
    finally:
        suite.mail = Sink(folder, port=port).start()  # the sink back, where authz mails
    log = story(await events(suite, f"customers/{customer}", a_token))
    assert ("USER_CREATED", a, f"users/{user_id}") in log and log[log.index(
        ("USER_CREATED", a, f"users/{user_id}")) + 1] == ("USER_REMOVED", a, f"users/{user_id}")
    assert not inbox(suite, user_id)
    await suite.create_user(user_id, pb.PRINCIPAL_KIND_CUSTOMER_USER, customer, a_token)  # nothing was left behind
    assert await suite.enroll(user_id)
    await reset(suite, v, a_token)
    await set_password(suite, uid(v), suite.code_for(uid(v)))
    await authz(suite).ApproveAuthorization(approve_request(u, "EDIT_ALL_LOGIN_DATA"), metadata=suite.md(b_token))
    assert await reveal_allowed(suite, u_token, customer)
