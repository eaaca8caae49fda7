"""The services the composite flows call, always as the caller (token, request id, remaining deadline
forwarded by services.kit.clients.call; a detached flow has the gateway's own deadlines, see `detach`), plus
the two variations the flows need: paging through a list, and an undo call with a short deadline of its own
(it must run even when the caller's is spent)."""
from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2_grpc
from services.kit import auth, clients
from services.kit.clock import Clock
from services.kit.errors import DomainError

T = TypeVar("T")
STATUS_DETAILS_KEY = "grpc-status-details-bin"
LIST_PAGE_SIZE = 1000
NEVER_SENT = "failed to connect to all addresses"


async def checked(*calls: Awaitable) -> list:
    """Run `calls` together (validate_only pre-flights of a composite call's steps) and return their answers;
    when any failed, raise the failure of the earliest one in the order given (after all have finished)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def answered(error: DomainError) -> bool:
    """True when the call's outcome is known to be "nothing done": the called service sent the error, or the
    call never left (no connection could be made). False when it is unknown (the deadline passed on the
    way, the connection broke): the step may or may not have been done."""
    return getattr(error, "answered", True)


def _error_info_metadata(err: grpc.RpcError) -> dict[str, str]:
    for key, value in (err.trailing_metadata() if hasattr(err, "trailing_metadata") else None) or ():
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return dict(info.metadata)
    return {}


def _definite(err: grpc.RpcError) -> bool:
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    if any(key == STATUS_DETAILS_KEY for key, _ in trailers or ()):
        return True  # every server of the suite sends its status with details
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else "") or ""
    # gRPC's own answer when no connection to any address could be made: the request was never sent.
    return code == grpc.StatusCode.UNAVAILABLE and details.startswith(NEVER_SENT)


@dataclass
class Backends:
    connections: connections_pb2_grpc.ConnectionsServiceStub
    depot: depot_pb2_grpc.LogonDepotServiceStub
    clock: Clock
    call_deadline_s: float
    undo_timeout_s: float  # GatewaySettings.undo_timeout_s
    detached: set[asyncio.Task] = field(default_factory=set)

    async def call(self, service: str, method: Callable[..., Awaitable[T]], request, *,
                   timeout: float | None = None) -> T:
        """One call as the caller; a failure is the service's status as a DomainError, marked `answered`
        (see `answered`)."""
        raw: list[grpc.RpcError] = []

        async def observed(req, **kwargs):
            try:
                return await method(req, **kwargs)
            except grpc.RpcError as err:
                raw.append(err)
                raise

        try:
            return await clients.call(observed, request, service=service,
                                      default_timeout=timeout or self.call_deadline_s)
        except DomainError as error:
            error.answered = bool(raw) and _definite(raw[0])
            if raw and error.code == raw[0].code():
                # from_rpc_error keeps code, reason and violations; keep the ErrorInfo metadata too
                # (e.g. required_authorizations), so the caller gets the step's status as it was sent.
                error.metadata.update(_error_info_metadata(raw[0]))
            raise

    async def undo_call(self, service: str, method: Callable[..., Awaitable[T]], request) -> T:
        """A compensating call: its own short deadline, whatever is left of the caller's."""
        token = auth.deadline_var.set(time.monotonic() + self.undo_timeout_s)
        try:
            return await self.call(service, method, request, timeout=self.undo_timeout_s)
        finally:
            auth.deadline_var.reset(token)

    async def collect(self, service: str, method, request, items_field: str, limit: int, *,
                      undo: bool = False) -> list:
        """Page through a list method (page_size, page_token, next_page_token) up to `limit` items."""
        out: list = []
        request.page_size = min(LIST_PAGE_SIZE, limit)
        while True:
            if undo:
                response = await self.undo_call(service, method, request)
            else:
                response = await self.call(service, method, request)
            out.extend(getattr(response, items_field))
            if not response.next_page_token or len(out) >= limit:
                return out[:limit]
            request.page_token = response.next_page_token

    def detach(self, coro) -> asyncio.Task:
        """Run `coro` in a task of its own that outlives a cancelled caller; the app awaits it on stop. Its
        calls have the gateway's own deadlines, not what is left of the caller's: a step cut off by the
        caller's deadline would leave its outcome unknown, and an undo sent while the service may still be
        doing the step can arrive before it and find nothing to undo."""
        context = contextvars.copy_context()
        context.run(auth.deadline_var.set, None)
        task = asyncio.create_task(coro, context=context)
        self.detached.add(task)
        task.add_done_callback(self.detached.discard)
        return task

    async def drain(self, timeout: float) -> None:
        """Let detached flows (and their undo) finish before the channels close."""
        if self.detached:
            await asyncio.wait(list(self.detached), timeout=timeout)
