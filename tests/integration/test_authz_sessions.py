"""authz: login, tokens, expiry, logout, disabled users, service tokens."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as pb
from tests.harness import TEST_PASSWORD
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)


def service_token(suite, service="depot") -> str:
    return (suite.var / "secrets" / f"{service}.token").read_text().strip()


async def whoami(suite, token):
    """Ask authz (as the depot service) whether `token` authenticates."""
    return await suite.stub("authz").Check(
        pb.CheckRequest(subject_token=token, permission="authz.session"), metadata=suite.md(service_token(suite)))


async def test_login_with_right_password_returns_a_working_token(suite):
    customer = await suite.new_customer()
    user, _ = await suite.new_user(customer)
    response = await suite.stub("authz").Login(pb.LoginRequest(user_id=user.split("/")[1], password=TEST_PASSWORD))
    assert response.access_token.startswith("rs_")
    assert response.user.name == user
    decision = await whoami(suite, response.access_token)
    assert decision.authenticated and decision.allowed and decision.subject.user == user


async def test_login_with_wrong_password_or_unknown_user_is_unauthenticated(suite):
    customer = await suite.new_customer()
    user, _ = await suite.new_user(customer)
    authz = suite.stub("authz")
    err = await expect_error(authz.Login(pb.LoginRequest(user_id=user.split("/")[1], password="wrong password!!")),
                             grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert "wrong password" not in err.details()
    await expect_error(authz.Login(pb.LoginRequest(user_id="S9999999999", password=TEST_PASSWORD)),
                       grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_login_requires_both_fields(suite):
    await expect_error(suite.stub("authz").Login(pb.LoginRequest(user_id="", password="")),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="user_id")


async def test_token_expires_at_its_expiry_instant(suite):
    customer = await suite.new_customer()
    user, _ = await suite.new_user(customer)
    response = await suite.stub("authz").Login(pb.LoginRequest(user_id=user.split("/")[1], password=TEST_PASSWORD))
    expiry = response.expire_time.ToDatetime().replace(tzinfo=suite.clock.now().tzinfo)
    start = suite.clock.now()
    try:
        suite.clock.set(expiry - suite.clock.now().resolution)
        assert (await whoami(suite, response.access_token)).authenticated
        suite.clock.set(expiry)
        decision = await whoami(suite, response.access_token)
        assert not decision.authenticated and not decision.allowed
        await expect_error(suite.stub("authz").Logout(pb.LogoutRequest(), metadata=suite.md(response.access_token)),
                           grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    finally:
        suite.clock.set(start)


async def test_logout_revokes_the_token_at_once(suite):
    customer = await suite.new_customer()
    _, token = await suite.new_user(customer)
    await suite.stub("authz").Logout(pb.LogoutRequest(), metadata=suite.md(token))
    assert not (await whoami(suite, token)).authenticated
    await expect_error(suite.stub("authz").Logout(pb.LogoutRequest(), metadata=suite.md(token)),
                       grpc.StatusCode.UNAUTHENTICATED)


async def test_disabled_user_tokens_stop_working_and_login_is_refused(suite):
    customer = await suite.new_customer()
    user, token = await suite.new_user(customer, ["EDIT_ALL_LOGIN_DATA"])
    assert (await whoami(suite, token)).authenticated
    await suite.stub("authz").UpdateUser(pb.UpdateUserRequest(
        user=pb.User(name=user, disabled=True), update_mask=field_mask_pb2.FieldMask(paths=["disabled"])),
        metadata=suite.md(suite.admin_token))
    assert not (await whoami(suite, token)).authenticated
    await expect_error(suite.stub("authz").Login(pb.LoginRequest(user_id=user.split("/")[1], password=TEST_PASSWORD)),
                       grpc.StatusCode.UNAUTHENTICATED)


async def test_missing_or_garbage_token_is_unauthenticated(suite):
    authz = suite.stub("authz")
    await expect_error(authz.Logout(pb.LogoutRequest()), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    await expect_error(authz.Logout(pb.LogoutRequest(), metadata=(("authorization", "Basic abc"),)),
                       grpc.StatusCode.UNAUTHENTICATED)
    await expect_error(authz.Logout(pb.LogoutRequest(), metadata=suite.md("rs_not-a-real-token")),
                       grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_password_change_ends_sessions_and_enforces_policy(suite):
    customer = await suite.new_customer()
    user, token = await suite.new_user(customer)
    authz = suite.stub("authz")
    mask = field_mask_pb2.FieldMask(paths=["password"])
    await expect_error(authz.UpdateUser(pb.UpdateUserRequest(user=pb.User(name=user), update_mask=mask,
                                                             new_password="short"), metadata=suite.md(token)),
                       grpc.StatusCode.INVALID_ARGUMENT, field="new_password")
    await authz.UpdateUser(pb.UpdateUserRequest(user=pb.User(name=user), update_mask=mask,
                                                new_password="a much longer new password"), metadata=suite.md(token))
    assert not (await whoami(suite, token)).authenticated
    assert await suite.login(user.split("/")[1], "a much longer new password")


async def test_user_cannot_disable_or_enable_itself(suite):
    customer = await suite.new_customer()
    user, token = await suite.new_user(customer)
    await expect_error(suite.stub("authz").UpdateUser(pb.UpdateUserRequest(
        user=pb.User(name=user, disabled=False), update_mask=field_mask_pb2.FieldMask(paths=["disabled"])),
        metadata=suite.md(token)), grpc.StatusCode.INVALID_ARGUMENT, field="update_mask")


async def test_service_token_created_by_admin_only(suite):
    authz = suite.stub("authz")
    response = await authz.CreateServiceToken(pb.CreateServiceTokenRequest(
        service_account="users/svc-depot", ttl=duration_pb2.Duration(seconds=3600)),
        metadata=suite.md(suite.admin_token))
    decision = await whoami(suite, response.access_token)
    assert decision.subject.kind == pb.PRINCIPAL_KIND_SERVICE_ACCOUNT
    customer = await suite.new_customer()
    _, token = await suite.new_user(customer, ["USER_ADMIN"])
    await expect_error(authz.CreateServiceToken(pb.CreateServiceTokenRequest(service_account="users/svc-depot"),
                                                metadata=suite.md(token)), grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(authz.CreateServiceToken(pb.CreateServiceTokenRequest(
        service_account="users/svc-depot", ttl=duration_pb2.Duration(seconds=400 * 86400)),
        metadata=suite.md(suite.admin_token)), grpc.StatusCode.INVALID_ARGUMENT, field="ttl")
    await expect_error(authz.CreateServiceToken(pb.CreateServiceTokenRequest(service_account="users/admin"),
                                                metadata=suite.md(suite.admin_token)), grpc.StatusCode.NOT_FOUND)


async def test_only_service_accounts_may_check(suite):
    customer = await suite.new_customer()
    _, token = await suite.new_user(customer, ["EDIT_ALL_LOGIN_DATA", "USER_ADMIN"])
    for caller in (token, suite.admin_token):
        await expect_error(suite.stub("authz").Check(pb.CheckRequest(subject_token=token, permission="authz.session"),
                                                     metadata=suite.md(caller)),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_check_validates_permission_and_bulk_size(suite):
    md = suite.md(service_token(suite))
    authz = suite.stub("authz")
    await expect_error(authz.Check(pb.CheckRequest(subject_token="x", permission=""), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, field="permission")
    items = [pb.CheckBulkItem(permission="authz.session")] * 1001
    await expect_error(authz.CheckBulk(pb.CheckBulkRequest(subject_token="x", items=items), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, field="items")


async def test_unknown_permission_and_unknown_token_are_denied(suite):
    customer = await suite.new_customer()
    _, token = await suite.new_user(customer, ["EDIT_ALL_LOGIN_DATA"])
    md = suite.md(service_token(suite))
    decision = await suite.stub("authz").Check(pb.CheckRequest(subject_token=token, permission="depot.everything"),
                                               metadata=md)
    assert decision.authenticated and not decision.allowed and "unknown permission" in decision.reason
    decision = await suite.stub("authz").Check(pb.CheckRequest(subject_token="rs_unknown", permission="authz.session"),
                                               metadata=md)
    assert not decision.authenticated and not decision.allowed
