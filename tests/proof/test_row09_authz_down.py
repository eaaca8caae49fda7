"""Row 9: with authz killed (SIGKILL), answering with errors or malformed answers (a stand-in on its port), or
answering "allowed" only after the services' authz deadline, every call that needs a decision — to the depot,
the connections service and the gateway's own methods, through the gateway and straight to each — is refused;
none is let in. When the real authz is back, the services serve again on their own (nothing restarted), and
the time that takes is measured."""
from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.gateway.v1 import gateway_pb2 as gw
from tests.proof.fake_authz import MODES, FakeAuthz
from tests.proof.figures import size
from tests.proof.procs import AUTHZ_DEADLINE_S
from tests.proof.world import SYSTEM_USER, Actors, new_customer, planted, reason_of

ROW = 9
PER_MODE = size(16, 200)
RECOVERY_LIMIT_S = 30.0


def call_set(procs, actors: Actors) -> list[tuple[str, object]]:
    """Calls that succeed while authz is up: (label, thunk)."""
    c = new_customer(actors)
    entry = actors.entry(c.creator, c.system, secret=planted("row9"))
    calls = []
    for via in ("gateway", None):
        depot, conn = procs.stub("depot", via), procs.stub("connections", via)
        where = "via gateway" if via else "direct"
        calls += [
            (f"depot reveal {where}", lambda d=depot: d.RevealLogonData(
                dp.RevealLogonDataRequest(name=entry.name), metadata=c.creator.md, timeout=10)),
            (f"depot get {where}", lambda d=depot: d.GetLogonData(
                dp.GetLogonDataRequest(name=entry.name), metadata=c.creator.md, timeout=10)),
            (f"depot list {where}", lambda d=depot: d.ListLogonData(
                dp.ListLogonDataRequest(parent=c.system), metadata=c.edit_all.md, timeout=10)),
            (f"depot create {where}", lambda d=depot: d.CreateLogonData(dp.CreateLogonDataRequest(
                parent=c.system, secret=planted("row9c"), logon_data=dp.LogonData(
                    kind=SYSTEM_USER, client="001", user_name="U9", expire_time=actors.expire_in(days=1))),
                metadata=c.creator.md, timeout=10)),
            (f"connections get system {where}", lambda s=conn: s.GetSystem(
                cn.GetSystemRequest(name=c.system), metadata=c.ops.md, timeout=10)),
            (f"connections list incidents {where}", lambda s=conn: s.ListIncidents(
                cn.ListIncidentsRequest(parent=c.name), metadata=c.ops.md, timeout=10)),
            (f"connections list types {where}", lambda s=conn: s.ListConnectionTypes(
                cn.ListConnectionTypesRequest(), metadata=c.ops.md, timeout=10)),
        ]
    calls.append(("gateway system overview", lambda: procs.stub("gateway").GetSystemOverview(
        gw.GetSystemOverviewRequest(system=c.system), metadata=c.ops.md, timeout=10)))
    return calls


def fire(calls, count: int, workers: int = 8) -> dict[str, int]:
    """`count` calls round-robin over `calls`: code name -> how many."""
    chosen = list(itertools.islice(itertools.cycle(calls), count))

    def one(item) -> str:
        _, thunk = item
        try:
            thunk()
            return "OK"
        except grpc.RpcError as err:
            return f"{err.code().name} {reason_of(err)}".strip()

    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(one, chosen))
    return {code: codes.count(code) for code in sorted(set(codes))}


def recovery(calls, limit: float) -> float:
    """Seconds until every call succeeds again (inf if not within `limit`)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if fire(calls, len(calls)) == {"OK": len(calls)}:
            return time.monotonic() - started
        time.sleep(0.1)
    return float("inf")


def test_no_call_is_let_in_without_authz(procs, rec):
    actors = Actors(procs, via="gateway")
    calls = call_set(procs, actors)
    settled = recovery(calls, RECOVERY_LIMIT_S)  # the control: all of them work (after what ran before)
    assert settled < RECOVERY_LIMIT_S, fire(calls, len(calls))
    self_read = ("authz's own method via gateway", lambda: procs.stub("authz").GetUser(
        az.GetUserRequest(name="users/admin"), metadata=actors.admin.md, timeout=10))
    results: dict[str, dict[str, int]] = {}
    recoveries: list[float] = []
    authz = procs.address("authz")
    procs.kill("authz")
    try:
        results["killed (SIGKILL)"] = fire(calls + [self_read], PER_MODE)
    finally:
        procs.restart("authz")
    recoveries.append(recovery(calls, RECOVERY_LIMIT_S))
    procs.kill("authz")
    try:
        for mode in MODES:
            with FakeAuthz(authz, mode, delay_s=AUTHZ_DEADLINE_S + 1.5):
                results[f"{mode}: {MODES[mode]}"] = fire(calls, PER_MODE, workers=16 if mode == "slow" else 8)
    finally:
        procs.restart("authz")
    recoveries.append(recovery(calls, RECOVERY_LIMIT_S))
    total = sum(sum(codes.values()) for codes in results.values())
    allowed = sum(codes.get("OK", 0) for codes in results.values())
    passed = allowed == 0 and max(recoveries) <= RECOVERY_LIMIT_S and total == PER_MODE * len(results)
    rec(f"{total - allowed:,}/{total:,} calls refused, {allowed} allowed, over {len(results)} ways authz fails "
        f"(killed; {', '.join(MODES)}); back on their own after authz returned in "
        + " and ".join(f"{r:.1f} s" for r in recoveries), passed, results=results, recoveries=recoveries)
    assert passed, (results, recoveries)
    # an answer that is no decision is authz failing, not the caller's fault nor an unknown error
    garbage = results[f"garbage: {MODES['garbage']}"]
    assert set(garbage) <= {"UNAVAILABLE AUTHZ_UNAVAILABLE", "UNAVAILABLE DEPENDENCY_UNAVAILABLE"}, garbage

