"""A request whose bytes are not the method's message - corrupt, or invalid UTF-8 in a string field - is
INVALID_ARGUMENT naming the method, on a real service built by the kit (never UNKNOWN with a Python class)."""
from __future__ import annotations

import grpc
import pytest

from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
LOGIN = "/remotesupport.authz.v1.AuthzService/Login"
GET_USER = "/remotesupport.authz.v1.AuthzService/GetUser"
INVALID_UTF8_IN_FIELD_1 = b"\x0a\x02\xff\xfe"  # field 1 (a string), length 2, bytes that are not UTF-8
TRUNCATED = b"\x0a\x10abc"  # field 1 says 16 bytes follow; 3 do
FIELD_ZERO = b"\x00\x01"  # a tag of field number 0, which no message has


def raw(channel: grpc.aio.Channel, method: str):
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


@pytest.mark.parametrize("body", [INVALID_UTF8_IN_FIELD_1, TRUNCATED, FIELD_ZERO])
async def test_an_undecodable_request_is_invalid_argument_naming_the_method(suite, body):
    async with grpc.aio.insecure_channel(suite.running["authz"].address) as channel:
        for method, metadata in ((LOGIN, ()), (GET_USER, suite.md(suite.admin_token))):
            err = await expect_error(raw(channel, method)(body, metadata=metadata, timeout=5),
                                     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "request")
            assert method in err.details() and "Error" not in err.details(), err.details()


async def test_a_good_request_still_decodes(suite):
    from remotesupport.authz.v1 import authz_pb2

    async with grpc.aio.insecure_channel(suite.running["authz"].address) as channel:
        answer = await raw(channel, GET_USER)(authz_pb2.GetUserRequest(name="users/admin").SerializeToString(),
                                              metadata=suite.md(suite.admin_token), timeout=5)
    assert authz_pb2.GetUserResponse.FromString(answer).user.name == "users/admin"
