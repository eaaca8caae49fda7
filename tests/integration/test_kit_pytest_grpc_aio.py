"""The kit's interceptor chain on a server hosted by pytest-grpc-aio's fixtures (see README, "Tests":
pytest-grpc-aio hosts grpc.aio servers; we override its grpc_addr, which leaks its probe socket)."""
from __future__ import annotations

import socket

import grpc
import pytest

from remotesupport.authz.v1 import authz_pb2 as pb
from remotesupport.authz.v1 import authz_pb2_grpc
from services.kit import auth, interceptors
from services.kit.clients import TokenFile, channel
from tests.helpers import expect_error
from tests.integration.test_kit_server import POLICIES, ProbeServicer

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)


@pytest.fixture
def grpc_addr():
    """A free port, with the probe socket closed (the plugin's own fixture leaves it open)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def grpc_add_to_server():
    return authz_pb2_grpc.add_AuthzServiceServicer_to_server


@pytest.fixture
def grpc_servicer():
    return ProbeServicer()


@pytest.fixture
def grpc_stub_cls():
    return authz_pb2_grpc.AuthzServiceStub


@pytest.fixture
def authz_addr(suite):
    return suite.addr["authz"]


@pytest.fixture
def grpc_interceptors(suite, authz_addr):
    authorizer = auth.RemoteAuthorizer(channel(authz_addr), TokenFile(suite.var / "secrets" / "depot.token"), 0.5)
    return interceptors.chain(POLICIES, authorizer)


async def test_chain_authenticates_and_authorizes(suite, grpc_aio_stub):
    customer = await suite.new_customer()
    user, token = await suite.new_user(customer)
    async with grpc_aio_stub() as stub:
        response = await stub.GetUser(pb.GetUserRequest(name="users/x1"), metadata=suite.md(token))
        assert response.user.display_name == user
        await expect_error(stub.GetUser(pb.GetUserRequest(name="users/x1")), grpc.StatusCode.UNAUTHENTICATED)
        await expect_error(stub.GetUser(pb.GetUserRequest(name="x"), metadata=suite.md(token)),
                           grpc.StatusCode.INVALID_ARGUMENT, field="name")


@pytest.mark.parametrize("authz_addr", ["127.0.0.1:1"])
async def test_chain_fails_closed_without_authz(suite, grpc_aio_stub, authz_addr):
    customer = await suite.new_customer()
    _, token = await suite.new_user(customer)
    async with grpc_aio_stub() as stub:
        await expect_error(stub.GetUser(pb.GetUserRequest(name="users/x1"), metadata=suite.md(token)),
                           grpc.StatusCode.UNAVAILABLE, "AUTHZ_UNAVAILABLE")
