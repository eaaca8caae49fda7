"""Pass-through: every method of the authz, depot and connections services, served at the gateway by
forwarding the caller's bytes unchanged to the owning service, with the caller's token, request id and
remaining deadline, and its answer — message or status with its details — brought back unchanged."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import AsyncIterator, Iterable

import grpc

from services.kit import auth
from services.kit.errors import DependencyUnavailable
from services.kit.interceptors import abort
from services.kit.logs import request_id_var

STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Caller metadata that describes the caller's own HTTP/2 connection, not the call: never forwarded.
_CONNECTION_HEADERS = frozenset({"user-agent", "content-type", "te", "host", "connection", "accept-encoding",
                                 "content-length"})


class Kind(enum.Enum):
    UNARY_UNARY = (False, False)
    UNARY_STREAM = (False, True)
    STREAM_UNARY = (True, False)
    STREAM_STREAM = (True, True)

    @classmethod
    def of(cls, method_descriptor) -> "Kind":
        return cls((bool(method_descriptor.client_streaming), bool(method_descriptor.server_streaming)))


@dataclass(frozen=True)
class Route:
    """Where one method path goes: the owning service's name (for messages) and channel, and its shape."""

    service: str
    channel: grpc.aio.Channel
    kind: Kind = Kind.UNARY_UNARY


def routes_for(service_descriptor, service: str, channel: grpc.aio.Channel) -> dict[str, Route]:
    """A route for every method of a generated service descriptor, e.g.
    `authz_pb2.DESCRIPTOR.services_by_name["AuthzService"]`."""
    return {f"/{service_descriptor.full_name}/{m.name}": Route(service, channel, Kind.of(m))
            for m in service_descriptor.methods}


def forwarded_metadata(invocation_metadata: Iterable) -> tuple[tuple[str, str | bytes], ...]:
    """The caller's metadata for the owning service: the token and any application metadata as sent, the
    call's request id (the one the request-id interceptor settled on, so both servers log the same id)."""
    out: list[tuple[str, str | bytes]] = []
    caller_rid = ""
    for key, value in invocation_metadata or ():
        key = key.lower()
        if key == "x-request-id":
            caller_rid = value if isinstance(value, str) else ""
            continue
        if key.startswith((":", "grpc-")) or key in _CONNECTION_HEADERS:
            continue
        out.append((key, value))
    rid = request_id_var.get() or caller_rid
    if rid:
        out.append(("x-request-id", rid))
    return tuple(out)


class Passthrough(grpc.GenericRpcHandler):
    """A generic handler for the routed paths; handlers take and return raw bytes (no (de)serializers)."""

    def __init__(self, routes: dict[str, Route], default_timeout: float) -> None:
        self.routes = dict(routes)
        self.default_timeout = default_timeout
        self._handlers = {path: self._handler(path, route) for path, route in self.routes.items()}

    def policies(self) -> dict[str, auth.MethodPolicy]:
        """Every routed path is authorized by the service that serves it, not at the gateway."""
        return {path: auth.FORWARDED for path in self.routes}

    def service(self, handler_call_details):
        return self._handlers.get(handler_call_details.method)

    def _handler(self, path: str, route: Route) -> grpc.RpcMethodHandler:
        if route.kind is Kind.UNARY_UNARY:
            return grpc.unary_unary_rpc_method_handler(self._unary_unary(path, route))
        if route.kind is Kind.UNARY_STREAM:
            return grpc.unary_stream_rpc_method_handler(self._unary_stream(path, route))
        if route.kind is Kind.STREAM_UNARY:
            return grpc.stream_unary_rpc_method_handler(self._stream_unary(path, route))
        return grpc.stream_stream_rpc_method_handler(self._stream_stream(path, route))

    # --- one behaviour per shape ----------------------------------------------------------------------------
    def _call_options(self, context: grpc.aio.ServicerContext, *, streams: bool = False) -> dict:
        """The caller's metadata and deadline; without one, the default timeout, except for a call whose
        responses stream (a feed lasts until either side ends it)."""
        left = context.time_remaining()
        timeout = (None if streams else self.default_timeout) if left is None else max(left, 0.001)
        return {"timeout": timeout, "metadata": forwarded_metadata(context.invocation_metadata())}

    def _unary_unary(self, path: str, route: Route):
        forward = route.channel.unary_unary(path)  # no serializers: bytes in, bytes out

        async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                return await forward(request, **self._call_options(context))
            except grpc.aio.AioRpcError as err:
                await relay_error(context, err, route.service)
        return behavior

    def _unary_stream(self, path: str, route: Route):
        forward = route.channel.unary_stream(path)  # no serializers: bytes in, bytes out

        async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            call = forward(request, **self._call_options(context, streams=True))
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as err:
                await relay_error(context, err, route.service)
        return behavior

    def _stream_unary(self, path: str, route: Route):
        forward = route.channel.stream_unary(path)  # no serializers: bytes in, bytes out

        async def behavior(request_iterator, context: grpc.aio.ServicerContext) -> bytes:
            try:
                return await forward(request_iterator, **self._call_options(context))
            except grpc.aio.AioRpcError as err:
                await relay_error(context, err, route.service)
        return behavior

    def _stream_stream(self, path: str, route: Route):
        forward = route.channel.stream_stream(path)  # no serializers: bytes in, bytes out

        async def behavior(request_iterator, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            call = forward(request_iterator, **self._call_options(context, streams=True))
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as err:
                await relay_error(context, err, route.service)
        return behavior


async def relay_error(context: grpc.aio.ServicerContext, err: grpc.aio.AioRpcError, service: str) -> None:
    """End the call as the owning service ended it: same code, message and trailing metadata (so
    grpc-status-details-bin, the google.rpc.Status with ErrorInfo/BadRequest, arrives byte for byte).
    An UNAVAILABLE the service never sent (it could not be reached) becomes DEPENDENCY_UNAVAILABLE
    naming the service, without the internal address gRPC's own message would show."""
    trailing = tuple((key, value) for key, value in (err.trailing_metadata() or ()))
    sent_by_service = any(key == STATUS_DETAILS_KEY for key, _ in trailing)
    if err.code() == grpc.StatusCode.UNAVAILABLE and not sent_by_service:
        await abort(context, DependencyUnavailable(f"the {service} service did not answer (UNAVAILABLE)"))
    await context.abort(err.code(), err.details() or "", trailing)
