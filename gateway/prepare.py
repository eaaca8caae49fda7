"""PrepareRemoteAccess: set up (when parameters are given), open a window, issue its service connector and
store logon data for it — all or nothing. First every step is asked with validate_only (its authorization, input
and state, as the service that owns it decides): a refusal there ends the call before any effect. Then each step
registers how to undo it before it runs; when a step fails, the registered undos run in reverse and the caller
gets the failing step's status. A step whose outcome is unknown (its answer never arrived) is undone by looking
for what it may have made."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import grpc

from gateway import convert
from gateway.backends import Backends, answered, checked
from gateway.model import ACTIVE, Abandoned, Target, TooLate, prepare_target
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from services.kit import auth
from services.kit.errors import DomainError
from services.kit.logs import log

logger = logging.getLogger(__name__)
DISCOVERY_LIMIT = 1000
# An answer finished less than this before its caller's deadline is not sent but undone: it would arrive late.
DELIVERY_MARGIN_S = 0.01


class UndoStack:
    """Compensations of the steps done so far, run last-first; failures are collected, not raised."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    def push(self, label: str, action: Callable[[], Awaitable[None]]) -> None:
        self.actions.append((label, action))

    def pop(self) -> None:
        self.actions.pop()

    async def run(self) -> list[str]:
        failed = []
        for label, action in reversed(self.actions):
            try:
                await action()
            except DomainError as error:
                failed.append(f"{label} ({error.code.name})")
        self.actions.clear()
        return failed


async def attempt(undo: UndoStack, label: str, action: Callable[[], Awaitable[None]], call: Awaitable):
    """Run a step with its undo registered first; a failure the service answered means nothing was done."""
    undo.push(label, action)
    try:
        return await call
    except DomainError as error:
        if answered(error):
            undo.pop()
        raise


async def ignoring(codes: set[grpc.StatusCode], call: Awaitable) -> None:
    """An undo call whose target is already gone (NOT_FOUND) or already closed is done, not failed."""
    try:
        await call
    except DomainError as error:
        if error.code not in codes:
            raise


class Flow:
    """One PrepareRemoteAccess call."""

    def __init__(self, b: Backends, request: gpb.PrepareRemoteAccessRequest, target: Target, opener: str,
                 abandoned: asyncio.Event) -> None:
        self.b = b
        self.request = request
        self.target = target
        self.opener = opener
        self.abandoned = abandoned
        self.undo = UndoStack()
        self.window = ""  # the opened window's name, once known

    async def run(self) -> gpb.PrepareRemoteAccessResponse:
        try:
            response = await self.steps()
            self.check_abandoned()
            return response
        except Exception as failure:  # noqa: BLE001 - undone whatever failed, then raised unchanged
            code = failure.code.name if isinstance(failure, DomainError) else type(failure).__name__
            left = await self._undo("prepare remote access failed; undone", failure=code)
            if left and isinstance(failure, DomainError):
                failure.metadata["undo_incomplete"] = "; ".join(left)
            raise

    async def undo_unanswered(self) -> None:
        """Undo a finished flow whose answer could not reach its caller in time."""
        await self._undo("prepare remote access finished past its caller's deadline; undone")

    async def _undo(self, message: str, **fields) -> list[str]:
        """Everything done so far undone, and logged; returns what could not be undone."""
        left = await self.undo.run()
        log(logger, logging.WARNING, message, system=self.target.system, connection=self.window, **fields,
            undo_incomplete=", ".join(left))
        return left

    def check_abandoned(self) -> None:
        if self.abandoned.is_set():
            raise Abandoned("the caller went away before remote access was prepared; everything was undone")

    async def steps(self) -> gpb.PrepareRemoteAccessResponse:
        b, req, t = self.b, self.request, self.target
        before = await self.current_setup()
        setting_up = bool(req.parameters) or before is None  # not set up yet: set up now
        await self.preflight(setting_up)
        setup = before
        if setting_up:
            setup = await self.set_up(before)
        self.check_abandoned()
        opened = await attempt(self.undo, f"close connection of {t.connection_type}", self.close_window,
                               b.call("connections", b.connections.OpenConnection, self.open_request()))
        window = opened.connection
        self.window = window.name
        self.check_abandoned()
        connector = await b.call("connections", b.connections.GetServiceConnector,
                                 cpb.GetServiceConnectorRequest(name=window.name))
        out = convert.prepared(window, connector, setup)
        if req.HasField("logon_data"):
            self.check_abandoned()
            out.logon_data.CopyFrom(await self.store_logon_data(window))
        return out

    async def preflight(self, setting_up: bool) -> None:
        """Every step asked with validate_only before the first effect (AIP-163): its authorization, its input
        and the state it needs, as the owning service decides them; the first refusal ends the call with nothing
        done. The window is checked only when its type is set up already (otherwise opening it depends on the
        set-up this call makes; a refusal then is undone like any later failure)."""
        b, req, t = self.b, self.request, self.target
        checks = []
        if setting_up:
            checks.append(b.call("connections", b.connections.SetUpConnection, cpb.SetUpConnectionRequest(
                parent=t.system, connection_type=t.connection_type, parameters=dict(req.parameters),
                validate_only=True)))
        else:
            checks.append(b.call("connections", b.connections.OpenConnection, self.open_request(validate_only=True)))
        if req.HasField("logon_data"):
            planned = cpb.Connection(end_time=req.end_time)  # the window is not there yet: no name to bind to
            checks.append(b.call("depot", b.depot.CreateLogonData, dpb.CreateLogonDataRequest(
                parent=t.system, logon_data=convert.logon_data_for(req, planned, t.connection_type),
                secret=req.secret, validate_only=True)))
        await checked(*checks)  # in step order: the earliest step's refusal is the answer

    def open_request(self, *, validate_only: bool = False) -> cpb.OpenConnectionRequest:
        req, t = self.request, self.target
        return cpb.OpenConnectionRequest(
            parent=t.system, connection_type=t.connection_type,
            start_time=req.start_time if req.HasField("start_time") else None, end_time=req.end_time,
            incident=req.incident, reason=req.reason, validate_only=validate_only)

    async def current_setup(self) -> cpb.ConnectionSetup | None:
        """The set-up of the type as it is before this call (read only; to restore it on undo)."""
        setups = await self.b.collect("connections", self.b.connections.ListConnectionSetups,
                                      cpb.ListConnectionSetupsRequest(parent=self.target.system),
                                      "connection_setups", DISCOVERY_LIMIT)
        return next((s for s in setups if s.connection_type == self.target.connection_type), None)

    async def set_up(self, before: cpb.ConnectionSetup | None) -> cpb.ConnectionSetup:
        b, t = self.b, self.target
        created_here = before is None  # until the service says someone else created it meanwhile

        async def restore() -> None:
            if before is None:
                if not created_here:
                    return
                await ignoring({grpc.StatusCode.NOT_FOUND}, b.undo_call(
                    "connections", b.connections.DeleteConnectionSetup,
                    cpb.DeleteConnectionSetupRequest(name=t.setup_name)))
            elif dict(before.parameters) != dict(self.request.parameters):
                await b.undo_call("connections", b.connections.SetUpConnection, cpb.SetUpConnectionRequest(
                    parent=t.system, connection_type=t.connection_type, parameters=dict(before.parameters)))

        label = f"delete set-up {t.setup_name}" if before is None else f"restore set-up {t.setup_name}"
        response = await attempt(self.undo, label, restore, b.call(
            "connections", b.connections.SetUpConnection, cpb.SetUpConnectionRequest(
                parent=t.system, connection_type=t.connection_type, parameters=dict(self.request.parameters))))
        created_here = response.created
        return response.connection_setup

    async def close_window(self) -> None:
        b = self.b
        names_ = [self.window] if self.window else await self.find_window()
        for name in names_:
            await ignoring({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}, b.undo_call(
                "connections", b.connections.CloseConnection, cpb.CloseConnectionRequest(name=name)))

    async def find_window(self) -> list[str]:
        """The window an OpenConnection whose answer was lost may have opened: same system, type, time frame,
        incident, reason and opener, still open or scheduled (windows of one type never overlap)."""
        req = self.request
        windows = await self.b.collect("connections", self.b.connections.ListConnections,
                                       cpb.ListConnectionsRequest(parent=self.target.system), "connections",
                                       DISCOVERY_LIMIT, undo=True)
        return [w.name for w in windows
                if w.state in ACTIVE and w.connection_type == self.target.connection_type
                and w.end_time == req.end_time and w.opener == self.opener and w.reason == req.reason
                and w.incident == req.incident and (not req.HasField("start_time") or w.start_time == req.start_time)]

    async def store_logon_data(self, window: cpb.Connection) -> dpb.LogonData:
        b, req = self.b, self.request
        entry = convert.logon_data_for(req, window, self.target.connection_type)
        stored = ""

        async def delete() -> None:
            targets = [stored] if stored else await self.find_entries(window.name)
            for name in targets:
                await ignoring({grpc.StatusCode.NOT_FOUND}, b.undo_call(
                    "depot", b.depot.DeleteLogonData, dpb.DeleteLogonDataRequest(name=name)))

        response = await attempt(self.undo, f"delete logon data stored for {window.name}", delete, b.call(
            "depot", b.depot.CreateLogonData,
            dpb.CreateLogonDataRequest(parent=self.target.system, logon_data=entry, secret=req.secret)))
        stored = response.logon_data.name
        return response.logon_data

    async def find_entries(self, window: str) -> list[str]:
        """Entries a CreateLogonData whose answer was lost may have stored: those stored for this window."""
        entries = await self.b.collect("depot", self.b.depot.ListLogonData,
                                       dpb.ListLogonDataRequest(parent=self.target.system), "logon_data",
                                       DISCOVERY_LIMIT, undo=True)
        return [e.name for e in entries if e.connection == window]


async def prepare_remote_access(b: Backends, request: gpb.PrepareRemoteAccessRequest,
                                opener: str) -> gpb.PrepareRemoteAccessResponse:
    """Runs the flow in a task of its own: if the caller goes away mid-way, the flow still ends — undone."""
    target = prepare_target(request)
    abandoned = asyncio.Event()
    flow = Flow(b, request, target, opener, abandoned)
    task = b.detach(flow.run())
    try:
        response = await asyncio.shield(task)
    except asyncio.CancelledError:
        abandoned.set()
        task.add_done_callback(_consume)
        raise
    if auth.remaining(DELIVERY_MARGIN_S) < DELIVERY_MARGIN_S:
        # done, but the answer would reach the caller after its deadline: undone rather than left for a
        # caller who only hears DEADLINE_EXCEEDED
        b.detach(flow.undo_unanswered())
        raise TooLate("the deadline passed as remote access was prepared; everything is undone")
    return response


def _consume(task: asyncio.Task) -> None:
    """A detached flow's outcome nobody awaits any more (its caller is gone); it was logged already."""
    if not task.cancelled():
        task.exception()
