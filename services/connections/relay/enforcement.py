"""Enforcement while tunnels run: every check interval (0.5 s by default) each live session and attachment of
this replica is checked against the database (window over, termination requested) and authz (the engineer's
token, user and support assignment, or the customer user's authorization, decided fresh), and cut or detached
at once when one no longer holds. The replica renews itself and its attachments at each check, and ends the
sessions of replicas that stopped renewing (crashed)."""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from services.connections.model import WindowState
from services.connections.relay import connectors, windows
from services.connections.relay.model import EndReason
from services.connections.relay.registry import Live, Registry
from services.connections.relay.settings import RelaySettings
from services.connections.relay.store import RelayStore
from services.kit import metrics, tracing
from services.kit import permissions as P
from services.kit.auth import Authorizer
from services.kit.clock import Clock
from services.kit.errors import AuthzUnavailable

logger = logging.getLogger(__name__)
RECHECK_DEADLINE_S = 1.0


class Enforcer:
    def __init__(self, registry: Registry, store: RelayStore, authorizer: Authorizer, clock: Clock,
                 settings: RelaySettings) -> None:
        self.registry = registry
        self.store = store
        self.authorizer = authorizer
        self.clock = clock
        self.settings = settings
        self._checks = 0

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.check_interval_s)
            try:
                await self.check_once()
            except Exception:  # noqa: BLE001 - a failed check is logged; the next one runs at the interval
                logger.exception("relay check failed; retrying in %.1fs", self.settings.check_interval_s)

    async def check_once(self) -> None:
        """One pass over this replica's attachments and live sessions."""
        if not self.registry.sessions and not self.registry.attachments:
            with tracing.quiet():  # an idle pass (the replica's heartbeat) makes no trace
                return await self._check()
        with tracing.background("relay re-check", {"remotesupport.sessions": len(self.registry.sessions),
                                                   "remotesupport.attachments": len(self.registry.attachments)}):
            await self._check()

    async def _check(self) -> None:
        now = self.clock.now()
        live = list(self.registry.sessions.values())
        attachments = list(self.registry.attachments.values())
        rows = await self.store.windows({a.window_id for a in attachments} | {s.window_id for s in live})
        for session in live:
            row = rows.get(session.window_id)
            closed = windows.not_open(row, now) if row is not None else (WindowState.CLOSED, "the window is gone")
            if closed is not None:
                session.cut(windows.end_reason(closed[0]), closed[1])
        for attachment in attachments:
            row = rows.get(attachment.window_id)
            closed = windows.not_open(row, now) if row is not None else (WindowState.CLOSED, "the window is gone")
            if closed is not None:
                connectors.detach(self.registry, attachment, "WINDOW_NOT_OPEN", closed[1],
                                  final=closed[0] is not WindowState.SCHEDULED)
        counts = {s.id: (s.up, s.down) for s in live if s.cut_reason is None}
        terminated = await self.store.renew(self.settings.relay_id, now,
                                            [a.window_id for a in self.registry.attachments.values()], counts)
        for session in live:
            if session.id in terminated:
                session.cut(EndReason.TERMINATED, "the customer terminated the session")
        await self._recheck([s for s in live if s.cut_reason is None])
        self._checks += 1
        if self._checks % max(1, round(self.settings.replica_ttl.total_seconds() / 2
                                       / self.settings.check_interval_s)) == 0:
            ended = await self.store.end_lost(now, now - self.settings.replica_ttl)
            if ended:
                logger.warning("ended %d session(s) of relay replicas that stopped", ended)
            metrics.sweep_done("relay_lost", ended, service="connections")

    async def _recheck(self, sessions: list[Live]) -> None:
        """Ask authz again about every session, one CheckBulk per token; a denial or no answer cuts."""
        by_token: dict[str, list[Live]] = defaultdict(list)
        for session in sessions:
            by_token[session.token].append(session)
        await asyncio.gather(*(self._recheck_token(token, group) for token, group in by_token.items()))

    async def _recheck_token(self, token: str, group: list[Live]) -> None:
        try:  # bounded below the authz deadline, so that one slow answer cannot stretch the 2 s bound
            decisions = await asyncio.wait_for(self.authorizer.check_bulk(
                token, [(P.RELAY_TUNNEL, s.resource) for s in group]), RECHECK_DEADLINE_S)
        except (AuthzUnavailable, asyncio.TimeoutError) as unavailable:
            why = str(unavailable) or "authorization service did not answer in time"
            for session in group:
                session.cut(EndReason.AUTHZ_UNAVAILABLE, f"{why} (the session is cut: fail closed)")
            return
        for session, decision in zip(group, decisions):
            if not decision.allowed:
                session.cut(EndReason.NOT_AUTHORIZED, decision.reason or "authz no longer allows this tunnel")
