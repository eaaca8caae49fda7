"""The interceptor chain, in its one named order:
request id -> logging -> metrics -> authentication -> authorization -> error mapping.

The six stages are plain functions run in that order inside ONE wrapped behaviour per method (one
`grpc.aio.ServerInterceptor`), and the wrapped method handler is built once per method path and cached:
grpc.aio then awaits one interceptor per call instead of six, and no handler or closure is built per call.
A refused or failed call's status (a DomainError, mapped to google.rpc.Status) is sent after the call has been
counted and its access-log line written, so the line never trails the caller's answer."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from services.kit import auth, logs, metrics, tls, tracing
from services.kit.errors import AuthzUnavailable, DomainError, Internal, InvalidArgument, Unauthenticated, \
    to_grpc_status
from services.kit.logs import request_id_var

logger = logging.getLogger("rs.access")

Behavior = Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]
_RID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch: a whole string
# Framework services every client may call without a token (health checks, grpc's reflection).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_NO_RESOURCE = auth.Resource()
_perf_counter = time.perf_counter
_monotonic = time.monotonic


async def abort(context: grpc.aio.ServicerContext, error: DomainError) -> None:
    """End the call with the error's status; the request id travels in ErrorInfo metadata."""
    rid = request_id_var.get()
    if rid:
        error.metadata.setdefault("request_id", rid)
    tracing.note_error(error.reason)
    await context.abort_with_status(to_grpc_status(error))


# --- the stages, in order -------------------------------------------------------------------------------
def request_id(metadata) -> str:
    """Stage 1: the call's request id into its context variable: with tracing on, the call's trace id (so a log
    line leads to its trace); otherwise the caller's x-request-id, else the trace id of its `traceparent`, else a
    new one of the same shape. Returns the authorization header as sent (the first one; "" when absent) for
    stage 4."""
    rid = header = parent = None
    for key, value in metadata or ():
        if key == "x-request-id":
            if rid is None:
                rid = value
        elif key == "authorization":
            if header is None:
                header = value
        elif key == "traceparent" and parent is None:
            parent = value
    if tracing.ON:
        rid = tracing.current_trace_id()
    elif rid.__class__ is not str or not _RID.fullmatch(rid):
        rid = tracing.trace_id_of(parent) if parent.__class__ is str else ""
    request_id_var.set(rid or os.urandom(16).hex())
    return header if header is not None else ""


def access_log(method: str, code: str, seconds: float) -> None:
    """Stage 2: one access-log line per call: method, code, duration, subject. Never the request or a token."""
    if logger.isEnabledFor(logging.INFO):
        ctx = auth.auth_var.get()
        decision = ctx.decision if ctx is not None else None  # None until a handler_decides handler asked
        subject = decision.subject.user if decision is not None and decision.subject is not None else ""
        logs.log_fields(logger, logging.INFO, "rpc", {
            "method": method, "code": code, "duration_ms": round(seconds * 1000, 2), "subject": subject})


class _MethodMetrics:
    """Stage 3: the Prometheus children of one method, looked up once (labels() per call is a locked dict
    lookup of a freshly built key)."""

    __slots__ = ("method", "seconds", "codes")

    def __init__(self, method: str) -> None:
        self.method = method
        self.seconds = metrics.REQUEST_SECONDS.labels(method=method)
        self.codes: dict[str, object] = {}

    def observe(self, code: str, seconds: float) -> None:
        counter = self.codes.get(code)
        if counter is None:
            counter = self.codes[code] = metrics.REQUESTS.labels(method=self.method, code=code)
        counter.inc()
        self.seconds.observe(seconds)


_DECISIONS = {allowed: metrics.AUTHZ_DECISIONS.labels(allowed=label)
              for allowed, label in ((True, "true"), (False, "false"), (None, "unavailable"))}


def authz_decision(allowed: bool | None) -> None:
    _DECISIONS[allowed].inc()


def authenticate(header) -> str:
    """Stage 4: a well-formed bearer token is required on every non-public method."""
    scheme, _, token = header.partition(" ") if isinstance(header, str) else ("", "", "")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 512:
        raise Unauthenticated("missing or malformed bearer token: send metadata 'authorization: Bearer <token>'")
    token = token.strip()
    auth.token_var.set(token)
    return token


async def authorize(policy: auth.MethodPolicy | None, method: str, request, token: str,
                    authorizer: auth.Authorizer, context, peer_check: bool) -> None:
    """Stage 5: asks the authorizer (authz) about every non-public call; methods without a policy are
    refused. The decision becomes the call's auth context. A `handler_decides` policy leaves the asking to
    the handler (AuthContext.decide_bulk); `guarded` then refuses an answer made without it."""
    if policy is None:
        raise auth.PermissionDenied(f"method {method} has no authorization policy; refused")
    if policy.handler_decides:
        verify = (lambda decision: _peer(context, decision)) if peer_check else None
        auth.auth_var.set(auth.AuthContext(token, None, authorizer, verify))
        return
    resolve = policy.resolve
    resource = await resolve(request) if resolve is not None else _NO_RESOURCE
    decision = await decide(authorizer, token, policy.permission, resource, context, peer_check)
    auth.auth_var.set(auth.AuthContext(token, decision, authorizer, consulted=True))


def _peer(context, decision: auth.Decision) -> None:
    if decision.subject is not None:
        tls.require_service_peer(context, decision.subject.user, decision.subject.kind)


async def decide(authorizer: auth.Authorizer, token: str, permission: str, resource: auth.Resource, context,
                 peer_check: bool) -> auth.Decision:
    """The authorizer's decision, counted; anything but an allowed decision raises (fails closed)."""
    try:
        decision = await authorizer.check(token, permission, resource)
    except AuthzUnavailable:
        authz_decision(None)
        raise
    try:
        decision.raise_unless_allowed()
        if peer_check:
            _peer(context, decision)
    except DomainError:
        authz_decision(False)
        raise
    authz_decision(True)
    return decision


async def map_errors(method: str, inner: Behavior, request, context):
    """Stage 6: domain errors pass on to become the call's google.rpc.Status; anything unexpected becomes
    INTERNAL without its text."""
    try:
        return await inner(request, context)
    except (DomainError, grpc.aio.AbortError):
        raise
    except Exception as exc:  # noqa: BLE001 - the one place unexpected faults are turned into a status
        logger.error("unhandled error in %s", method, exc_info=exc)
        raise Internal(f"internal error; quote request id {request_id_var.get()}") from None


def _status_name(error: DomainError) -> str:
    return getattr(error.code, "name", str(error.code))


# --- requests that do not decode -----------------------------------------------------------------------
class Undecodable:
    """What a request whose bytes are not the method's message (corrupt, or invalid UTF-8 in a string field)
    becomes: the handler never sees it; the call is answered INVALID_ARGUMENT naming the method."""

    __slots__ = ()


UNDECODABLE = Undecodable()


def tolerant(deserializer: Callable[[bytes], object] | None) -> Callable[[bytes], object] | None:
    """`deserializer`, with a request that fails to decode turned into UNDECODABLE instead of an exception
    (which grpc would answer with UNKNOWN and the exception's class in the message)."""
    if deserializer is None:
        return None

    def decode(data: bytes) -> object:
        try:
            return deserializer(data)
        except (DecodeError, ValueError):
            return UNDECODABLE

    return decode


# --- the one interceptor --------------------------------------------------------------------------------
class KitInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of unary-unary methods, and of the streams (bidirectional, or one request and a
    stream of responses) a service's policies name, with the six stages; framework methods and the gateway's
    forwarded paths pass untouched, and any other streaming method is refused (UNIMPLEMENTED). With
    `peer_check` (mutual TLS on), a service account's call must also come over a connection whose client
    certificate names that service."""

    def __init__(self, policies: dict[str, auth.MethodPolicy], authorizer: auth.Authorizer,
                 peer_check: bool = False) -> None:
        self.policies = policies
        self.authorizer = authorizer
        self.peer_check = peer_check
        # method path -> (the handler found for it, the wrapped handler); only paths that have a handler
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        # Streaming is served for the framework's public services (health watch, reflection), the gateway's
        # forwarded paths (their owning service authorizes them) and bidirectional streams with a policy;
        # anything else is UNIMPLEMENTED.
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if method.startswith(PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary is None:
            policy = self.policies.get(method)
            if policy is not None and policy.forwarded:
                if not tracing.ON:
                    return handler
                wrapped = _traced_forward(method, handler)  # the owning service authorizes it
            elif policy is None:
                return None
            elif handler.stream_stream is not None:  # a bidirectional stream of a service's own contract
                wrapped = grpc.stream_stream_rpc_method_handler(
                    tracing.served(method, self._stream_behavior(method, handler.stream_stream), "stream"),
                    request_deserializer=tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer)
            elif handler.unary_stream is not None:  # a server stream of a service's own contract (a feed)
                wrapped = grpc.unary_stream_rpc_method_handler(
                    tracing.served(method, self._stream_behavior(method, handler.unary_stream, unary=True),
                                   "stream"),
                    request_deserializer=tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer)
            else:
                return None
        else:
            wrapped = grpc.unary_unary_rpc_method_handler(
                tracing.served(method, self._behavior(method, handler.unary_unary)),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _behavior(self, method: str, inner: Behavior) -> Behavior:
        """The wrapped behaviour of one method, built once: the stages in their order."""
        policies, authorizer, peer_check = self.policies, self.authorizer, self.peer_check
        observed = _MethodMetrics(method)

        async def guarded(request, context, header: str):
            if request is UNDECODABLE:
                raise InvalidArgument("request", f"is not a {method.rsplit('/', 1)[-1]}Request message: it does "
                                                 f"not decode ({method})")
            policy = policies.get(method)
            if policy is None or policy.permission is not None:  # public methods need neither
                token = authenticate(header)  # 4. authentication
                await authorize(policy, method, request, token, authorizer, context, peer_check)  # 5.
            answer = await map_errors(method, inner, request, context)  # 6. error mapping
            if policy is not None and policy.handler_decides and not auth.current().consulted:
                logger.error("%s answered without consulting authz; the answer was not sent", method)
                raise Internal(f"internal error; quote request id {request_id_var.get()}")
            return answer

        async def behavior(request, context):
            header = request_id(context.invocation_metadata())  # 1. request id, and the deadline
            left = context.time_remaining()
            auth.deadline_var.set(_monotonic() + left if left is not None else None)
            started = _perf_counter()
            log_code = metric_code = "OK"
            try:  # 2. logging and 3. metrics: around everything after them
                return await guarded(request, context, header)
            except DomainError as error:  # its status goes out below, once the call is counted and logged
                failure = error
                log_code = metric_code = _status_name(error)
            except asyncio.CancelledError:
                metric_code = "CANCELLED"  # the caller went away (its deadline passed, or it cancelled)
                log_code = _code_name(context, "UNKNOWN")
                raise
            except BaseException:
                log_code = metric_code = _code_name(context, "UNKNOWN")
                raise
            finally:
                seconds = _perf_counter() - started
                observed.observe(metric_code, seconds)
                access_log(method, log_code, seconds)
            await abort(context, failure)

        return behavior

    def _stream_behavior(self, method: str, inner, unary: bool = False) -> Callable:
        """The wrapped behaviour of a streaming method, built once: bidirectional, or (`unary`) one request and
        a stream of responses. The resource is in the stream's first message, or the handler decides per
        response, so its policy is public (the handler authenticates the caller itself, e.g. by a
        signed file) or `handler_decides` (the kit requires the bearer token; the handler asks authz with
        `decide_bulk`, and a response written before authz answered is refused). Stages 1-4 and 6 run around
        the whole stream; its access-log line and metrics are written when it ends."""
        policy = self.policies.get(method)
        authorizer, peer_check = self.authorizer, self.peer_check
        observed = _MethodMetrics(method)
        name = method.rsplit("/", 1)[-1]

        async def behavior(request_iterator, context):
            header = request_id(context.invocation_metadata())
            auth.deadline_var.set(None)  # a stream lives as long as its window; its own deadline is grpc's
            started = _perf_counter()
            log_code = metric_code = "OK"
            failure: DomainError | None = None
            try:
                if unary and request_iterator is UNDECODABLE:  # as for unary methods: before authentication
                    raise InvalidArgument("request", f"is not a {name}Request message: it does not decode "
                                                     f"({method})")
                if policy.permission is not None and not policy.handler_decides:  # policy_table refuses these
                    raise auth.PermissionDenied(f"method {method} has no usable authorization policy; refused")
                if policy.permission is not None:
                    token = authenticate(header)
                    verify = (lambda decision: _peer(context, decision)) if peer_check else None
                    auth.auth_var.set(auth.AuthContext(token, None, authorizer, verify))
                else:
                    auth.auth_var.set(None)
                requests = request_iterator if unary else _decoded(request_iterator, name, method)
                await map_errors(method, inner, requests, _StreamContext(context, policy))
            except DomainError as error:
                failure = error
                log_code = metric_code = _status_name(error)
            except asyncio.CancelledError:
                metric_code = "CANCELLED"
                log_code = _code_name(context, "CANCELLED")
                raise
            finally:
                seconds = _perf_counter() - started
                observed.observe(metric_code, seconds)
                access_log(method, log_code, seconds)
            if failure is not None:
                await abort(context, failure)

        return behavior


def _traced_forward(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A forwarded streaming path's handler (the gateway's pass-through) inside a SERVER span, with tracing
    on (a forwarded unary path runs the stages, so its span is the unary one)."""
    serializers = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            tracing.served(method, handler.unary_stream, "generator"), **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(tracing.served(method, handler.stream_unary), **serializers)
    return grpc.stream_stream_rpc_method_handler(
        tracing.served(method, handler.stream_stream, "generator"), **serializers)


async def _decoded(iterator, name: str, method: str):
    """The stream's requests; one that does not decode ends the call INVALID_ARGUMENT."""
    async for message in iterator:
        if message is UNDECODABLE:
            raise InvalidArgument("request", f"is not a {name}Request message: it does not decode ({method})")
        yield message


class _StreamContext:
    """The servicer context of a stream, refusing to write a response of a `handler_decides` stream before
    authz was consulted during the call (the streaming form of the unary guard)."""

    __slots__ = ("_context", "_guarded")

    def __init__(self, context, policy: auth.MethodPolicy) -> None:
        self._context = context
        self._guarded = policy.handler_decides

    async def write(self, message) -> None:
        if self._guarded and not auth.current().consulted:
            logger.error("a stream wrote before consulting authz; the response was not sent")
            raise Internal(f"internal error; quote request id {request_id_var.get()}")
        await self._context.write(message)

    def __getattr__(self, attribute: str):
        return getattr(self._context, attribute)


def chain(policies: dict[str, auth.MethodPolicy], authorizer: auth.Authorizer, *,
          peer_check: bool = False) -> list[grpc.aio.ServerInterceptor]:
    """The server's interceptors: one, running the six stages in their named order."""
    return [KitInterceptor(policies, authorizer, peer_check)]


def _code_name(context: grpc.aio.ServicerContext, default: str) -> str:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older contexts may not expose the code
        return default
    if code is None:
        return default
    return code.name if hasattr(code, "name") else str(code)
