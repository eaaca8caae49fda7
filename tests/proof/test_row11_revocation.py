"""Row 11: once a change that takes access away has committed — an authorization revoked, a session logged
out, a user disabled, a password reset by its user administrator or changed by the user itself, a support
assignment ended (the engineer hands the incident back, or it is given to another engineer) — not one call of
that principal succeeds any more: the same calls are
retried again and again, and calls hammered concurrently while the change commits are only ever allowed if
they started before it returned."""
from __future__ import annotations

import itertools
import threading
import time

import grpc

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from tests.proof.figures import size
from tests.proof.world import Principal, new_customer, outcome, planted

ROW = 11
RETRIES = size(50, 1000)
HAMMERS = 2


def calls_of(actors, who: Principal, c, entry) -> list:
    depot, conn = actors.depot, actors.conn
    update = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=entry.name, notes=""))
    update.update_mask.paths.append("notes")
    return [
        lambda: depot.RevealLogonData(dp.RevealLogonDataRequest(name=entry.name), metadata=who.md, timeout=10),
        lambda: depot.GetLogonData(dp.GetLogonDataRequest(name=entry.name), metadata=who.md, timeout=10),
        lambda: depot.ListLogonData(dp.ListLogonDataRequest(parent=c.system), metadata=who.md, timeout=10),
        lambda: depot.UpdateLogonData(update, metadata=who.md, timeout=10),
        lambda: conn.GetSystem(cn.GetSystemRequest(name=c.system), metadata=who.md, timeout=10),
    ]


def hammer_and_retry(calls, change) -> dict:
    """Hammer `calls` from threads while `change()` runs, then retry them RETRIES times. A call counts against
    the change if it succeeded although it started after the change returned."""
    for call in calls:  # the control: all of them work before the change
        call()
    stop = threading.Event()
    committed: list[float] = []
    late_successes: list[str] = []
    hammered = [0]
    lock = threading.Lock()

    def hammer(offset: int) -> None:
        for call in itertools.islice(itertools.cycle(calls), offset, None):
            if stop.is_set():
                return
            started = time.monotonic()
            code, _ = outcome(call)
            with lock:
                hammered[0] += 1
                if code == grpc.StatusCode.OK and committed and started > committed[0]:
                    late_successes.append(f"hammer call started {started - committed[0]:.4f}s after the change")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(HAMMERS)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    change()
    committed.append(time.monotonic())
    time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join()
    codes: dict[str, int] = {}
    for call in itertools.islice(itertools.cycle(calls), RETRIES):
        code, _ = outcome(call)
        codes[code.name] = codes.get(code.name, 0) + 1
    return {"retried": RETRIES, "succeeded": codes.get("OK", 0), "codes": codes, "hammered": hammered[0],
            "late": late_successes}


def test_no_call_succeeds_after_access_is_taken_away(live, actors, rec):
    c = new_customer(actors)
    entry = actors.entry(c.creator, c.system, secret=planted("row11"))
    results: dict[str, dict] = {}

    def fresh(grants=("EDIT_ALL_LOGIN_DATA",)) -> Principal:
        return actors.user(c.number, list(grants))

    who = fresh()
    results["authorization revoked"] = hammer_and_retry(calls_of(actors, who, c, entry)[:4], lambda: (
        actors.authz.RevokeAuthorization(az.RevokeAuthorizationRequest(
            user=who.name, authorization=az.AUTHORIZATION_EDIT_ALL_LOGIN_DATA), metadata=c.ops.md)))
    who = fresh()
    results["logged out"] = hammer_and_retry(calls_of(actors, who, c, entry), lambda: actors.authz.Logout(
        az.LogoutRequest(), metadata=who.md))
    who = fresh()

    def disable(user=who) -> None:
        request = az.UpdateUserRequest(user=az.User(name=user.name, disabled=True))
        request.update_mask.paths.append("disabled")
        actors.authz.UpdateUser(request, metadata=c.ops.md)
    results["user disabled"] = hammer_and_retry(calls_of(actors, who, c, entry), disable)
    who = fresh()

    def reset(user=who) -> None:  # the user administrator ends the password; the code goes to the user's mail
        actors.authz.ResetPassword(az.ResetPasswordRequest(name=user.name), metadata=c.ops.md)
    results["password reset"] = hammer_and_retry(calls_of(actors, who, c, entry), reset)
    who = fresh()
    session = Principal(who.name, actors.login(who.user_id))  # a second session, to change the password with

    def new_password(user=who) -> None:  # only the user itself changes its password: every session ends
        request = az.UpdateUserRequest(user=az.User(name=user.name), new_password="a brand new password 42")
        request.update_mask.paths.append("password")
        actors.authz.UpdateUser(request, metadata=session.md)
    results["password changed (by the user)"] = hammer_and_retry(calls_of(actors, who, c, entry), new_password)

    engineer = actors.engineer()
    incident = actors.incident(c.system, c.ops)
    actors.assign(incident, engineer)
    results["assignment ended (incident handed back)"] = hammer_and_retry(
        calls_of(actors, engineer, c, entry),
        lambda: actors.set_status(incident, cn.INCIDENT_STATUS_CUSTOMER_ACTION, engineer))
    first, second = actors.engineer(), actors.engineer()
    incident = actors.incident(c.system, c.ops)
    actors.assign(incident, first)
    results["assignment ended (incident given to another engineer)"] = hammer_and_retry(
        calls_of(actors, first, c, entry),
        lambda: actors.conn.AssignProcessor(cn.AssignProcessorRequest(name=incident, processor=second.name),
                                            metadata=second.md))
    succeeded = sum(r["succeeded"] for r in results.values())
    late = sum(len(r["late"]) for r in results.values())
    retried = sum(r["retried"] for r in results.values())
    hammered = sum(r["hammered"] for r in results.values())
    passed = succeeded == 0 and late == 0
    rec(f"{len(results)} changes (revoke, log out, disable, password reset, new password, assignment ended "
        f"twice), each retried "
        f"{RETRIES:,} times: {succeeded} of {retried:,} retries succeeded; {hammered:,} calls hammered while the "
        f"changes committed: {late} succeeded after the commit", passed,
        results={k: {"codes": v["codes"], "late": v["late"][:3], "hammered": v["hammered"]}
                 for k, v in results.items()})
    assert passed, results
