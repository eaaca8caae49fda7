"""authz's units of work and queries: the only module that speaks SQL.

- `Store.read()` / `Store.write()`: one unit of work, its queries as the methods of `Queries`; a write commits
  when its block ends and rolls back if it raises (nothing half-written). An insert that meets an existing
  key raises DuplicateKey; `Store.upsert` runs a write once more after one. A write's checking reads and its
  writes are atomic: on SQLite it takes the database's write lock with its first statement (BEGIN IMMEDIATE),
  so writes run one after another; on PostgreSQL the reads that check lock their rows (`for_update`,
  `locked_user_admins`).
- `Store.decision_rows`: the decision point's ONE statement per decision (token -> principal -> grants
  (-> assignments)), indexed lookups only. On a SQLite file in WAL mode it runs with the stdlib sqlite3
  module on the calling thread, on a query-only connection to the same file (LocalSqliteReader: a WAL read of
  a few indexed pages takes microseconds and is not network I/O, DESIGN §6; ~50x the engine's throughput,
  bench/README.md); every statement is its own read transaction and sees every write committed before it
  began, by this process or any other. On PostgreSQL (and SQLite in memory, not in WAL mode, or while the
  local read is unavailable) it runs on the async engine in autocommit: one statement, one snapshot, one
  round trip - and under load one statement for the decisions waiting at the same moment
  (services.authz.overload: DECISION_SLOTS statements at once, each for up to DECISION_BATCH decisions)."""
from __future__ import annotations

import contextlib
import datetime as dt
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from sqlalchemy import bindparam, delete, null, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.authz.overload import ReadBatches
from services.authz.policy import USER_ADMIN
from services.authz.tables import (AssignmentRow, CodeRow, CustomerRow, GrantRequestRow, GrantRow,
                                   IdentityEventRow, IdentityHeadRow, PrincipalRow, TokenRow)
from services.kit.db import Database
from services.kit.localsqlite import LocalSqlite, LocalUnavailable, compile_sql

T = TypeVar("T")
# Decision statements on the engine at once (well inside the kit's pool of 10, beyond which the engine opens and
# closes a connection per use; the rest is left to units of work), decisions one of them reads at most, and
# decisions that may wait for one.
DECISION_SLOTS, DECISION_BATCH, DECISIONS_WAITING = 4, 64, 1024
DecisionKey = tuple[bool, str, "str | None"]  # (with_assignments, token hash, second token hash or None)


class DuplicateKey(Exception):
    """A write inserted a row whose key exists (created before, or by a concurrent writer)."""


class Queries:
    """The queries of one unit of work, on its session. Rows read in a write may be changed in place: the
    changes are written when the unit of work commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: object) -> None:
        """Insert `row` (any row of services.authz.tables) at commit."""
        self.session.add(row)

    async def flush(self) -> None:
        """Send the pending inserts now (a duplicate key raises here, inside the unit of work)."""
        await self.session.flush()

    # --- customers and principals ------------------------------------------------------------------------
    async def customer(self, number: str) -> CustomerRow | None:
        return await self.session.get(CustomerRow, number)

    async def principal(self, user_id: str, *, for_update: bool = False) -> PrincipalRow | None:
        return await self.session.get(PrincipalRow, user_id, with_for_update=for_update)

    async def principals(self, customer: str, after: str | None, limit: int) -> list[PrincipalRow]:
        """Up to `limit` principals ordered by user ID, after `after` (None: from the first); of one customer,
        or of all with `customer` empty."""
        query = select(PrincipalRow).order_by(PrincipalRow.user_id).limit(limit)
        if after is not None:
            query = query.where(PrincipalRow.user_id > after)
        if customer:
            query = query.where(PrincipalRow.customer == customer)
        return list((await self.session.execute(query)).scalars())

    async def locked_user_admins(self, customer: str) -> set[str]:
        """The user IDs of the customer's enabled user administrators (customer users holding USER_ADMIN for
        the whole customer, not for some installations only), read after locking the customer's row (FOR NO
        KEY UPDATE on PostgreSQL, which leaves inserts that reference the row free; in a SQLite write the
        database's write lock is held already): changes that may take one away run one after another, each
        seeing what the one before it committed."""
        await self.session.execute(select(CustomerRow.number).where(CustomerRow.number == customer)
                                   .with_for_update(key_share=True))
        query = (select(PrincipalRow.user_id).join(GrantRow, GrantRow.user_id == PrincipalRow.user_id)
                 .where(PrincipalRow.customer == customer, PrincipalRow.disabled.is_(False),
                        GrantRow.authorization == USER_ADMIN, GrantRow.installations == ""))
        return set((await self.session.execute(query)).scalars())

    async def user_admin_rows(self, customer: str) -> list[PrincipalRow]:
        """The customer's enabled user administrators (USER_ADMIN for the whole customer), to notify."""
        query = (select(PrincipalRow).join(GrantRow, GrantRow.user_id == PrincipalRow.user_id)
                 .where(PrincipalRow.customer == customer, PrincipalRow.disabled.is_(False),
                        GrantRow.authorization == USER_ADMIN, GrantRow.installations == "")
                 .order_by(PrincipalRow.user_id))
        return list((await self.session.execute(query)).scalars())

    async def email_taken(self, key: str, other_than: str = "") -> bool:
        """Whether another principal than `other_than` has the address key `key`."""
        query = select(PrincipalRow.user_id).where(PrincipalRow.email_key == key, PrincipalRow.user_id != other_than)
        return (await self.session.execute(query.limit(1))).first() is not None

    async def delete_principal(self, user_id: str) -> None:
        await self.session.execute(delete(PrincipalRow).where(PrincipalRow.user_id == user_id))

    # --- one-time codes ----------------------------------------------------------------------------------
    async def code(self, user_id: str, *, for_update: bool = False) -> CodeRow | None:
        return await self.session.get(CodeRow, user_id, with_for_update=for_update)

    async def delete_code(self, user_id: str) -> None:
        await self.session.execute(delete(CodeRow).where(CodeRow.user_id == user_id))

    async def count_failed_login(self, user_id: str) -> int:
        """Add one to the user's failed logins in a row (atomically: concurrent attempts all count); the new
        count."""
        return (await self.session.execute(
            update(PrincipalRow).where(PrincipalRow.user_id == user_id)
            .values(failed_logins=PrincipalRow.failed_logins + 1)
            .returning(PrincipalRow.failed_logins))).scalar_one()

    async def set_login_lock(self, user_id: str, until: dt.datetime | None) -> None:
        """Start the count of failed logins again, and lock the user until `until` (None: not locked)."""
        await self.session.execute(update(PrincipalRow).where(PrincipalRow.user_id == user_id)
                                   .values(failed_logins=0, locked_until=until))

    # --- tokens ------------------------------------------------------------------------------------------
    async def token(self, token_hash: str) -> TokenRow | None:
        return await self.session.get(TokenRow, token_hash)

    async def revoke_token(self, token_hash: str) -> None:
        await self.session.execute(update(TokenRow).where(TokenRow.token_hash == token_hash).values(revoked=True))

    async def revoke_tokens_of(self, user_id: str) -> None:
        await self.session.execute(update(TokenRow).where(TokenRow.user_id == user_id).values(revoked=True))

    # --- grants and support assignments ------------------------------------------------------------------
    async def authorizations_of(self, user_ids: list[str]) -> dict[str, set[str]]:
        """The authorizations each user holds now (active grants), by user id."""
        out: dict[str, set[str]] = {}
        if user_ids:
            for user_id, authorization in await self.session.execute(
                    select(GrantRow.user_id, GrantRow.authorization).where(GrantRow.user_id.in_(user_ids))):
                out.setdefault(user_id, set()).add(authorization)
        return out

    async def grant(self, user_id: str, authorization: str) -> GrantRow | None:
        return await self.session.get(GrantRow, (user_id, authorization))

    async def grants(self, user_id: str, after: str | None, limit: int) -> list[GrantRow]:
        """Up to `limit` grants of the user ordered by authorization name, after `after` (None: from the first)."""
        query = select(GrantRow).where(GrantRow.user_id == user_id).order_by(GrantRow.authorization).limit(limit)
        if after is not None:
            query = query.where(GrantRow.authorization > after)
        return list((await self.session.execute(query)).scalars())

    async def delete_grant(self, user_id: str, authorization: str) -> bool:
        """Whether there was such a grant."""
        result = await self.session.execute(
            delete(GrantRow).where(GrantRow.user_id == user_id, GrantRow.authorization == authorization))
        return result.rowcount > 0

    async def grant_request(self, user_id: str, authorization: str) -> GrantRequestRow | None:
        return await self.session.get(GrantRequestRow, (user_id, authorization), with_for_update=True)

    async def grant_requests(self, user_id: str) -> list[GrantRequestRow]:
        query = select(GrantRequestRow).where(GrantRequestRow.user_id == user_id)
        return list((await self.session.execute(query)).scalars())

    async def delete_grant_request(self, user_id: str, authorization: str) -> bool:
        """Whether there was such a request."""
        result = await self.session.execute(delete(GrantRequestRow).where(
            GrantRequestRow.user_id == user_id, GrantRequestRow.authorization == authorization))
        return result.rowcount > 0

    # --- identity logs -----------------------------------------------------------------------------------
    async def identity_head(self, customer: str, *, lock: bool = True) -> IdentityHeadRow:
        """The log's head row, locked for the append that follows (every log has one from its start)."""
        row = await self.session.get(IdentityHeadRow, customer, with_for_update=lock)
        if row is None:  # a customer created before its log existed: its log starts now
            row = IdentityHeadRow(customer=customer, sequence=0, hash="0" * 64)
            self.session.add(row)
        return row

    async def identity_events(self, customer: str, after: int, limit: int) -> list[IdentityEventRow]:
        """Up to `limit` events of the log after sequence `after`, in order."""
        query = (select(IdentityEventRow).where(IdentityEventRow.customer == customer,
                                                IdentityEventRow.sequence > after)
                 .order_by(IdentityEventRow.sequence).limit(limit))
        return list((await self.session.execute(query)).scalars())

    async def assignment(self, incident: str, *, for_update: bool = False) -> AssignmentRow | None:
        return await self.session.get(AssignmentRow, incident, with_for_update=for_update)

    async def delete_assignment(self, incident: str) -> None:
        await self.session.execute(delete(AssignmentRow).where(AssignmentRow.incident == incident))


# --- the decision statement --------------------------------------------------------------------------------
def decision_statement(with_assignments: bool, hashes: str = "one"):
    """Rows of (expires_at, revoked, user_id, kind, customer, disabled, authorization, grant customer,
    installations, incident, system) for the token hash `:h`: one per grant of the token's user (one with
    NULL grant columns when it has none), and with `with_assignments` one more per support assignment of it.
    No row: no such token. With `hashes` "pair", for the hashes `:h` and `:h2` at once, and with "many", for
    the list `:hs`: each row led by its token hash."""
    token, principal = TokenRow.__table__, PrincipalRow.__table__
    grant, assignment = GrantRow.__table__, AssignmentRow.__table__
    hashed = bindparam("h", type_=token.c.token_hash.type)
    if hashes == "one":
        which = token.c.token_hash == hashed
    elif hashes == "pair":
        which = token.c.token_hash.in_([hashed, bindparam("h2", type_=token.c.token_hash.type)])
    else:
        which = token.c.token_hash.in_(bindparam("hs", expanding=True))
    head = (token.c.expires_at, token.c.revoked, principal.c.user_id, principal.c.kind, principal.c.customer,
            principal.c.disabled)
    if hashes != "one":
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


LOCAL_STATEMENTS = [(flag, hashes) for flag in (False, True) for hashes in ("one", "pair")]
_INCIDENT = 10  # the incident column of a "many" row (None on a grant row)


def _params(hashed: str, hashed2: str | None) -> dict[str, str]:
    return {"h": hashed} if hashed2 is None else {"h": hashed, "h2": hashed2}


def rows_of_keys(rows: list, keys: list[DecisionKey]) -> dict[DecisionKey, list]:
    """The rows of a "many" statement (read with assignments if any key wanted them) as each key's own
    statement would have given them: without the leading hash for one token, with it for a pair."""
    by_hash: dict[str, list] = {}
    for row in rows:
        by_hash.setdefault(row[0], []).append(row)
    out = {}
    for key in keys:
        with_assignments, hashed, hashed2 = key
        mine = [r for h in dict.fromkeys((hashed, hashed2)) if h is not None for r in by_hash.get(h, ())]
        if not with_assignments:
            mine = [r for r in mine if r[_INCIDENT] is None]
        out[key] = [tuple(r[1:]) for r in mine] if hashed2 is None else [tuple(r) for r in mine]
    return out


class LocalSqliteReader(LocalSqlite):
    """The decision statement on the kit's query-only local connection to the service's own database file."""

    def __init__(self, path: str, writer_pragmas: tuple[str, ...] = ()) -> None:
        super().__init__(path, writer_pragmas)
        self.sql = {key: compile_sql(decision_statement(*key)) for key in LOCAL_STATEMENTS}

    def rows(self, with_assignments: bool, hashed: str, hashed2: str | None = None) -> list:
        """The statement's rows (for two hashes at once with `hashed2`); LocalUnavailable when the engine must
        read them."""
        return self.read(self.sql[(with_assignments, "one" if hashed2 is None else "pair")], _params(hashed, hashed2))


# --- the store -------------------------------------------------------------------------------------------
class Store:
    """authz's database: its units of work and the decision read."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.local = LocalSqliteReader.for_database(db)  # None: every decision is read through the engine
        self._batch_statements = {flag: decision_statement(flag, "many") for flag in (False, True)}
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._decision_reads = ReadBatches(self._engine_decision_rows, DECISION_SLOTS, DECISION_BATCH,
                                           DECISIONS_WAITING)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Queries]:
        """A unit of work that only reads."""
        async with self.db.sessions() as session:
            yield Queries(session)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Queries]:
        """A unit of work: committed when the block ends, rolled back if it raises; atomic with the reads it
        checks (see the module docstring)."""
        try:
            async with self.db.unit_of_work() as session:
                if self.db.sqlite:
                    await session.execute(text("BEGIN IMMEDIATE"))
                yield Queries(session)
        except IntegrityError:
            raise DuplicateKey() from None

    async def upsert(self, work: Callable[[Queries], Awaitable[T]]) -> T:
        """`work` in a write; if a concurrent writer inserted the same row first, once more (now an update)."""
        try:
            async with self.write() as queries:
                return await work(queries)
        except DuplicateKey:
            async with self.write() as queries:
                return await work(queries)

    async def decision_rows(self, with_assignments: bool, hashed: str, hashed2: str | None = None) -> list:
        """The decision statement's rows for the token hash `hashed` (and `hashed2`, in the same statement)."""
        if self.local is not None:
            with contextlib.suppress(LocalUnavailable):  # the engine reads them instead
                return self.local.rows(with_assignments, hashed, hashed2)
        return await self._decision_reads.get((with_assignments, hashed, hashed2))

    async def _engine_decision_rows(self, keys: list[DecisionKey]) -> dict[DecisionKey, list]:
        """The decision rows of `keys`, in one statement on the engine."""
        with_assignments = any(key[0] for key in keys)
        hashes = sorted({h for _, hashed, hashed2 in keys for h in (hashed, hashed2) if h is not None})
        async with self._autocommit.connect() as conn:
            rows = (await conn.execute(self._batch_statements[with_assignments], {"hs": hashes})).all()
        return rows_of_keys(rows, keys)

    async def close(self) -> None:
        if self.local is not None:
            self.local.close()
        await self.db.close()
