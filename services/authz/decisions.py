"""The decision point: token -> principal -> rules. Indexed lookups only; no KDF on this path."""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import select

from services.authz import policy
from services.authz.passwords import token_hash
from services.authz.tables import AssignmentRow, GrantRow, PrincipalRow, TokenRow
from services.kit import auth
from services.kit.clock import Clock, as_utc
from services.kit.db import Database

logger = logging.getLogger(__name__)


def _tail(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name else ""


def attributes(resource: auth.Resource) -> policy.Attributes:
    return policy.Attributes(
        customer=_tail(resource.customer), installation=resource.installation, system=resource.system,
        owner=_tail(resource.owner), incident=resource.incident, target_user=_tail(resource.target_user),
    )


class DecisionService:
    """Implements the kit's Authorizer in-process; the Check RPC and authz's own methods use it."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def principal(self, session, token: str) -> policy.Principal | None:
        row = (await session.execute(
            select(TokenRow.expires_at, TokenRow.revoked, PrincipalRow.user_id, PrincipalRow.kind,
                   PrincipalRow.customer, PrincipalRow.disabled)
            .join(PrincipalRow, PrincipalRow.user_id == TokenRow.user_id)
            .where(TokenRow.token_hash == token_hash(token))
        )).first()
        if row is None or row.revoked or row.disabled or as_utc(row.expires_at) <= self.clock.now():
            return None
        return policy.Principal(row.user_id, row.kind, row.customer or "", row.disabled)

    async def check(self, token: str, permission: str, resource: auth.Resource) -> auth.Decision:
        return (await self.check_bulk(token, [(permission, resource)]))[0]

    async def check_bulk(self, token: str, items: list[tuple[str, auth.Resource]]) -> list[auth.Decision]:
        async with self.db.sessions() as session:
            principal = await self.principal(session, token) if token else None
            if principal is None:
                denied = auth.Decision(False, False, "the bearer token is unknown, expired or revoked, "
                                                     "or its user is disabled; log in again", uuid.uuid4().hex)
                return [denied] * len(items)
            grants: list[policy.GrantView] = []
            assignments: list[policy.AssignmentView] = []
            if principal.kind == policy.CUSTOMER_USER:
                grants = [policy.GrantView(g.authorization, g.customer,
                                           frozenset(filter(None, g.installations.split(","))))
                          for g in (await session.execute(
                              select(GrantRow).where(GrantRow.user_id == principal.user_id))).scalars()]
            elif principal.kind == policy.SUPPORT_ENGINEER and any(
                    policy.RULES.get(p, policy.Rule()).assigned_engineer for p, _ in items):
                assignments = [policy.AssignmentView(a.incident, a.system) for a in (await session.execute(
                    select(AssignmentRow).where(AssignmentRow.engineer == principal.user_id))).scalars()]
        subject = auth.Subject(f"users/{principal.user_id}", principal.kind,
                               f"customers/{principal.customer}" if principal.customer else "")
        out = []
        for permission, resource in items:
            verdict = policy.decide(principal, permission, attributes(resource), grants, assignments)
            decision_id = uuid.uuid4().hex
            if not verdict.allowed:
                logger.info("denied %s for %s: %s (decision %s)", permission, subject.user, verdict.reason,
                            decision_id)
            out.append(auth.Decision(verdict.allowed, True, verdict.reason, decision_id, verdict.required,
                                     subject, verdict.incidents))
        return out
