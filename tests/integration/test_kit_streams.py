"""The kit's interceptor around bidirectional streams (the relay's): a stream with a `handler_decides` policy
needs a bearer token and may write only after the handler asked authz; a public stream needs no token; a
message that does not decode ends the stream INVALID_ARGUMENT; a domain error becomes the stream's status; and a
streaming method with a plain permission policy stops the table from being built. A tiny server from
services.kit.server.create_server with real grpc.aio calls; the authorizer is the recording fake of
test_kit_handler_decides (the kit, not authz, is under test)."""
from __future__ import annotations

import asyncio

import grpc
import pytest
import pytest_asyncio

from remotesupport.authz.v1 import authz_pb2 as pb
from services.kit import auth
from services.kit.auth import MethodPolicy, policy_table
from services.kit.config import ServiceConfig
from services.kit.errors import FailedPrecondition
from services.kit.server import ServerSpec, create_server
from tests.helpers import expect_error
from tests.integration.test_kit_handler_decides import GOOD, ITEMS, RecordingAuthorizer

SERVICE = "kittest.v1.StreamService"
Request, Response = pb.GetUserRequest, pb.GetUserResponse


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


def handlers(authorizer: RecordingAuthorizer) -> grpc.GenericRpcHandler:
    async def echo_after_asking(requests, context):
        await auth.current().decide_bulk(ITEMS)
        async for request in requests:
            await context.write(Response(user=pb.User(name=request.name, display_name=auth.current().subject.user)))

    async def writes_first(requests, context):
        await context.write(Response(user=pb.User(name="users/early")))

    async def public_echo(requests, context):
        async for request in requests:
            await context.write(Response(user=pb.User(name=request.name)))

    async def refuses(requests, context):
        async for _ in requests:
            raise FailedPrecondition("not now")

    behaviours = {"Asks": echo_after_asking, "WritesFirst": writes_first, "Public": public_echo,
                  "Refuses": refuses}
    return grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.stream_stream_rpc_method_handler(fn, request_deserializer=Request.FromString,
                                                    response_serializer=Response.SerializeToString)
        for name, fn in behaviours.items()})


POLICIES = {
    method("Asks"): MethodPolicy("test.session", handler_decides=True),
    method("WritesFirst"): MethodPolicy("test.session", handler_decides=True),
    method("Public"): auth.PUBLIC,
    method("Refuses"): auth.PUBLIC,
}


@pytest_asyncio.fixture
async def channel():
    authorizer = RecordingAuthorizer()
    spec = ServerSpec(register=lambda _server: None, service_names=[SERVICE], policies=POLICIES,
                      generic_handlers=[handlers(authorizer)])
    server, port, _health = await create_server(ServiceConfig(service="kittest", port=0), spec, authorizer)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


async def _send(call, message) -> None:
    """Write; a call the server has answered already raises its status from read(), not here."""
    try:
        await call.write(message)
    except (asyncio.InvalidStateError, grpc.RpcError):
        pass


def _stream(channel, name: str, token: str | None = GOOD, raw: bool = False):
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    serializer = (lambda b: b) if raw else Request.SerializeToString
    return channel.stream_stream(method(name), request_serializer=serializer,
                                 response_deserializer=Response.FromString)(metadata=metadata, timeout=5)


async def test_a_handler_decides_stream_answers_after_asking(channel):
    call = _stream(channel, "Asks")
    await _send(call, Request(name="users/x1"))
    answer = await call.read()
    assert answer.user.name == "users/x1" and answer.user.display_name == "users/S0000000001"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_a_handler_decides_stream_needs_a_token(channel):
    call = _stream(channel, "Asks", token=None)
    await _send(call, Request(name="users/x1"))
    await expect_error(call.read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    call = _stream(channel, "Asks", token="expired-token")
    await _send(call, Request(name="users/x1"))
    await expect_error(call.read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_a_response_written_before_asking_authz_is_refused(channel):
    call = _stream(channel, "WritesFirst")
    await expect_error(call.read(), grpc.StatusCode.INTERNAL, "INTERNAL")


async def test_public_streams_need_no_token_and_errors_become_the_status(channel):
    call = _stream(channel, "Public", token=None)
    await _send(call, Request(name="users/x2"))
    assert (await call.read()).user.name == "users/x2"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    call = _stream(channel, "Refuses", token=None)
    await _send(call, Request(name="users/x3"))
    await expect_error(call.read(), grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION", message="not now")


async def test_a_message_that_does_not_decode_ends_the_stream_invalid(channel):
    call = _stream(channel, "Public", token=None, raw=True)
    await _send(call, b"\xff\xff\xff")
    await expect_error(call.read(), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", message="does not decode")


def test_a_streaming_method_with_a_plain_permission_policy_is_refused():
    from remotesupport.connections.v1 import relay_pb2  # noqa: F401 - registers RelayService's descriptor

    with pytest.raises(ValueError, match="streaming method OpenTunnel"):
        policy_table("remotesupport.connections.v1.RelayService", {
            "AttachConnector": auth.PUBLIC, "AcceptTunnel": auth.PUBLIC,
            "OpenTunnel": MethodPolicy("connections.relay.tunnel", auth.no_resource)})
