"""The decision point: token -> principal -> grants (-> assignments) -> rules, from ONE statement per decision
(services.authz.store's decision read; under load on the engine, one for the decisions waiting at the same
moment, services.authz.overload). No KDF on this path; nothing is cached: every decision reads the rows as
committed."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os

from services.authz import policy
from services.authz.passwords import token_hash
from services.authz.store import Store
from services.kit import auth
from services.kit import permissions as P
from services.kit.clock import Clock, as_utc
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER

logger = logging.getLogger(__name__)

DENIED = "the bearer token is unknown, expired or revoked, or its user is disabled; log in again"
_NO_RULE = policy.Rule()
_NO_RESOURCE = auth.Resource()


def _tail(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name else ""


def attributes(resource: auth.Resource) -> policy.Attributes:
    return policy.Attributes(
        customer=_tail(resource.customer), installation=resource.installation, system=resource.system,
        owner=_tail(resource.owner), incident=resource.incident, target_user=_tail(resource.target_user),
    )


def needs_assignments(permissions: list[str]) -> bool:
    return any(policy.RULES.get(permission, _NO_RULE).assigned_engineer
               or policy.RULES.get(permission, _NO_RULE).assigned_in_customer for permission in permissions)


def _utc(value) -> dt.datetime:
    """A stored instant: a datetime (engine) or SQLite's text form (local read), naive meaning UTC."""
    return as_utc(dt.datetime.fromisoformat(value) if isinstance(value, str) else value)


def principal_of(rows, now: dt.datetime, with_assignments: bool):
    """(principal, grants, assignments) from the decision statement's rows; principal None when the token does
    not authenticate (unknown, revoked, expired, or its user disabled)."""
    if not rows:
        return None, [], []
    expires_at, revoked, user_id, kind, customer, disabled = rows[0][:6]
    if revoked or disabled or _utc(expires_at) <= now:
        return None, [], []
    principal = policy.Principal(user_id, kind, customer or "", bool(disabled))
    grants: list[policy.GrantView] = []
    assignments: list[policy.AssignmentView] = []
    if kind == CUSTOMER_USER:
        grants = [policy.GrantView(r[6], r[7], frozenset(filter(None, (r[8] or "").split(","))))
                  for r in rows if r[6] is not None]
    elif kind == SUPPORT_ENGINEER and with_assignments:
        assignments = [policy.AssignmentView(r[9], r[10]) for r in rows if r[9] is not None]
    return principal, grants, assignments


class DecisionService:
    """Implements the kit's Authorizer in-process; the Check RPC and authz's own methods use it."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def check(self, token: str, permission: str, resource: auth.Resource) -> auth.Decision:
        return (await self.check_bulk(token, [(permission, resource)]))[0]

    async def check_bulk(self, token: str, items: list[tuple[str, auth.Resource]]) -> list[auth.Decision]:
        with_assignments = needs_assignments([permission for permission, _ in items])
        rows = await self.store.decision_rows(with_assignments, token_hash(token)) if token else []
        return self.decide(rows, with_assignments, items)

    async def authorize_caller_and_read_subject(self, subject_token: str, permissions: list[str]) \
            -> tuple[list, bool]:
        """For Check and CheckBulk (whose policy is `handler_decides`): the calling service's token and the
        subject's are read in one statement, and the call is refused unless the caller holds authz.check,
        before anything about the request is answered (as the kit's interceptor would have required).
        Returns the subject's rows and whether they include its support assignments."""
        ctx = auth.current()
        with_assignments = needs_assignments(permissions)
        caller_rows, subject_rows = await self._rows_of_two(ctx.token, subject_token, with_assignments)
        ctx.settle(self.decide(caller_rows, False, [(P.CHECK, _NO_RESOURCE)])[0])
        return subject_rows, with_assignments

    async def authorize_caller_and_read_subjects(self, subject_tokens: list[str], permissions: list[str]) \
            -> tuple[dict[str, list], bool]:
        """As authorize_caller_and_read_subject, for the distinct tokens of a CheckBulk whose items name their
        own subjects (the checks of several calls travelling together): the caller's and the first subject's rows
        in one statement, the others' alongside (on the engine the waiting reads are one statement too).
        Returns each token's rows and whether they include support assignments."""
        ctx = auth.current()
        with_assignments = needs_assignments(permissions)
        first, *others = subject_tokens

        async def rows_of(token: str) -> list:
            return await self.store.decision_rows(with_assignments, token_hash(token)) if token else []
        (caller_rows, first_rows), *other_rows = await asyncio.gather(
            self._rows_of_two(ctx.token, first, with_assignments), *(rows_of(t) for t in others))
        ctx.settle(self.decide(caller_rows, False, [(P.CHECK, _NO_RESOURCE)])[0])
        return dict(zip(subject_tokens, [first_rows, *other_rows])), with_assignments

    async def _rows_of_two(self, first: str, second: str, with_assignments: bool) -> tuple[list, list]:
        """The decision rows of two tokens, in ONE statement; an empty token has no rows."""
        if not first or not second:
            return (await self.store.decision_rows(with_assignments, token_hash(first)) if first else [],
                    await self.store.decision_rows(with_assignments, token_hash(second)) if second else [])
        h1, h2 = token_hash(first), token_hash(second)
        rows = await self.store.decision_rows(with_assignments, h1, h2)
        return [r[1:] for r in rows if r[0] == h1], [r[1:] for r in rows if r[0] == h2]

    def decide(self, rows: list, with_assignments: bool, items: list[tuple[str, auth.Resource]]) \
            -> list[auth.Decision]:
        """The decisions of `items` for the principal the decision statement's `rows` describe."""
        principal, grants, assignments = principal_of(rows, self.clock.now(), with_assignments)
        if principal is None:
            return [auth.Decision(False, False, DENIED, os.urandom(16).hex())] * len(items)
        subject = auth.Subject(f"users/{principal.user_id}", principal.kind,
                               f"customers/{principal.customer}" if principal.customer else "")
        out = []
        seen: dict[auth.Resource, policy.Attributes] = {}  # equal resources (a reveal's read and reveal): once
        for permission, resource in items:
            attrs = seen.get(resource)
            if attrs is None:
                attrs = seen[resource] = attributes(resource)
            verdict = policy.decide(principal, permission, attrs, grants, assignments)
            decision_id = os.urandom(16).hex()
            if not verdict.allowed:
                logger.info("denied %s for %s: %s (decision %s)", permission, subject.user, verdict.reason,
                            decision_id)
            out.append(auth.Decision(verdict.allowed, True, verdict.reason, decision_id, verdict.required,
                                     subject, verdict.incidents))
        return out
