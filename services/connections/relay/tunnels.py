"""A tunnel from admission to its recorded end: the checks in their order (authz, window, target, connector),
every refusal recorded (for the customer's members and the vendor's engineers), the dial, and the end."""
from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass

from remotesupport.connections.v1 import relay_pb2
from services.connections.connection_types import ConnectionTypes
from services.connections.relay import splice, windows
from services.connections.relay.model import ACTIVE, REFUSED, ConnectorNotAttached, EndReason, NoSupportAssignment, \
    WindowNotOpen
from services.connections.relay.registry import Live, Registry
from services.connections.relay.settings import RelaySettings
from services.connections.relay.store import RelayStore
from services.connections.tables import SessionRow, SystemRow
from services.kit import auth, metrics, names
from services.kit import permissions as P
from services.kit.auth import Resource
from services.kit.clock import Clock
from services.kit.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.kit.logs import log
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER

logger = logging.getLogger(__name__)


@dataclass
class Tunnels:
    """The relay's tunnels: admitting, carrying and recording them."""

    registry: Registry
    store: RelayStore
    types: ConnectionTypes
    clock: Clock
    settings: RelaySettings

    async def run(self, start: relay_pb2.OpenTunnelStart, requests, context) -> None:
        """One OpenTunnel call after its first message: admit, carry, record the end."""
        live = await self._admit(start)
        try:
            await splice.engineer_side(live, requests, context, self.settings.dial_timeout_s)
        finally:
            if live.cut_reason is None and not live.finished.is_set():  # cancelled, or the stream failed
                live.cut(EndReason.CLIENT_CLOSED, "the engineer's side went away")
            if live.cut_reason is not None:
                reason, detail = live.cut_reason, live.cut_detail
            else:
                reason, detail = live.first_closed or EndReason.CLIENT_CLOSED, ""
            await asyncio.shield(self._end(live, *await self._why(live, reason, detail)))  # even if cancelled

    async def _why(self, live: Live, reason: EndReason, detail: str) -> tuple[EndReason, str]:
        """A connector that went away at the window's end (its own timer can beat the relay's check) ended
        the session because the window did."""
        if reason is EndReason.CONNECTOR_DETACHED:
            row = await self.store.window(live.window_id)
            closed = windows.not_open(row, self.clock.now()) if row is not None else None
            if closed is not None:
                return windows.end_reason(closed[0]), closed[1]
        return reason, detail

    async def _admit(self, start: relay_pb2.OpenTunnelStart) -> Live:
        parts = names.parse("connection", start.connection, "start.connection")
        customer, number, window_id = parts["customer"], parts["system"], parts["connection"]
        if start.incident:
            incident = names.parse("incident", start.incident, "start.incident")
            if incident["customer"] != customer:
                raise InvalidArgument("start.incident", f"must be an incident of {names.customer(customer)}")
        system = await self.store.system(customer, number)
        resource = Resource(customer=names.customer(customer), system=names.system(customer, number),
                            installation=system.installation_number if system is not None else "",
                            incident=start.incident)
        ctx = auth.current()
        [decision] = await ctx.decide_bulk([(P.RELAY_TUNNEL, resource)])  # UNAUTHENTICATED raises here
        subject = ctx.subject
        try:
            if not decision.allowed:
                if subject.kind == SUPPORT_ENGINEER:
                    raise NoSupportAssignment(decision.reason or "no support assignment for this system")
                raise PermissionDenied(decision.reason or "permission denied", required=list(decision.required))
            if system is None:
                raise NotFound(f"system {names.system(customer, number)} does not exist")
            window = await self.store.window(window_id)
            if window is None or (window.customer, window.system_number) != (customer, number):
                raise NotFound(f"connection {start.connection} does not exist")
            closed = windows.not_open(window, self.clock.now())
            if closed is not None:
                raise WindowNotOpen(f"{closed[1]}; no tunnel passes through it")
            target = await self.store.target(window, self.types)
            if not target:
                raise FailedPrecondition(f"connection type {window.type_code} has no network target in the "
                                         "system's set-up; nothing to tunnel to")
            attachment = self.registry.attached(window.id)
            if attachment is None:
                raise ConnectorNotAttached(
                    f"the customer's Service Connector for {start.connection} is not attached to this relay "
                    f"({self.settings.relay_id}); the customer starts it with `rsctl connector run stfk.oez`")
        except DomainError as refusal:
            await self._record_refusal(refusal, system, window_id, start, subject)
            raise
        incident = start.incident or (decision.incidents[0] if decision.incidents else "")
        session_id = uuid.uuid4().hex
        live = Live(id=session_id, name=f"{names.system(customer, number)}/sessions/{session_id}",
                    window_id=window.id, token=ctx.token,
                    resource=Resource(customer=resource.customer, system=resource.system,
                                      installation=resource.installation, incident=incident),
                    target=target, dial_key=secrets.token_urlsafe(24), attachment=attachment, start=self.clock.now())
        await self.store.add_session(SessionRow(
            id=session_id, customer=customer, system_number=number, window_id=window.id, type_code=window.type_code,
            principal=subject.user, principal_kind=subject.kind, incident=incident, target=target,
            relay_id=self.settings.relay_id, state=ACTIVE, start_time=live.start, bytes_to_target=0,
            bytes_from_target=0, end_reason="", refusal_reason="", detail="", terminated_by=""))
        self.registry.sessions[live.name] = live
        metrics.RELAY_SESSIONS.set(len(self.registry.sessions))
        attachment.dial(live.name, target, live.dial_key)
        log(logger, logging.INFO, "tunnel admitted", session=live.name, principal=subject.user, target=target)
        return live

    async def _record_refusal(self, refusal: DomainError, system: SystemRow | None, window_id: str,
                              start: relay_pb2.OpenTunnelStart, subject: auth.Subject) -> None:
        """A refused admission, for the customer to see: only when the system exists and the caller is one of
        its customer's users or a support engineer (another customer's user cannot fill this customer's list)."""
        metrics.RELAY_REFUSALS.labels(reason=refusal.reason).inc()
        log(logger, logging.INFO, "tunnel refused", connection=start.connection, principal=subject.user,
            reason=refusal.reason)
        own = subject.kind == CUSTOMER_USER and system is not None \
            and subject.customer == names.customer(system.customer)
        if system is None or not (own or subject.kind == SUPPORT_ENGINEER):
            return
        window = await self.store.window(window_id)
        await self.store.add_session(SessionRow(
            id=uuid.uuid4().hex, customer=system.customer, system_number=system.system_number, window_id=window_id,
            type_code=window.type_code if window is not None else "", principal=subject.user,
            principal_kind=subject.kind, incident=start.incident, target="", relay_id=self.settings.relay_id,
            state=REFUSED, start_time=self.clock.now(), end_time=self.clock.now(), bytes_to_target=0,
            bytes_from_target=0, end_reason="", refusal_reason=refusal.reason, detail=str(refusal)[:500],
            terminated_by=""))

    async def _end(self, live: Live, reason: EndReason, detail: str) -> None:
        self.registry.sessions.pop(live.name, None)
        metrics.RELAY_SESSIONS.set(len(self.registry.sessions))
        metrics.RELAY_ENDS.labels(reason=reason.value).inc()
        metrics.RELAY_BYTES.labels(direction="to_target").inc(live.up)
        metrics.RELAY_BYTES.labels(direction="from_target").inc(live.down)
        await self.store.end_session(live.id, reason, detail, self.clock.now(), live.up, live.down)
        log(logger, logging.INFO, "tunnel ended", session=live.name, reason=reason.value, bytes_to_target=live.up,
            bytes_from_target=live.down)

    async def accept(self, start: relay_pb2.AcceptTunnelStart, requests, context) -> None:
        """The connector's AcceptTunnel after its first message: join the session its dial key names."""
        live = self.registry.sessions.get(start.session)
        if live is None or not secrets.compare_digest(live.dial_key.encode(), start.dial_key.encode()) \
                or live.accepted.done():
            raise PermissionDenied("no dial of this relay is waiting for this session and key")
        if not start.connected:
            live.accepted.set_result(start.problem[:300] or "the connector could not connect")
            return
        live.accepted.set_result(True)
        try:
            await splice.connector_side(live, requests, context)
        finally:  # the connector's stream failed or was cancelled (its process went): the session cannot go on
            live.cut(EndReason.CONNECTOR_DETACHED, "the connector's side of the session ended")
