"""authz: a customer always keeps one enabled user administrator (a customer user holding USER_ADMIN for the
whole customer). Disabling the last one, revoking its USER_ADMIN or narrowing it to installations is refused with
FAILED_PRECONDITION saying why - whoever asks, itself included - and two such changes at once never leave zero.
Every customer starts with its first user administrator (suite.customer_admin), made by the platform admin."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as pb
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
LAST = "last enabled user administrator"
ROUNDS = 8


def disable_request(user: str, disabled: bool = True) -> pb.UpdateUserRequest:
    return pb.UpdateUserRequest(user=pb.User(name=user, disabled=disabled),
                                update_mask=field_mask_pb2.FieldMask(paths=["disabled"]))


def revoke_request(user: str) -> pb.RevokeAuthorizationRequest:
    return pb.RevokeAuthorizationRequest(user=user, authorization=pb.AUTHORIZATION_USER_ADMIN)


async def refused_as_last(call, user: str, customer: str) -> None:
    err = await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION")
    assert f"{user} is the {LAST} of customers/{customer}" in err.details(), err.details()


async def enabled(suite, user: str) -> bool:
    got = await suite.stub("authz").GetUser(pb.GetUserRequest(name=user), metadata=suite.md(suite.admin_token))
    return not got.user.disabled


async def holds_user_admin(suite, user: str) -> bool:
    got = await suite.stub("authz").ListAuthorizations(pb.ListAuthorizationsRequest(user=user),
                                                      metadata=suite.md(suite.admin_token))
    return any(g.authorization == pb.AUTHORIZATION_USER_ADMIN and not g.installations for g in got.grants)


async def test_the_last_user_admin_cannot_disable_itself_nor_be_disabled(suite):
    authz, admin = suite.stub("authz"), suite.md(suite.admin_token)
    customer = await suite.new_customer()
    ua, ua_token = suite.customer_admin(customer)
    member, _ = await suite.new_user(customer, ["EDIT_ALL_LOGIN_DATA"])
    await refused_as_last(authz.UpdateUser(disable_request(ua), metadata=suite.md(ua_token)), ua, customer)
    await refused_as_last(authz.UpdateUser(disable_request(ua), metadata=admin), ua, customer)
    assert await enabled(suite, ua)
    await authz.UpdateUser(disable_request(member), metadata=suite.md(ua_token))  # anyone else: as before
    await authz.UpdateUser(disable_request(ua, disabled=False), metadata=suite.md(ua_token))  # enabling: no change


async def test_the_last_user_admin_keeps_its_user_admin_for_the_whole_customer(suite):
    authz, admin = suite.stub("authz"), suite.md(suite.admin_token)
    customer = await suite.new_customer()
    first, first_token = suite.customer_admin(customer)
    ua, ua_token = await suite.new_user(customer, ["USER_ADMIN", "EDIT_ALL_LOGIN_DATA"])
    ub, ub_token = await suite.new_user(customer)
    await authz.RevokeAuthorization(revoke_request(first), metadata=suite.md(ua_token))  # ua is the last one now
    await refused_as_last(authz.RevokeAuthorization(revoke_request(ua), metadata=suite.md(ua_token)), ua, customer)
    await refused_as_last(authz.RevokeAuthorization(revoke_request(ua), metadata=admin), ua, customer)
    narrowed = pb.GrantAuthorizationRequest(user=ua, authorization=pb.AUTHORIZATION_USER_ADMIN,
                                            installations=["20012345"])
    # narrowing it to installations: nobody who could is left - the platform admin grants nothing to a customer
    # that has a user administrator, and ua grants nothing to itself
    for md in (admin, suite.md(ua_token)):
        await expect_error(authz.GrantAuthorization(narrowed, metadata=md), grpc.StatusCode.PERMISSION_DENIED,
                           "PERMISSION_DENIED")
    assert await holds_user_admin(suite, ua)
    await authz.RevokeAuthorization(pb.RevokeAuthorizationRequest(  # any other authorization: as before
        user=ua, authorization=pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=suite.md(ua_token))
    await suite.grant(customer, ub, "USER_ADMIN", by=ua_token)  # ua alone: at once
    await authz.GrantAuthorization(pb.GrantAuthorizationRequest(  # granting it again, whole: as before
        user=ua, authorization=pb.AUTHORIZATION_USER_ADMIN), metadata=suite.md(ub_token))
    assert await holds_user_admin(suite, ua) and await holds_user_admin(suite, ub)
    assert not await holds_user_admin(suite, first)


async def test_with_another_enabled_user_admin_either_may_go(suite):
    authz, admin = suite.stub("authz"), suite.md(suite.admin_token)
    customer = await suite.new_customer()
    ua, ua_token = suite.customer_admin(customer)
    ub, _ = await suite.new_user(customer, ["USER_ADMIN"])
    await authz.UpdateUser(disable_request(ub), metadata=suite.md(ua_token))
    await refused_as_last(authz.RevokeAuthorization(revoke_request(ua), metadata=admin), ua, customer)  # ub is disabled
    await authz.UpdateUser(disable_request(ub, disabled=False), metadata=admin)
    await authz.RevokeAuthorization(revoke_request(ua), metadata=admin)
    await refused_as_last(authz.UpdateUser(disable_request(ub), metadata=admin), ub, customer)


async def test_user_admin_for_some_installations_or_of_another_customer_does_not_count(suite):
    authz, admin = suite.stub("authz"), suite.md(suite.admin_token)
    customer, other = await suite.new_customer(), await suite.new_customer()
    ua, _ = suite.customer_admin(customer)
    await suite.new_user(customer, ["USER_ADMIN"], installations=["20012345"])
    await suite.new_user(other, ["USER_ADMIN"])
    await refused_as_last(authz.UpdateUser(disable_request(ua), metadata=admin), ua, customer)


async def test_two_changes_at_once_never_leave_a_customer_without_a_user_admin(suite):
    """The platform admin disables two user administrators at once (both calls authorized, racing in the store),
    then two user administrators disable each other, then one is disabled while the other's USER_ADMIN is
    revoked: one change wins, the other is refused, every round."""
    authz, admin = suite.stub("authz"), suite.md(suite.admin_token)
    for round_ in range(ROUNDS):
        customer = await suite.new_customer()
        (ua, ua_token), (ub, ub_token) = suite.customer_admin(customer), await suite.new_user(customer, ["USER_ADMIN"])
        if round_ % 3 == 0:
            calls = [authz.UpdateUser(disable_request(ua), metadata=admin),
                     authz.UpdateUser(disable_request(ub), metadata=admin)]
        elif round_ % 3 == 1:
            calls = [authz.UpdateUser(disable_request(ub), metadata=suite.md(ua_token)),
                     authz.UpdateUser(disable_request(ua), metadata=suite.md(ub_token))]
        else:
            calls = [authz.UpdateUser(disable_request(ua), metadata=admin),
                     authz.RevokeAuthorization(revoke_request(ub), metadata=admin)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        codes = sorted("OK" if not isinstance(o, grpc.RpcError) else o.code().name for o in outcomes)
        # the loser is refused as the last one, or (disabled by the winner first) no longer authenticates
        assert codes in (["FAILED_PRECONDITION", "OK"], ["OK", "UNAUTHENTICATED"]), (round_, outcomes)
        left = [u for u in (ua, ub) if await enabled(suite, u) and await holds_user_admin(suite, u)]
        assert len(left) == 1, (round_, left)
