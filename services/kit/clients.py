"""Outgoing calls to other services of the suite: channels, the caller's token and request id
forwarded, the remaining deadline, and errors brought back as domain errors."""
from __future__ import annotations

import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import grpc

from services.kit import auth, tls, tracing
from services.kit.errors import DependencyUnavailable, from_rpc_error
from services.kit.logs import request_id_var

T = TypeVar("T")
_PASS_THROUGH_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


_CURRENT = object()


MAX_RECONNECT_BACKOFF_MS = 5000


def channel(address: str, max_message_bytes: int = 4 * 1024 * 1024, *,
            identity: "tls.Identity | None | object" = _CURRENT, server_name: str | None = None,
            own_connection: bool = False) -> grpc.aio.Channel:
    """A channel to another service of the suite (traced when tracing is on). Under mutual TLS it presents `identity` (by default the
    identity of the service being built or of this process, see services.kit.tls) and verifies the server
    against the suite's CA; `server_name` overrides the name checked in the server's certificate.
    grpc shares one connection, and its reconnect backoff, between channels to the same address with the same
    options; with `own_connection` this channel has its own."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # a restarted service is reached again within seconds (grpc's default backoff grows to 120 s)
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    ident = tls.current_identity() if identity is _CURRENT else identity
    interceptors = tracing.client_interceptors()  # with tracing on: a CLIENT span and `traceparent` per call
    if ident is None:
        return tracing.traced_channel(grpc.aio.insecure_channel(address, options=options, interceptors=interceptors))
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return tracing.traced_channel(grpc.aio.secure_channel(address, ident.channel_credentials(), options=options,
                                                          interceptors=interceptors))


def caller_metadata() -> tuple[tuple[str, str], ...]:
    """The end user's token and the request id, to act on another service on the caller's behalf."""
    md = [("authorization", f"Bearer {auth.token_var.get()}")]
    rid = request_id_var.get()
    if rid:
        md.append(("x-request-id", rid))
    return tuple(md)


def _domain_error(err: grpc.RpcError, service: str) -> Exception:
    """Another service's answer as this call's error: its own status where it is the caller's to see, else
    DEPENDENCY_UNAVAILABLE naming the service."""
    code = err.code() if hasattr(err, "code") else None
    if code in _PASS_THROUGH_CODES:
        return from_rpc_error(err)
    return DependencyUnavailable(f"the {service} service did not answer ({code.name if code else 'error'})")


async def call(method: Callable[..., Awaitable[T]], request, *, service: str, default_timeout: float,
               metadata: tuple[tuple[str, str], ...] | None = None) -> T:
    """Call another service as the caller; its status comes back as a DomainError with the same code."""
    try:
        return await method(request, timeout=auth.remaining(default_timeout) or 0.001,
                            metadata=metadata if metadata is not None else caller_metadata())
    except grpc.RpcError as err:
        raise _domain_error(err, service) from None


async def stream(method: Callable, request, *, service: str) -> AsyncIterator:
    """The responses of another service's server stream, opened as the caller and lasting as long as the
    caller's deadline (none: until either side ends it); its end is a DomainError as with `call`."""
    deadline = auth.deadline_var.get()
    call = method(request, metadata=caller_metadata(),
                  timeout=None if deadline is None else max(0.001, deadline - time.monotonic()))
    try:
        async for response in call:
            yield response
    except grpc.RpcError as err:
        raise _domain_error(err, service) from None
    finally:
        call.cancel()


class TokenFile:
    """A service's own token, read from its 0600 file and re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._token = ""

    def __call__(self) -> str:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return ""
        if mtime != self._mtime:
            self._token = self.path.read_text().strip()
            self._mtime = mtime
        return self._token


