"""The decision point: token -> principal -> grants (-> assignments) -> rules, in ONE statement per decision.
Indexed lookups only; no KDF on this path; nothing is cached: every decision reads the rows as committed.

Where the statement runs:
- SQLite in WAL mode (a local file, as the service's own engine keeps it): with the stdlib sqlite3 module on
  the calling thread (the event loop), on a query-only connection to the same file. A WAL read of a few
  indexed pages takes microseconds and is not network I/O (DESIGN §6); every statement is its own read
  transaction and sees every write committed before it began, by this process or any other.
- PostgreSQL (and SQLite in memory or not in WAL mode, or when a local read fails): on the service's async
  engine, in autocommit: one statement, one snapshot, one round trip."""
from __future__ import annotations

import datetime as dt
import logging
import os

from sqlalchemy import bindparam, null, select

from services.authz import policy
from services.authz.passwords import token_hash
from services.authz.tables import AssignmentRow, GrantRow, PrincipalRow, TokenRow
from services.kit import auth
from services.kit.clock import Clock, as_utc
from services.kit.db import Database
from services.kit.localsqlite import FALLBACK, LocalSqlite, compile_sql

logger = logging.getLogger(__name__)

DENIED = "the bearer token is unknown, expired or revoked, or its user is disabled; log in again"
_NO_RULE = policy.Rule()


def _tail(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name else ""


def attributes(resource: auth.Resource) -> policy.Attributes:
    return policy.Attributes(
        customer=_tail(resource.customer), installation=resource.installation, system=resource.system,
        owner=_tail(resource.owner), incident=resource.incident, target_user=_tail(resource.target_user),
    )


# --- the statement -------------------------------------------------------------------------------------
def statement(with_assignments: bool, pair: bool = False):
    """Rows of (expires_at, revoked, user_id, kind, customer, disabled, authorization, grant customer,
    installations, incident, system) for the token hash `:h`: one per grant of the token's user (one with
    NULL grant columns when it has none), and with `with_assignments` one more per support assignment of it.
    No row: no such token. With `pair`, for the hashes `:h` and `:h2` at once, each row led by its token hash."""
    token, principal = TokenRow.__table__, PrincipalRow.__table__
    grant, assignment = GrantRow.__table__, AssignmentRow.__table__
    hashed = bindparam("h", type_=token.c.token_hash.type)
    which = token.c.token_hash.in_([hashed, bindparam("h2", type_=token.c.token_hash.type)]) if pair \
        else token.c.token_hash == hashed
    head = (token.c.expires_at, token.c.revoked, principal.c.user_id, principal.c.kind, principal.c.customer,
            principal.c.disabled)
    if pair:
        head = (token.c.token_hash, *head)
    owner = token.join(principal, principal.c.user_id == token.c.user_id)
    grants = (select(*head, grant.c.authorization, grant.c.customer.label("grant_customer"),
                     grant.c.installations, null().label("incident"), null().label("system"))
              .select_from(owner.outerjoin(grant, grant.c.user_id == principal.c.user_id))
              .where(which))
    if not with_assignments:
        return grants
    assignments = (select(*head, null(), null(), null(), assignment.c.incident, assignment.c.system)
                   .select_from(owner.join(assignment, assignment.c.engineer == principal.c.user_id))
                   .where(which))
    return grants.union_all(assignments)


STATEMENTS = [(flag, pair) for flag in (False, True) for pair in (False, True)]


def needs_assignments(items: list[tuple[str, auth.Resource]]) -> bool:
    return any(policy.RULES.get(permission, _NO_RULE).assigned_engineer for permission, _ in items)


def _utc(value) -> dt.datetime:
    """A stored instant: a datetime (engine) or SQLite's text form (local read), naive meaning UTC."""
    return as_utc(dt.datetime.fromisoformat(value) if isinstance(value, str) else value)


def principal_of(rows, now: dt.datetime, with_assignments: bool):
    """(principal, grants, assignments) from the statement's rows; principal None when the token does not
    authenticate (unknown, revoked, expired, or its user disabled)."""
    if not rows:
        return None, [], []
    expires_at, revoked, user_id, kind, customer, disabled = rows[0][:6]
    if revoked or disabled or _utc(expires_at) <= now:
        return None, [], []
    principal = policy.Principal(user_id, kind, customer or "", bool(disabled))
    grants: list[policy.GrantView] = []
    assignments: list[policy.AssignmentView] = []
    if kind == policy.CUSTOMER_USER:
        grants = [policy.GrantView(r[6], r[7], frozenset(filter(None, (r[8] or "").split(","))))
                  for r in rows if r[6] is not None]
    elif kind == policy.SUPPORT_ENGINEER and with_assignments:
        assignments = [policy.AssignmentView(r[9], r[10]) for r in rows if r[9] is not None]
    return principal, grants, assignments


# --- the local read (SQLite files in WAL mode) -----------------------------------------------------------
class LocalSqliteReader(LocalSqlite):
    """The statement on the kit's query-only local connection to the service's own database file."""

    def __init__(self, path: str, writer_pragmas: tuple[str, ...] = ()) -> None:
        super().__init__(path, writer_pragmas)
        self.sql = {key: compile_sql(statement(*key)) for key in STATEMENTS}

    def rows(self, with_assignments: bool, hashed: str, hashed2: str | None = None) -> list | None:
        """The statement's rows (for two hashes at once with `hashed2`), or None when this decision must be read
        through the engine instead."""
        if hashed2 is None:
            rows = self.read(self.sql[(with_assignments, False)], {"h": hashed})
        else:
            rows = self.read(self.sql[(with_assignments, True)], {"h": hashed, "h2": hashed2})
        return None if rows is FALLBACK else rows


# --- the service ---------------------------------------------------------------------------------------
class DecisionService:
    """Implements the kit's Authorizer in-process; the Check RPC and authz's own methods use it."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._statements = {key: statement(*key) for key in STATEMENTS}
        self._engine = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._local = LocalSqliteReader.for_database(db)

    def close(self) -> None:
        if self._local is not None:
            self._local.close()

    async def rows(self, token: str, with_assignments: bool) -> list:
        hashed = token_hash(token)
        if self._local is not None:
            rows = self._local.rows(with_assignments, hashed)
            if rows is not None:
                return rows
        async with self._engine.connect() as conn:
            return (await conn.execute(self._statements[(with_assignments, False)], {"h": hashed})).all()

    async def rows_of_two(self, first: str, second: str, with_assignments: bool) -> tuple[list, list]:
        """The statement's rows for two tokens, read in ONE statement (authz's own Check: the calling
        service's token and the subject's); an empty token has no rows."""
        if not first or not second:
            return (await self.rows(first, with_assignments) if first else [],
                    await self.rows(second, with_assignments) if second else [])
        h1, h2 = token_hash(first), token_hash(second)
        rows = self._local.rows(with_assignments, h1, h2) if self._local is not None else None
        if rows is None:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(self._statements[(with_assignments, True)], {"h": h1, "h2": h2})).all()
        return [r[1:] for r in rows if r[0] == h1], [r[1:] for r in rows if r[0] == h2]

    async def check(self, token: str, permission: str, resource: auth.Resource) -> auth.Decision:
        return (await self.check_bulk(token, [(permission, resource)]))[0]

    async def check_bulk(self, token: str, items: list[tuple[str, auth.Resource]]) -> list[auth.Decision]:
        with_assignments = needs_assignments(items)
        rows = await self.rows(token, with_assignments) if token else []
        return self.decide(rows, with_assignments, items)

    def decide(self, rows: list, with_assignments: bool, items: list[tuple[str, auth.Resource]]) \
            -> list[auth.Decision]:
        """The decisions of `items` for the principal the statement's `rows` describe."""
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
