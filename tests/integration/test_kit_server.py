"""The shared server kit: fail-closed authorization, authentication, validation, error mapping,
graceful shutdown, health and reflection — on a real grpc.aio server built by the kit."""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from remotesupport.authz.v1 import authz_pb2 as pb
from remotesupport.authz.v1 import authz_pb2_grpc
from services.kit import app as kit_app
from services.kit import auth, names
from services.kit.auth import MethodPolicy
from services.kit.clients import TokenFile
from services.kit.config import ServiceConfig
from services.kit.server import ServerSpec, create_server
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
SERVICE = "remotesupport.authz.v1.AuthzService"
PLANTED = "planted-internal-detail-7f3a"


class ProbeServicer(authz_pb2_grpc.AuthzServiceServicer):
    """A small service on the kit: reuses the authz contract's messages, not its logic."""

    async def GetUser(self, request, context):
        names.parse("user", request.name, "name")
        return pb.GetUserResponse(user=pb.User(name=request.name, display_name=auth.current().subject.user))

    async def Logout(self, request, context):
        await asyncio.sleep(0.6)
        return pb.LogoutResponse()

    async def ListUsers(self, request, context):
        raise RuntimeError(PLANTED)


@dataclass
class ProbeApp:
    spec: ServerSpec
    authorizer: auth.Authorizer | None = None

    async def start(self):
        return None

    async def stop(self):
        return None


POLICIES = {
    f"/{SERVICE}/GetUser": MethodPolicy("authz.session"),
    f"/{SERVICE}/Logout": auth.PUBLIC,
    f"/{SERVICE}/ListUsers": MethodPolicy("authz.session"),
}


async def start_probe(suite, authz_addr: str, deadline: float = 0.5) -> kit_app.Running:
    config = ServiceConfig(service="depot", port=0, database_url="", var_dir=suite.var, authz_addr=authz_addr,
                           authz_deadline_s=deadline, grace_s=2.0)
    spec = ServerSpec(register=lambda s: authz_pb2_grpc.add_AuthzServiceServicer_to_server(ProbeServicer(), s),
                      service_names=[SERVICE], policies=POLICIES)

    async def build(_deps):
        return ProbeApp(spec)

    deps = kit_app.Deps(config, suite.clock, TokenFile(suite.var / "secrets" / "depot.token"))
    return await kit_app.start(deps, build)


def stub(running):
    return authz_pb2_grpc.AuthzServiceStub(grpc.aio.insecure_channel(running.address))


async def user_token(suite):
    customer = await suite.new_customer()
    return await suite.new_user(customer)


async def test_allowed_call_carries_the_subject(suite):
    probe = await start_probe(suite, suite.addr["authz"])
    try:
        user, token = await user_token(suite)
        response = await stub(probe).GetUser(pb.GetUserRequest(name="users/x1"), metadata=suite.md(token))
        assert response.user.display_name == user
    finally:
        await probe.stop()


async def test_call_without_token_is_unauthenticated(suite):
    probe = await start_probe(suite, suite.addr["authz"])
    try:
        await expect_error(stub(probe).GetUser(pb.GetUserRequest(name="users/x1")),
                           grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
        await expect_error(stub(probe).GetUser(pb.GetUserRequest(name="users/x1"), metadata=suite.md("rs_bogus")),
                           grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    finally:
        await probe.stop()


async def test_malformed_request_names_the_field(suite):
    probe = await start_probe(suite, suite.addr["authz"])
    try:
        _, token = await user_token(suite)
        await expect_error(stub(probe).GetUser(pb.GetUserRequest(name="nope"), metadata=suite.md(token)),
                           grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="name")
    finally:
        await probe.stop()


async def test_unexpected_error_is_internal_without_its_text(suite):
    probe = await start_probe(suite, suite.addr["authz"])
    try:
        _, token = await user_token(suite)
        err = await expect_error(stub(probe).ListUsers(pb.ListUsersRequest(), metadata=suite.md(token)),
                                 grpc.StatusCode.INTERNAL, "INTERNAL")
        assert PLANTED not in err.details() and "request id" in err.details()
    finally:
        await probe.stop()


async def test_method_without_policy_is_refused(suite):
    probe = await start_probe(suite, suite.addr["authz"])
    try:
        _, token = await user_token(suite)
        await expect_error(stub(probe).CreateCustomer(pb.CreateCustomerRequest(), metadata=suite.md(token)),
                           grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    finally:
        await probe.stop()


async def test_unreachable_authz_refuses_every_call(suite):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    probe = await start_probe(suite, dead)
    try:
        _, token = await user_token(suite)
        for _ in range(5):
            await expect_error(stub(probe).GetUser(pb.GetUserRequest(name="users/x1"), metadata=suite.md(token)),
                               grpc.StatusCode.UNAVAILABLE, "AUTHZ_UNAVAILABLE")
    finally:
        await probe.stop()


async def test_authz_slower_than_the_deadline_refuses_and_recovery_is_automatic(suite):
    # A TCP listener that accepts and never answers: every Check runs into the deadline.
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    addr = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    probe = await start_probe(suite, addr, deadline=0.3)
    try:
        _, token = await user_token(suite)
        await expect_error(stub(probe).GetUser(pb.GetUserRequest(name="users/x1"), metadata=suite.md(token)),
                           grpc.StatusCode.UNAVAILABLE, "AUTHZ_UNAVAILABLE")
    finally:
        await probe.stop()
        silent.close()


async def test_shutdown_finishes_an_in_flight_call_and_refuses_new_ones(suite):
    probe = await start_probe(suite, suite.addr["authz"])
    client = stub(probe)
    in_flight = asyncio.ensure_future(client.Logout(pb.LogoutRequest()))
    await asyncio.sleep(0.2)
    stopping = asyncio.ensure_future(probe.server.stop(2.0))
    await asyncio.sleep(0.05)
    assert isinstance(await in_flight, pb.LogoutResponse)
    await stopping
    with pytest.raises(grpc.RpcError) as err:
        await client.Logout(pb.LogoutRequest(), timeout=1)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_and_reflection_need_no_token(suite):
    channel = grpc.aio.insecure_channel(suite.addr["authz"])
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    await channel.close()


async def test_request_id_is_returned_in_errors(suite):
    probe = await start_probe(suite, suite.addr["authz"])
    try:
        from tests.helpers import status_details
        err = await expect_error(stub(probe).GetUser(pb.GetUserRequest(name="users/x1"),
                                                     metadata=(("x-request-id", "trace-123"),)),
                                 grpc.StatusCode.UNAUTHENTICATED)
        assert status_details(err)[2]["request_id"] == "trace-123"
    finally:
        await probe.stop()


async def test_a_streaming_method_outside_the_framework_services_is_refused_unserved():
    """The stages authorize unary calls, and the streams a policy table names with a stream policy (public or
    handler_decides: the relay's, the event feeds); so a client-streaming method is never served, nor a server
    stream whose policy is a plain permission the stages cannot check per response (health's Watch and
    reflection, public and streaming, still are)."""
    served = []

    class AllowAll:  # a kit unit under test: an authorizer that would allow anything
        async def check(self, token, permission, resource):
            return auth.Decision(True, True, "", "d", (), auth.Subject("users/x", "PLATFORM_ADMIN"))

        async def check_bulk(self, token, items):
            return [await self.check(token, p, r) for p, r in items]

    async def stream(request, context):
        served.append(request)
        yield pb.LogoutResponse()

    async def upload(requests, context):
        async for request in requests:
            served.append(request)
        return pb.LogoutResponse()

    name = "test.v1.Streams"
    handler = grpc.method_handlers_generic_handler(name, {
        "Stream": grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=pb.LogoutRequest.FromString,
            response_serializer=pb.LogoutResponse.SerializeToString),
        "Upload": grpc.stream_unary_rpc_method_handler(
            upload, request_deserializer=pb.LogoutRequest.FromString,
            response_serializer=pb.LogoutResponse.SerializeToString)})
    spec = ServerSpec(register=lambda _s: None, service_names=[name],
                      policies={f"/{name}/Stream": MethodPolicy("authz.session"),
                                f"/{name}/Upload": MethodPolicy("authz.session")}, generic_handlers=[handler])
    server, port, health = await create_server(ServiceConfig(service="probe", port=0), spec, AllowAll())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream(f"/{name}/Stream", request_serializer=pb.LogoutRequest.SerializeToString,
                                        response_deserializer=pb.LogoutResponse.FromString)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in call(pb.LogoutRequest(), metadata=(("authorization", "Bearer t"),)):
                    pass
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED and served == []
            assert "no usable authorization policy" in refused.value.details()
            upload_call = channel.stream_unary(f"/{name}/Upload",
                                               request_serializer=pb.LogoutRequest.SerializeToString,
                                               response_deserializer=pb.LogoutResponse.FromString)
            with pytest.raises(grpc.aio.AioRpcError) as unserved:
                await upload_call(iter([pb.LogoutRequest()]), metadata=(("authorization", "Bearer t"),))
            assert unserved.value.code() == grpc.StatusCode.UNIMPLEMENTED and served == []
            await health.set("", health_pb2.HealthCheckResponse.SERVING)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING  # a framework stream is still served
            watch.cancel()
    finally:
        await server.stop(0)
