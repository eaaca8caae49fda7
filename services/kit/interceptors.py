"""The interceptor chain, in its one named order:
request id -> logging -> metrics -> authentication -> authorization -> error mapping."""
from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Awaitable, Callable

import grpc

from services.kit import auth, metrics, tls
from services.kit.errors import AuthzUnavailable, DomainError, Internal, Unauthenticated, to_grpc_status
from services.kit.logs import log, request_id_var

logger = logging.getLogger("rs.access")

Behavior = Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Framework services every client may call without a token (health checks, grpcurl's reflection).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


async def abort(context: grpc.aio.ServicerContext, error: DomainError) -> None:
    """End the call with the error's status; the request id travels in ErrorInfo metadata."""
    rid = request_id_var.get()
    if rid:
        error.metadata.setdefault("request_id", rid)
    await context.abort_with_status(to_grpc_status(error))


class _UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of unary-unary methods; streaming framework methods pass untouched."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or details.method.startswith(PUBLIC_PREFIXES):
            return handler
        inner = handler.unary_unary
        metadata = details.invocation_metadata or ()
        method = details.method

        async def behavior(request, context):
            return await self.around(method, metadata, request, context, inner)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def around(self, method, metadata, request, context, inner: Behavior):  # pragma: no cover
        raise NotImplementedError


class RequestIdInterceptor(_UnaryInterceptor):
    """Takes the caller's x-request-id (or makes one) and the call's deadline into context variables."""

    async def around(self, method, metadata, request, context, inner):
        rid = next((v for k, v in metadata if k == "x-request-id"), "")
        request_id_var.set(rid if isinstance(rid, str) and _RID.match(rid) else uuid.uuid4().hex)
        left = context.time_remaining()
        auth.deadline_var.set(time.monotonic() + left if left is not None else None)
        return await inner(request, context)


class LoggingInterceptor(_UnaryInterceptor):
    """One access-log line per call: method, code, duration, subject. Never the request or a token."""

    async def around(self, method, metadata, request, context, inner):
        started = time.perf_counter()
        code = "OK"
        try:
            return await inner(request, context)
        except BaseException:
            code = _code_name(context, "UNKNOWN")
            raise
        finally:
            ctx = auth.auth_var.get()
            subject = ctx.decision.subject.user if ctx and ctx.decision.subject else ""
            log(logger, logging.INFO, "rpc", method=method, code=code,
                duration_ms=round((time.perf_counter() - started) * 1000, 2), subject=subject)


class MetricsInterceptor(_UnaryInterceptor):
    """Counts every call by method and status code and times it (Prometheus; see services.kit.metrics)."""

    async def around(self, method, metadata, request, context, inner):
        started = time.perf_counter()
        code = "OK"
        try:
            return await inner(request, context)
        except asyncio.CancelledError:
            code = "CANCELLED"  # the caller went away (its deadline passed, or it cancelled)
            raise
        except BaseException:
            code = _code_name(context, "UNKNOWN")
            raise
        finally:
            metrics.observe_request(method, code, time.perf_counter() - started)


class AuthenticationInterceptor(_UnaryInterceptor):
    """Requires a well-formed bearer token on every non-public method."""

    def __init__(self, policies: dict[str, auth.MethodPolicy]) -> None:
        self.policies = policies

    async def around(self, method, metadata, request, context, inner):
        policy = self.policies.get(method)
        if policy is not None and policy.permission is None:
            return await inner(request, context)
        header = next((v for k, v in metadata if k == "authorization"), "")
        scheme, _, token = header.partition(" ") if isinstance(header, str) else ("", "", "")
        if scheme.lower() != "bearer" or not token.strip() or len(token) > 512:
            await abort(context, Unauthenticated(
                "missing or malformed bearer token: send metadata 'authorization: Bearer <token>'"))
        auth.token_var.set(token.strip())
        return await inner(request, context)


class AuthorizationInterceptor(_UnaryInterceptor):
    """Asks the authorizer (authz) about every non-public call; unknown methods are refused.
    With `peer_check` (mutual TLS on), a service account's call must also come over a connection whose
    client certificate names that service."""

    def __init__(self, policies: dict[str, auth.MethodPolicy], authorizer: auth.Authorizer,
                 peer_check: bool = False) -> None:
        self.policies = policies
        self.authorizer = authorizer
        self.peer_check = peer_check

    async def around(self, method, metadata, request, context, inner):
        policy = self.policies.get(method)
        if policy is not None and policy.permission is None:
            return await inner(request, context)
        try:
            if policy is None:
                raise auth.PermissionDenied(f"method {method} has no authorization policy; refused")
            resource = await (policy.resolve or auth.no_resource)(request)
            token = auth.token_var.get()
            decision = await self._decide(token, policy.permission, resource, context)
        except DomainError as error:
            await abort(context, error)
        auth.auth_var.set(auth.AuthContext(token, decision, self.authorizer))
        return await inner(request, context)

    async def _decide(self, token: str, permission: str, resource: auth.Resource, context) -> auth.Decision:
        try:
            decision = await self.authorizer.check(token, permission, resource)
        except AuthzUnavailable:
            metrics.authz_decision(None)
            raise
        try:
            decision.raise_unless_allowed()
            if self.peer_check and decision.subject is not None:
                tls.require_service_peer(context, decision.subject.user, decision.subject.kind)
        except DomainError:
            metrics.authz_decision(False)
            raise
        metrics.authz_decision(True)
        return decision


class ErrorMappingInterceptor(_UnaryInterceptor):
    """Maps domain errors to google.rpc.Status; anything unexpected becomes INTERNAL without its text."""

    async def around(self, method, metadata, request, context, inner):
        try:
            return await inner(request, context)
        except DomainError as error:
            await abort(context, error)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - the one place unexpected faults are turned into a status
            logger.error("unhandled error in %s", method, exc_info=exc)
            await abort(context, Internal(f"internal error; quote request id {request_id_var.get()}"))


def chain(policies: dict[str, auth.MethodPolicy], authorizer: auth.Authorizer, *,
          peer_check: bool = False) -> list[grpc.aio.ServerInterceptor]:
    return [
        RequestIdInterceptor(),
        LoggingInterceptor(),
        MetricsInterceptor(),
        AuthenticationInterceptor(policies),
        AuthorizationInterceptor(policies, authorizer, peer_check),
        ErrorMappingInterceptor(),
    ]


def _code_name(context: grpc.aio.ServicerContext, default: str) -> str:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older contexts may not expose the code
        return default
    if code is None:
        return default
    return code.name if hasattr(code, "name") else str(code)
