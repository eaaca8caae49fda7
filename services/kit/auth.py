"""Authorization primitives shared by every service: resources, decisions, the per-call auth context,
method policies, and the authz client that fails closed."""
from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Protocol

import grpc
from google.protobuf import descriptor_pool

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from services.kit import coalesce, tracing
from services.kit.errors import AuthzUnavailable, PermissionDenied, Unauthenticated
from services.kit.principals import KIND_BY_NUMBER

AUTH_NAMES = {v.number: v.name.removeprefix("AUTHORIZATION_") for v in authz_pb2.Authorization.DESCRIPTOR.values}


@dataclass(frozen=True)
class Resource:
    """Attributes of the resource a permission is checked on (see authz ResourceAttributes)."""

    customer: str = ""
    installation: str = ""
    system: str = ""
    owner: str = ""
    incident: str = ""
    target_user: str = ""
    authorization: int = 0

    def to_proto(self) -> authz_pb2.ResourceAttributes:
        return authz_pb2.ResourceAttributes(
            customer=self.customer, installation=self.installation, system=self.system, owner=self.owner,
            incident=self.incident, target_user=self.target_user, authorization=self.authorization,
        )

    @classmethod
    def from_proto(cls, msg: authz_pb2.ResourceAttributes) -> "Resource":
        return cls(msg.customer, msg.installation, msg.system, msg.owner, msg.incident, msg.target_user,
                   msg.authorization)


@dataclass(frozen=True)
class Subject:
    user: str
    kind: str  # CUSTOMER_USER, SUPPORT_ENGINEER, SERVICE_ACCOUNT, PLATFORM_ADMIN
    customer: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    authenticated: bool
    reason: str
    decision_id: str = ""
    required: tuple[str, ...] = ()
    subject: Subject | None = None
    incidents: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, msg: authz_pb2.CheckResponse | authz_pb2.CheckResult) -> "Decision":
        """A Check answer, or one result of a CheckBulk answer (the same fields)."""
        subject = None
        if msg.authenticated and msg.HasField("subject"):
            subject = Subject(msg.subject.user, KIND_BY_NUMBER[msg.subject.kind], msg.subject.customer)
        return cls(msg.allowed, msg.authenticated, msg.reason, msg.decision_id,
                   tuple(AUTH_NAMES[a] for a in msg.required_authorizations), subject, tuple(msg.incidents))

    def raise_unless_allowed(self) -> None:
        if self.allowed and self.subject is None:  # a malformed answer: allowed, but for nobody
            raise AuthzUnavailable("authorization service answered without a subject; the call is refused")
        if not self.authenticated:
            raise Unauthenticated(self.reason or "the bearer token is not valid")
        if not self.allowed:
            raise PermissionDenied(self.reason or "permission denied", required=list(self.required))


class Authorizer(Protocol):
    async def check(self, token: str, permission: str, resource: Resource) -> Decision: ...

    async def check_bulk(self, token: str, items: list[tuple[str, Resource]]) -> list[Decision]: ...


@dataclass
class AuthContext:
    """Who is calling and what authz said; handlers read it and may ask further questions.

    For a method whose policy is `handler_decides`, `decision` is None until the handler's `decide_bulk`:
    until then there is no subject, and the kit refuses to send an answer the handler made without asking."""

    token: str
    decision: Decision | None
    authorizer: Authorizer
    verify: Callable[[Decision], None] | None = None  # e.g. the mutual-TLS peer check of a service account
    consulted: bool = False  # authz answered at least once for this call

    @property
    def subject(self) -> Subject:
        if self.decision is None:
            raise PermissionDenied("no authorization decision for this call")
        assert self.decision.subject is not None
        return self.decision.subject

    async def check(self, permission: str, resource: Resource) -> Decision:
        decision = await self.authorizer.check(self.token, permission, resource)
        self.consulted = True
        return decision

    async def require(self, permission: str, resource: Resource) -> Decision:
        decision = await self.check(permission, resource)
        decision.raise_unless_allowed()
        return decision

    def settle(self, decision: Decision) -> None:
        """For a `handler_decides` method whose handler obtained the caller's own decision from its authorizer
        directly (authz's Check reads the caller's and the subject's token in one statement): refuse unless it
        allows, then it is the call's decision."""
        self.consulted = True
        decision.raise_unless_allowed()
        if self.verify is not None:
            self.verify(decision)
        self.decision = decision

    async def decide_bulk(self, items: list[tuple[str, Resource]]) -> list[Decision]:
        """Ask authz about every item in one round trip. The first authenticated answer becomes the call's
        decision (its subject) if it had none; an unauthenticated caller raises UNAUTHENTICATED here."""
        if not items:  # nothing would reach authz, so nothing would have been decided
            raise ValueError("decide_bulk needs at least one (permission, resource)")
        decisions = await self.authorizer.check_bulk(self.token, items)
        self.consulted = True
        first = decisions[0] if decisions else None
        if first is not None and not first.authenticated:
            first.raise_unless_allowed()
        if self.decision is None and first is not None:
            if first.subject is None:
                raise AuthzUnavailable("authorization service answered without a subject; the call is refused")
            if self.verify is not None:
                self.verify(first)
            self.decision = first
        return decisions


auth_var: contextvars.ContextVar[AuthContext | None] = contextvars.ContextVar("auth", default=None)
token_var: contextvars.ContextVar[str] = contextvars.ContextVar("token", default="")
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def current() -> AuthContext:
    ctx = auth_var.get()
    if ctx is None:  # a handler reached without the authorization interceptor: refuse, never allow
        raise PermissionDenied("no authorization decision for this call")
    return ctx


def remaining(default: float) -> float:
    """Seconds left of the caller's deadline, capped by `default`."""
    deadline = deadline_var.get()
    if deadline is None:
        return default
    return max(0.0, min(default, deadline - time.monotonic()))


Resolver = Callable[[object], Awaitable[Resource]]


@dataclass(frozen=True)
class MethodPolicy:
    """How one RPC is authorized: the permission and how to read the resource's attributes from the
    request (which may look the resource up). `permission=None` means public (no token needed)."""

    permission: str | None
    resolve: Resolver | None = None
    forwarded: bool = False  # gateway pass-through: authorized by the service that serves it
    # The handler asks authz itself, once, with AuthContext.decide_bulk (e.g. the depot's reveal, which logs a
    # refusal before sending it): the kit requires the bearer token, does not ask authz first, and refuses to
    # send the handler's answer unless authz was consulted during the call.
    handler_decides: bool = False


def policy_table(service: str, table: Mapping[str, MethodPolicy]) -> dict[str, MethodPolicy]:
    """A service's policies.py table (method name -> policy) as the kit's interceptors want it (full method
    path -> policy). `service` is the full proto service name; every one of its methods must have exactly one
    policy, so a method added to the contract without a policy stops the server from starting."""
    descriptors = {m.name: m for m in descriptor_pool.Default().FindServiceByName(service).methods}
    methods = set(descriptors)
    if set(table) != methods:
        missing, unknown = sorted(methods - set(table)), sorted(set(table) - methods)
        raise ValueError(f"policies of {service}: missing {missing}, not in the contract {unknown}")
    for method, policy in table.items():
        streaming = descriptors[method].client_streaming or descriptors[method].server_streaming
        if streaming and policy.permission is not None and not policy.handler_decides:
            raise ValueError(f"policies of {service}: streaming method {method} needs a public or handler_decides "
                             "policy (its resource is in the stream, not in one request the kit could resolve)")
    return {f"/{service}/{method}": policy for method, policy in table.items()}


PUBLIC = MethodPolicy(None)
FORWARDED = MethodPolicy(None, forwarded=True)


async def no_resource(_request: object) -> Resource:
    return Resource()


DEFAULT_COALESCE_S = 0.0  # off by default: measured no CPU saving yet (bench/README.md); RS_AUTHZ_COALESCE_US
MAX_CHECKS = 1000  # checks in one CheckBulk (authz's limit)


class RemoteAuthorizer:
    """Asks the authz service. Every call has a deadline; any failure refuses (fails closed). The checks of calls
    that ask at the same moment travel together in one CheckBulk (services.kit.coalesce; `coalesce_s` is the
    longest a check waits for companions, 0 sends each call's checks on their own)."""

    def __init__(self, channel: grpc.aio.Channel, service_token: Callable[[], str], deadline_s: float,
                 coalesce_s: float = DEFAULT_COALESCE_S) -> None:
        self._stub = authz_pb2_grpc.AuthzServiceStub(channel)
        self._service_token = service_token
        self._deadline_s = deadline_s
        self._consultations = coalesce.Coalescer(self._send, coalesce_s, MAX_CHECKS)

    async def check(self, token: str, permission: str, resource: Resource) -> Decision:
        return (await self._consult(token, [(permission, resource)]))[0]

    async def check_bulk(self, token: str, items: list[tuple[str, Resource]]) -> list[Decision]:
        return await self._consult(token, items) if items else []

    async def _consult(self, token: str, items: list[tuple[str, Resource]]) -> list[Decision]:
        timeout = remaining(self._deadline_s) or 0.001
        if not tracing.ON:
            return (await self._consultations.ask(token, items, timeout))[0]
        with tracing.span("authz consultation", {"remotesupport.authz.checks": len(items),
                                                 "remotesupport.authz.permissions": ",".join(
                                                     sorted({p for p, _ in items}))}) as span:
            decisions, travelled = await self._consultations.ask(token, items, timeout)
            span.set_attribute("remotesupport.authz.travelled_with", travelled)  # checks in the one CheckBulk
            return decisions

    async def _send(self, asks: list[coalesce.Ask], timeout: float) -> list[list[Decision]]:
        """One request for `asks`: Check for a single check, CheckBulk for one call's, CheckBulk with each item's
        subject for several calls'."""
        metadata = (("authorization", f"Bearer {self._service_token()}"),)
        try:
            if len(asks) == 1 and len(asks[0].items) == 1:
                (permission, resource), = asks[0].items
                response = await self._stub.Check(authz_pb2.CheckRequest(
                    subject_token=asks[0].token, permission=permission, resource=resource.to_proto()),
                    timeout=timeout, metadata=metadata)
                return [[Decision.from_proto(response)]]
            if len(asks) == 1:
                request = authz_pb2.CheckBulkRequest(subject_token=asks[0].token, items=[
                    authz_pb2.CheckBulkItem(permission=p, resource=r.to_proto()) for p, r in asks[0].items])
            else:
                request = authz_pb2.CheckBulkRequest(items=[
                    authz_pb2.CheckBulkItem(permission=p, resource=r.to_proto(), subject_token=ask.token)
                    for ask in asks for p, r in ask.items])
            results = (await self._stub.CheckBulk(request, timeout=timeout, metadata=metadata)).results
            if len(results) != len(request.items):
                raise AuthzUnavailable("authorization service answered an incomplete bulk check; the call is "
                                       "refused")
            out, at = [], 0
            for ask in asks:
                out.append([Decision.from_proto(r) for r in results[at:at + len(ask.items)]])
                at += len(ask.items)
            return out
        except grpc.RpcError as err:
            raise AuthzUnavailable(f"authorization service did not answer ({_code(err)}); the call is refused") \
                from None
        except AuthzUnavailable:
            raise
        except Exception:  # noqa: BLE001 - an answer that is no decision (undecodable, unknown enum values)
            raise AuthzUnavailable(coalesce.UNREADABLE) from None


def _code(err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    return code.name if code is not None else "no status"
