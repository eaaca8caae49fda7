"""authz's List methods page through services.kit.paging (AIP-158): ListUsers and ListAuthorizations serve
every item once, in order (ListAuthorizations by authorization and state: a pending request beside the grant of
the same authorization), and a page token is valid only with the request it was issued for (its customer, its
user); a token replayed with other parameters, or forged, is INVALID_ARGUMENT on page_token."""
from __future__ import annotations

import base64
import json

import grpc
import pytest
import pytest_asyncio

from remotesupport.authz.v1 import authz_pb2 as pb
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
GRANTED = ["CREATE_INCIDENTS", "EDIT_MY_LOGIN_DATA", "MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    """Customer A with its first user administrator and three users, one of them holding four authorizations;
    customer B with its first user administrator and one more."""
    a, b = await suite.new_customer(), await suite.new_customer()
    holder, _ = await suite.new_user(a, GRANTED)
    a_users = [suite.customer_admin(a)[0], holder] + [(await suite.new_user(a))[0] for _ in range(2)]
    b_user, _ = await suite.new_user(b, ["USER_ADMIN"])
    return dict(a=f"customers/{a}", b=f"customers/{b}", holder=holder, a_users=a_users, b_user=b_user)


def _tampered(token: str, cursor: object) -> str:
    """`token` (as the service issued it) with its cursor replaced: what a caller could forge."""
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body["a"] = cursor
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


async def list_grants(suite, user: str, page_size: int = 0, page_token: str = ""):
    return await suite.stub("authz").ListAuthorizations(pb.ListAuthorizationsRequest(
        user=user, page_size=page_size, page_token=page_token), metadata=suite.md(suite.admin_token))


async def list_users(suite, customer: str, page_size: int = 0, page_token: str = ""):
    return await suite.stub("authz").ListUsers(pb.ListUsersRequest(
        customer=customer, page_size=page_size, page_token=page_token), metadata=suite.md(suite.admin_token))


async def test_list_authorizations_pages_in_order_and_every_grant_once(suite, world):
    first = await list_grants(suite, world["holder"], page_size=3)
    assert len(first.grants) == 3 and first.next_page_token
    second = await list_grants(suite, world["holder"], page_size=3, page_token=first.next_page_token)
    assert len(second.grants) == 1 and not second.next_page_token
    names = [pb.Authorization.Name(g.authorization).removeprefix("AUTHORIZATION_")
             for g in [*first.grants, *second.grants]]
    assert names == sorted(GRANTED)
    everything = await list_grants(suite, world["holder"])  # one page of at most 100
    assert len(everything.grants) == 4 and not everything.next_page_token
    exact = await list_grants(suite, world["holder"], page_size=4)
    assert len(exact.grants) == 4 and not exact.next_page_token, "no token for an empty page after the last"


async def test_a_list_authorizations_token_is_bound_to_its_user(suite, world):
    first = await list_grants(suite, world["holder"], page_size=2)
    await expect_error(list_grants(suite, world["b_user"], page_size=2, page_token=first.next_page_token),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_token")
    # the page size is not part of the request's scope: the next page may be of another size
    rest = await list_grants(suite, world["holder"], page_size=10, page_token=first.next_page_token)
    assert len(rest.grants) == 2 and not rest.next_page_token


async def test_a_list_users_token_is_bound_to_its_customer(suite, world):
    first = await list_users(suite, world["a"], page_size=2)
    assert first.next_page_token
    for other in (world["b"], ""):  # another customer, or all users (the platform admin may list them)
        await expect_error(list_users(suite, other, page_size=2, page_token=first.next_page_token),
                           grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_token")
    rest = await list_users(suite, world["a"], page_size=2, page_token=first.next_page_token)
    assert [u.name for u in [*first.users, *rest.users]] == sorted(world["a_users"]) and not rest.next_page_token


async def test_a_pending_request_pages_beside_the_grant_of_the_same_authorization(suite):
    """A user holding EDIT_ALL_LOGIN_DATA for the whole customer, and a pending request to narrow it (a second
    user administrator must approve): pages of one serve both, each once, ACTIVE before PENDING_APPROVAL."""
    customer = await suite.new_customer()
    user, _ = await suite.new_user(customer, ["CREATE_INCIDENTS", "EDIT_ALL_LOGIN_DATA", "MAINTAIN_SYSTEM_DATA"])
    await suite.new_user(customer, ["USER_ADMIN"])  # a second user administrator: four eyes from now on
    pending = (await suite.stub("authz").GrantAuthorization(pb.GrantAuthorizationRequest(
        user=user, authorization=pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA, installations=["20012345"]),
        metadata=suite.md(suite.customer_admin(customer)[1]))).grant
    assert pending.state == pb.GRANT_STATE_PENDING_APPROVAL
    served, token = [], ""
    while True:
        page = await list_grants(suite, user, page_size=1, page_token=token)
        served += [(pb.Authorization.Name(g.authorization), pb.GrantState.Name(g.state), list(g.installations))
                   for g in page.grants]
        token = page.next_page_token
        if not token:
            break
    assert served == [("AUTHORIZATION_CREATE_INCIDENTS", "GRANT_STATE_ACTIVE", []),
                      ("AUTHORIZATION_EDIT_ALL_LOGIN_DATA", "GRANT_STATE_ACTIVE", []),
                      ("AUTHORIZATION_EDIT_ALL_LOGIN_DATA", "GRANT_STATE_PENDING_APPROVAL", ["20012345"]),
                      ("AUTHORIZATION_MAINTAIN_SYSTEM_DATA", "GRANT_STATE_ACTIVE", [])]
    assert [(g.authorization, g.state) for g in (await list_grants(suite, user)).grants] == [
        (pb.AUTHORIZATION_CREATE_INCIDENTS, pb.GRANT_STATE_ACTIVE),
        (pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA, pb.GRANT_STATE_ACTIVE),
        (pb.AUTHORIZATION_EDIT_ALL_LOGIN_DATA, pb.GRANT_STATE_PENDING_APPROVAL),
        (pb.AUTHORIZATION_MAINTAIN_SYSTEM_DATA, pb.GRANT_STATE_ACTIVE)]


# ListUsers pages on the user ID (one string); ListAuthorizations on (authorization, state) (two strings)
@pytest.mark.parametrize("cursor", [[42], [None], [["S0000000001"]], ["S0000000001", "extra"], [], "S0000000001",
                                    ["x" * 2000]])
async def test_a_forged_list_users_cursor_is_invalid_argument(suite, world, cursor):
    users_token = (await list_users(suite, world["a"], page_size=1)).next_page_token
    await expect_error(list_users(suite, world["a"], page_size=1, page_token=_tampered(users_token, cursor)),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_token")


@pytest.mark.parametrize("cursor", [[42, "ACTIVE"], ["CREATE_INCIDENTS", 42], [None, "ACTIVE"],
                                    [["CREATE_INCIDENTS"], "ACTIVE"], ["CREATE_INCIDENTS"],
                                    ["CREATE_INCIDENTS", "ACTIVE", "extra"], [], "CREATE_INCIDENTS",
                                    ["x" * 2000, "ACTIVE"], ["CREATE_INCIDENTS", "\x00"]])
async def test_a_forged_list_authorizations_cursor_is_invalid_argument(suite, world, cursor):
    grants_token = (await list_grants(suite, world["holder"], page_size=1)).next_page_token
    await expect_error(list_grants(suite, world["holder"], page_size=1, page_token=_tampered(grants_token, cursor)),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_token")


@pytest.mark.parametrize("token", ["!!", "bm90IGpzb24", base64.urlsafe_b64encode(b'{"after": "S1"}').decode(),
                                   base64.urlsafe_b64encode(b"[1, 2]").decode(), "A" * 5000])
async def test_a_token_the_service_never_issued_is_invalid_argument(suite, world, token):
    await expect_error(list_users(suite, world["a"], page_token=token),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_token")
    await expect_error(list_grants(suite, world["holder"], page_token=token),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_token")


@pytest.mark.parametrize("size", [-1, 1001])
async def test_list_authorizations_page_size_is_bounded(suite, world, size):
    await expect_error(list_grants(suite, world["holder"], page_size=size),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="page_size")


async def test_list_authorizations_of_no_such_user_is_not_found(suite, world):
    await expect_error(list_grants(suite, "users/S0999999999"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
