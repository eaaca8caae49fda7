"""The kit's `handler_decides` policies: the interceptor only authenticates, the handler asks authz itself with
AuthContext.decide_bulk (one CheckBulk), and an answer made without asking is never sent (INTERNAL).
A tiny server built by services.kit.server.create_server, called with real grpc.aio calls; the authorizer is a
fake recording every question, since the kit (not authz) is the unit under test."""
from __future__ import annotations

import logging

import grpc
import pytest
import pytest_asyncio

from remotesupport.authz.v1 import authz_pb2 as pb
from services.kit import auth, interceptors
from services.kit.auth import Decision, MethodPolicy, Resource, Subject
from services.kit.config import ServiceConfig
from services.kit.errors import PermissionDenied, Unauthenticated
from services.kit.server import ServerSpec, create_server
from tests.helpers import expect_error

SERVICE = "kittest.v1.HandlerDecidesService"
Request, Response = pb.GetUserRequest, pb.GetUserResponse

GOOD = "good-token"
EXPIRED = "expired-token"
SERVICE_TOKEN = "service-token"
ALICE = Subject("users/S0000000001", "CUSTOMER_USER", "customers/1000")
DEPOT_ACCOUNT = Subject("users/svc-depot", "SERVICE_ACCOUNT")
TARGET = Resource(customer="customers/1000", system="customers/1000/systems/42")
ITEMS = [("test.things.read", TARGET), ("test.things.reveal", TARGET)]


class RecordingAuthorizer:
    """Answers from the token: GOOD is ALICE (allowed), SERVICE_TOKEN a service account, anything else is not
    authenticated. Every question (and every handler run, via `mark`) is appended to `log` in order."""

    def __init__(self) -> None:
        self.log: list[tuple] = []

    def _decide(self, token: str, permission: str) -> Decision:
        if token == GOOD:
            return Decision(True, True, "", f"d-{permission}", subject=ALICE, incidents=("incidents/7",))
        if token == SERVICE_TOKEN:
            return Decision(True, True, "", f"d-{permission}", subject=DEPOT_ACCOUNT)
        return Decision(False, False, "the token has expired")

    async def check(self, token: str, permission: str, resource: Resource) -> Decision:
        self.log.append(("check", token, permission, resource))
        return self._decide(token, permission)

    async def check_bulk(self, token: str, items: list[tuple[str, Resource]]) -> list[Decision]:
        self.log.append(("check_bulk", token, tuple(items)))
        return [self._decide(token, permission) for permission, _ in items]

    def mark(self, what: str) -> None:
        self.log.append((what,))

    def asked(self, kind: str) -> list[tuple]:
        return [entry for entry in self.log if entry[0] == kind]


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


def handlers(authorizer: RecordingAuthorizer) -> grpc.GenericRpcHandler:
    async def never_asks(request, context):
        authorizer.mark("handler")
        return Response(user=pb.User(name=request.name, display_name="answered without asking"))

    async def decides(request, context):
        authorizer.mark("handler")
        ctx = auth.current()
        assert ctx.decision is None and not ctx.consulted
        may_read, may_reveal = await ctx.decide_bulk(ITEMS)
        assert ctx.consulted and ctx.decision is may_read and may_reveal.allowed
        return Response(user=pb.User(name=request.name, display_name=ctx.subject.user))

    async def peeks_first(request, context):
        authorizer.mark("handler")
        subject = auth.current().subject  # no decision yet: refused
        return Response(user=pb.User(name=request.name, display_name=subject.user))

    async def normal(request, context):
        authorizer.mark("handler")
        ctx = auth.current()
        return Response(user=pb.User(name=request.name, display_name=ctx.subject.user))

    behaviours = {"NeverAsks": never_asks, "Decides": decides, "PeeksFirst": peeks_first, "Normal": normal}
    return grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=Request.FromString,
                                                  response_serializer=Response.SerializeToString)
        for name, fn in behaviours.items()})


async def resolve_target(_request) -> Resource:
    return TARGET


POLICIES = {
    method("NeverAsks"): MethodPolicy("test.session", handler_decides=True),
    method("Decides"): MethodPolicy("test.session", handler_decides=True),
    method("PeeksFirst"): MethodPolicy("test.session", handler_decides=True),
    method("Normal"): MethodPolicy("test.things.read", resolve_target),
}


class Probe:
    def __init__(self, server: grpc.aio.Server, port: int, authorizer: RecordingAuthorizer) -> None:
        self.server = server
        self.authorizer = authorizer
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    def call(self, name: str, token: str | None = GOOD, header: str | None = None):
        if header is None and token is not None:
            header = f"Bearer {token}"
        metadata = (("authorization", header),) if header is not None else ()
        stub = self.channel.unary_unary(method(name), request_serializer=Request.SerializeToString,
                                        response_deserializer=Response.FromString)
        return stub(Request(name="users/x1"), metadata=metadata, timeout=5)


async def start(server: grpc.aio.Server, port: int, authorizer: RecordingAuthorizer):
    await server.start()
    return Probe(server, port, authorizer)


@pytest_asyncio.fixture
async def probe():
    authorizer = RecordingAuthorizer()
    spec = ServerSpec(register=lambda _server: None, service_names=[SERVICE], policies=POLICIES,
                      generic_handlers=[handlers(authorizer)])
    server, port, _health = await create_server(ServiceConfig(service="kittest", port=0), spec, authorizer)
    running = await start(server, port, authorizer)
    try:
        yield running
    finally:
        await running.channel.close()
        await server.stop(0)


# --- (a) an answer made without asking authz is never sent ---------------------------------------------------
async def test_a_handler_decides_method_that_never_asks_answers_internal_and_authz_is_never_asked(probe):
    err = await expect_error(probe.call("NeverAsks"), grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "answered without asking" not in (err.details() or "")
    assert "request id" in err.details()
    assert probe.authorizer.log == [("handler",)]  # the handler ran; nobody asked authz, before or after


# --- (b) one CheckBulk, and the first decision is the call's -------------------------------------------------
async def test_a_handler_that_decides_in_bulk_answers_ok_after_exactly_one_check_bulk_and_no_check(probe):
    response = await probe.call("Decides")
    assert response.user.display_name == ALICE.user
    assert probe.authorizer.asked("check") == []
    assert probe.authorizer.asked("check_bulk") == [("check_bulk", GOOD, tuple(ITEMS))]
    assert probe.authorizer.log == [("handler",), ("check_bulk", GOOD, tuple(ITEMS))]  # asked by the handler


# --- (c) an unauthenticated decision -------------------------------------------------------------------------
async def test_a_decision_that_is_not_authenticated_answers_unauthenticated(probe):
    err = await expect_error(probe.call("Decides", token=EXPIRED), grpc.StatusCode.UNAUTHENTICATED,
                             "UNAUTHENTICATED")
    assert "the token has expired" in err.details()
    assert probe.authorizer.asked("check_bulk") == [("check_bulk", EXPIRED, tuple(ITEMS))]
    assert probe.authorizer.asked("check") == []


# --- (d) no well-formed bearer token: refused before anybody is asked ---------------------------------------
@pytest.mark.parametrize("header", [
    pytest.param(None, id="no-header"),
    pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
    pytest.param("Bearer", id="bearer-without-token"),
    pytest.param("Bearer    ", id="bearer-blank-token"),
    pytest.param(GOOD, id="token-without-scheme"),
    pytest.param("Bearer " + "x" * 600, id="token-too-long"),
])
@pytest.mark.parametrize("name", ["Decides", "NeverAsks"])
async def test_a_missing_or_malformed_bearer_header_is_unauthenticated_without_asking_authz(probe, name, header):
    call = probe.call(name, token=None) if header is None else probe.call(name, header=header)
    await expect_error(call, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", message="bearer token")
    assert probe.authorizer.log == []  # neither authz nor the handler was reached


# --- (e) no subject before the decision ----------------------------------------------------------------------
async def test_reading_the_subject_before_decide_bulk_is_permission_denied(probe):
    err = await expect_error(probe.call("PeeksFirst"), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "no authorization decision" in err.details()
    assert probe.authorizer.log == [("handler",)]


# --- (f) every other policy: the kit asks authz once, before the handler -------------------------------------
async def test_a_normal_policy_still_asks_check_exactly_once_before_the_handler(probe):
    response = await probe.call("Normal")
    assert response.user.display_name == ALICE.user
    assert probe.authorizer.log == [("check", GOOD, "test.things.read", TARGET), ("handler",)]
    assert probe.authorizer.asked("check_bulk") == []


async def test_a_normal_policy_refuses_an_unauthenticated_caller_before_the_handler(probe):
    await expect_error(probe.call("Normal", token=EXPIRED), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert probe.authorizer.log == [("check", EXPIRED, "test.things.read", TARGET)]  # the handler never ran


# --- the mutual-TLS peer check runs on the first decision ----------------------------------------------------
async def test_a_service_account_decision_without_its_client_certificate_is_refused_by_the_peer_check():
    """With peer_check on (as under mutual TLS), decide_bulk runs the peer check on the first decision: a
    service account's token over a connection without that service's certificate is refused."""
    authorizer = RecordingAuthorizer()
    server = grpc.aio.server(interceptors=interceptors.chain(POLICIES, authorizer, peer_check=True))
    server.add_generic_rpc_handlers((handlers(authorizer),))
    port = server.add_insecure_port("127.0.0.1:0")
    probe = await start(server, port, authorizer)
    try:
        await expect_error(probe.call("Decides", token=SERVICE_TOKEN), grpc.StatusCode.PERMISSION_DENIED,
                           "PEER_CERTIFICATE_MISMATCH")
        assert authorizer.asked("check_bulk") == [("check_bulk", SERVICE_TOKEN, tuple(ITEMS))]
        # a customer user needs no certificate: the same method answers
        assert (await probe.call("Decides", token=GOOD)).user.display_name == ALICE.user
    finally:
        await probe.channel.close()
        await server.stop(0)


# --- AuthContext.decide_bulk on its own ----------------------------------------------------------------------
async def test_decide_bulk_makes_the_first_decision_the_calls_and_keeps_an_existing_one():
    authorizer = RecordingAuthorizer()
    verified: list[Decision] = []
    ctx = auth.AuthContext(GOOD, None, authorizer, verify=verified.append)
    with pytest.raises(PermissionDenied):
        _ = ctx.subject
    first, second = await ctx.decide_bulk(ITEMS)
    assert ctx.consulted and ctx.decision is first and ctx.subject == ALICE
    assert verified == [first] and second.decision_id == "d-test.things.reveal"
    again, _ = await ctx.decide_bulk(ITEMS)  # a second round: the call's decision stays the first one
    assert ctx.decision is first and again is not first and verified == [first]
    assert len(authorizer.asked("check_bulk")) == 2


async def test_decide_bulk_raises_unauthenticated_and_leaves_no_decision():
    authorizer = RecordingAuthorizer()
    ctx = auth.AuthContext(EXPIRED, None, authorizer, verify=lambda d: pytest.fail("verified a refused token"))
    with pytest.raises(Unauthenticated):
        await ctx.decide_bulk(ITEMS)
    assert ctx.consulted and ctx.decision is None
    with pytest.raises(PermissionDenied):
        _ = ctx.subject


# --- the access log of a handler_decides call ----------------------------------------------------------------
# The access-log line is written while the call's decision may still be None; it must not change the status
# (it once did: an AttributeError in the behaviour's `finally` turned every such status into UNKNOWN).
@pytest.mark.parametrize("name, token, code", [
    pytest.param("Decides", GOOD, grpc.StatusCode.OK, id="decided"),
    pytest.param("NeverAsks", GOOD, grpc.StatusCode.INTERNAL, id="never-asked"),
    pytest.param("PeeksFirst", GOOD, grpc.StatusCode.PERMISSION_DENIED, id="peeked-first"),
    pytest.param("Decides", EXPIRED, grpc.StatusCode.UNAUTHENTICATED, id="unauthenticated"),
])
async def test_with_the_access_log_on_every_handler_decides_call_keeps_its_status(probe, caplog, name, token, code):
    """Services log at INFO (RS_LOG_LEVEL's default): the access-log line of a call whose decision is still None
    must not change the call's status."""
    caplog.set_level(logging.INFO, logger="rs.access")
    try:
        await probe.call(name, token=token)
        got = grpc.StatusCode.OK
    except grpc.RpcError as err:
        got = err.code()
    assert got == code
    assert [r for r in caplog.records if r.name == "rs.access"], "no access-log line was written"


async def test_an_empty_bulk_decision_is_refused_and_does_not_count_as_consulting_authz():
    authorizer = RecordingAuthorizer()
    ctx = auth.AuthContext(GOOD, None, authorizer)
    with pytest.raises(ValueError):
        await ctx.decide_bulk([])
    assert not ctx.consulted and ctx.decision is None
