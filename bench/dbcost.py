"""Where an authz decision's time goes, in-process (no gRPC, no other process): authz's own DecisionService on
its own SQLite database through the kit's Database (SQLAlchemy asyncio + aiosqlite), profiled with pyinstrument,
with the SQL statements and aiosqlite thread round trips counted per decision; then the same two lookups with
the stdlib sqlite3 module on the calling thread, as the data-access floor. Both with few and with many
principals stored. Evidence for bench/README.md; not part of `make bench`'s table.

    python -m bench.dbcost [--decisions 3000] [--principals 100000]"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import aiosqlite.core
from sqlalchemy import event

from bench import suite
from services.authz import grants, policy, sessions, users
from services.authz.passwords import token_hash
from services.kit import app as kit_app
from services.kit import permissions as P
from services.kit.auth import Resource
from services.kit.principals import CUSTOMER_USER, PLATFORM_ADMIN
from services.kit.clients import TokenFile
from services.kit.clock import SystemClock
from services.kit.config import ServiceConfig
from services.kit.mail import Mailer, SmtpSettings
from services.kit.mailsink import Sink

CUSTOMER, USER, USER_ADMIN = "1000000001", "S0000000001", "S0000000002"
CODE_TTL = dt.timedelta(days=1)
Q_PRINCIPAL = ("SELECT tokens.expires_at, tokens.revoked, principals.user_id, principals.kind, principals.customer, "
               "principals.disabled FROM tokens JOIN principals ON principals.user_id = tokens.user_id "
               "WHERE tokens.token_hash = ?")
Q_GRANTS = "SELECT authorization, customer, installations FROM grants WHERE user_id = ?"


class Counters:
    def __init__(self) -> None:
        self.sql = 0
        self.hops = 0


def count_hops(counters: Counters) -> None:
    """Count every call aiosqlite hands to its worker thread (one queue put + one loop wake-up each)."""
    original = aiosqlite.core.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        counters.hops += 1
        return await original(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = counted


async def via_service(decisions, token: str, resource: Resource, n: int, counters: Counters) -> dict:
    for _ in range(50):  # warm the pool, caches and compiled statements
        await decisions.check(token, P.LOGON_REVEAL, resource)
    sql0, hops0 = counters.sql, counters.hops
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        decision = await decisions.check(token, P.LOGON_REVEAL, resource)
        assert decision.allowed, decision.reason
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"cpu_us": cpu / n * 1e6, "wall_us": wall / n * 1e6, "sql_per_decision": (counters.sql - sql0) / n,
            "aiosqlite_hops_per_decision": (counters.hops - hops0) / n}


def via_sqlite3(path: Path, token: str, n: int) -> dict:
    conn = sqlite3.connect(path)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):
        conn.execute(f"PRAGMA {pragma}")
    attrs = policy.Attributes(customer=CUSTOMER, owner=USER)

    def decide() -> policy.Verdict:
        row = conn.execute(Q_PRINCIPAL, (token_hash(token),)).fetchone()
        principal = policy.Principal(row[2], row[3], row[4] or "", bool(row[5]))
        grants = [policy.GrantView(a, c, frozenset(filter(None, i.split(","))))
                  for a, c, i in conn.execute(Q_GRANTS, (principal.user_id,))]
        return policy.decide(principal, P.LOGON_REVEAL, attrs, grants, [])

    for _ in range(50):
        decide()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        assert decide().allowed
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    conn.close()
    return {"cpu_us": cpu / n * 1e6, "wall_us": wall / n * 1e6}


def via_sqlalchemy_sync(path: Path, token: str, n: int) -> dict:
    """DecisionService's own ORM statements on a synchronous SQLAlchemy Session (pysqlite, no worker thread)."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from services.authz.tables import GrantRow, PrincipalRow, TokenRow
    engine = create_engine(f"sqlite:///{path}")
    attrs = policy.Attributes(customer=CUSTOMER, owner=USER)

    def decide() -> policy.Verdict:
        with Session(engine) as session:
            row = session.execute(
                select(TokenRow.expires_at, TokenRow.revoked, PrincipalRow.user_id, PrincipalRow.kind,
                       PrincipalRow.customer, PrincipalRow.disabled)
                .join(PrincipalRow, PrincipalRow.user_id == TokenRow.user_id)
                .where(TokenRow.token_hash == token_hash(token))).first()
            principal = policy.Principal(row.user_id, row.kind, row.customer or "", row.disabled)
            grants = [policy.GrantView(g.authorization, g.customer, frozenset(filter(None, g.installations.split(","))))
                      for g in session.execute(select(GrantRow).where(GrantRow.user_id == principal.user_id)).scalars()]
        return policy.decide(principal, P.LOGON_REVEAL, attrs, grants, [])

    for _ in range(50):
        decide()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        assert decide().allowed
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    engine.dispose()
    return {"cpu_us": cpu / n * 1e6, "wall_us": wall / n * 1e6}


async def main(decisions_n: int, many: int, out: Path) -> None:
    from pyinstrument import Profiler

    work = Path(tempfile.mkdtemp(prefix="rs-dbcost-"))
    os.environ.setdefault("RS_AUTHZ_KDF_LOG2_N", "10")
    db_path = work / "authz.db"
    config = ServiceConfig(service="authz", port=0, database_url=f"sqlite:///{db_path}", var_dir=work,
                           service_token_file=work / "secrets" / "authz.token")
    clock = SystemClock()
    sink = Sink(work / "mail").start()  # CreateUser mails an enrollment code (unused: the token is minted below)
    mail = SmtpSettings(port=sink.port)
    from services.authz.server import build
    authz = await build(kit_app.Deps(config, clock, TokenFile(config.service_token_file)), mail=mail)
    store, decisions = authz.store, authz.authorizer
    db = store.db
    counters = Counters()
    event.listen(db.engine.sync_engine, "before_cursor_execute",
                 lambda *_a, **_k: setattr(counters, "sql", counters.sql + 1))
    count_hops(counters)
    # as a customer makes it: the platform admin creates the customer and its user administrator, who creates the
    # user and grants EDIT_MY_LOGIN_DATA
    mailer, admin = Mailer(mail), users.Actor("admin", PLATFORM_ADMIN)
    await users.create_customer(store, clock, admin, CUSTOMER, "Bench customer")
    await users.create_user(store, clock, mailer, CODE_TTL, admin, user_id=USER_ADMIN, kind=CUSTOMER_USER,
                            customer=CUSTOMER, display_name="Bench user administrator",
                            email="admin@bench.example.com", initial_password="")
    await grants.grant(store, clock, mailer, admin, USER_ADMIN, policy.USER_ADMIN, [])
    user_admin = users.Actor(USER_ADMIN, CUSTOMER_USER)
    await users.create_user(store, clock, mailer, CODE_TTL, user_admin, user_id=USER, kind=CUSTOMER_USER,
                            customer=CUSTOMER, display_name="Bench user", email="user@bench.example.com",
                            initial_password="")
    await grants.grant(store, clock, mailer, user_admin, USER, policy.EDIT_MY, [])
    token, _ = await sessions.mint_token(store, clock, USER, dt.timedelta(hours=2))
    resource = Resource(customer=f"customers/{CUSTOMER}", system=f"customers/{CUSTOMER}/systems/1",
                        owner=f"users/{USER}")
    lines = [f"# authz decision cost, in-process ({decisions_n} sequential decisions each)", ""]
    for label in ("few", "many"):
        if label == "many":
            suite.bulk_principals(db_path, CUSTOMER, many)
        principals = suite.count_principals(db_path)
        service = await via_service(decisions, token, resource, decisions_n, counters)
        floor = via_sqlite3(db_path, token, decisions_n)
        orm_sync = via_sqlalchemy_sync(db_path, token, decisions_n)
        lines += [f"## {principals:,} principals", "",
                  f"- DecisionService.check (SQLAlchemy asyncio + aiosqlite): {service['cpu_us']:.0f} µs CPU, "
                  f"{service['wall_us']:.0f} µs wall per decision; {service['sql_per_decision']:.1f} SQL statements and "
                  f"{service['aiosqlite_hops_per_decision']:.1f} aiosqlite thread round trips per decision",
                  f"- the same two lookups + policy.decide with stdlib sqlite3 on the calling thread: "
                  f"{floor['cpu_us']:.0f} µs CPU, {floor['wall_us']:.0f} µs wall per decision "
                  f"({service['cpu_us'] / floor['cpu_us']:.1f}× less CPU)",
                  f"- the same ORM statements on a synchronous SQLAlchemy Session (pysqlite, no worker thread): "
                  f"{orm_sync['cpu_us']:.0f} µs CPU, {orm_sync['wall_us']:.0f} µs wall per decision", ""]
        print("\n".join(lines[-5:]), flush=True)
    profiler = Profiler(async_mode="enabled", interval=0.0005)
    profiler.start()
    for _ in range(min(decisions_n, 1000)):
        await decisions.check(token, P.LOGON_REVEAL, resource)
    profiler.stop()
    # paths relative to the repository: the report names no folder of the machine it ran on
    text = profiler.output_text(unicode=True, color=False, show_all=False).replace(
        str(Path(__file__).resolve().parents[1]) + "/", "")
    lines += ["## pyinstrument: 1,000 DecisionService.check calls (event-loop thread)", "", "```", text.strip(), "```", ""]
    await authz.stop()
    sink.stop()
    shutil.rmtree(work, ignore_errors=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written: {out}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--principals", type=int, default=100_000)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "dbcost.md"))
    args = parser.parse_args()
    asyncio.run(main(args.decisions, args.principals, Path(args.out)))


if __name__ == "__main__":
    cli()
