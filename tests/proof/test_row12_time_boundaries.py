"""Row 12: time boundaries, with the suite's injected clock stood on exact instants around each boundary
(to the microsecond, plus random instants nearby):

- logon data is readable strictly before its expiration time and unreadable from that instant on (reveal, get,
  update, list), and one expiry sweep deletes every expired entry (more than one sweep batch of them);
- a bearer token works strictly before its expiry and never from that instant on;
- a connection window [start, end): its service connector is usable (VerifyServiceConnector) exactly inside
  it, issued only until its end, and one sweep records its automatic close;
- the expiration time of new logon data may be at most the configured maximum ahead, to the microsecond."""
from __future__ import annotations

import datetime as dt
import random

import grpc

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot.maintenance import SWEEP_BATCH
from tests.harness import TEST_PASSWORD
from tests.proof.figures import size
from tests.proof.world import SYSTEM_USER, new_customer, outcome, planted, sql, ts

ROW = 12
RANDOM_INSTANTS = size(12, 300)
EXPIRING = size(30, SWEEP_BATCH * 2 + 17)
MICRO = dt.timedelta(microseconds=1)


def instants(boundary: dt.datetime, rng: random.Random) -> list[dt.datetime]:
    fixed = [-2_000_000, -1000, -1, 0, 1, 1000, 2_000_000]
    extra = [rng.randint(-5_000_000, 5_000_000) for _ in range(RANDOM_INSTANTS)]
    return [boundary + dt.timedelta(microseconds=us) for us in fixed + extra]


def test_time_boundaries(live, actors, rec):
    rng = random.Random(12)
    clock = live.clock
    start = clock.now()
    c = new_customer(actors)
    outside: list[str] = []
    inside_refused: list[str] = []
    checks = {"entry": 0, "token": 0, "window": 0}
    try:
        # --- logon data expiry -----------------------------------------------------------------------------
        expire = start + dt.timedelta(hours=1, microseconds=rng.randint(1, 999_999))
        secret = planted("row12")
        entry = actors.entry(c.creator, c.system, secret=secret, expire_time=ts(expire))
        probe = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=entry.name, notes=""))
        probe.update_mask.paths.append("notes")
        for t in instants(expire, rng):
            clock.set(t)
            readable = t < expire
            results = {
                "reveal": outcome(actors.reveal, c.creator, entry.name)[0],
                "get": outcome(actors.depot.GetLogonData, dp.GetLogonDataRequest(name=entry.name),
                               metadata=c.creator.md)[0],
                "update": outcome(actors.depot.UpdateLogonData, probe, metadata=c.creator.md)[0],
            }
            listed = entry.name in [e.name for e in actors.depot.ListLogonData(
                dp.ListLogonDataRequest(parent=c.system), metadata=c.creator.md).logon_data]
            for what, code in results.items():
                checks["entry"] += 1
                if code == grpc.StatusCode.OK and not readable:
                    outside.append(f"{what} at expiry{(t - expire).total_seconds():+.6f}s")
                if code != grpc.StatusCode.OK and readable:
                    inside_refused.append(f"{what} {code.name} at expiry{(t - expire).total_seconds():+.6f}s")
            checks["entry"] += 1
            if listed != readable:
                (outside if listed else inside_refused).append(f"list at expiry{(t - expire).total_seconds():+.6f}s")

        # --- the sweep: every expired entry gone after one pass ----------------------------------------------
        clock.set(start)
        expiring = [actors.entry(c.creator, c.system, secret=planted("row12x"),
                                 expire_time=ts(start + dt.timedelta(minutes=30, microseconds=i))).name
                    for i in range(EXPIRING)]
        keep = actors.entry(c.creator, c.system, secret=planted("row12k"), expire_time=ts(expire + MICRO))
        clock.set(expire)  # the first entry expires at this very instant, the others have expired before it
        purged = live.sweep()
        url = live.suite.db_url["depot"]
        left = sql(url, "SELECT COUNT(*) FROM logon_data WHERE customer = :c AND entry_id <> :k",
                   c=c.number, k=keep.name.rsplit("/", 1)[1])[0][0]
        kept = outcome(actors.reveal, c.creator, keep.name)[0] == grpc.StatusCode.OK
        events = actors.events(c.edit_all, c.number)
        purge_events = {e.logon_data for e in events if e.action == dp.LOG_ACTION_PURGE}
        expire_events = {e.logon_data for e in events if e.action == dp.LOG_ACTION_EXPIRE}
        sweep_ok = (left == 0 and kept and purged >= EXPIRING and set(expiring) <= purge_events
                    and set(expiring) <= expire_events and entry.name in purge_events)

        # --- token expiry --------------------------------------------------------------------------------------
        clock.set(start)
        user = actors.user(c.number, ["EDIT_MY_LOGIN_DATA"])
        login = actors.authz.Login(az.LoginRequest(user_id=user.user_id, password=TEST_PASSWORD))
        token_expiry = login.expire_time.ToDatetime(dt.timezone.utc)
        for t in instants(token_expiry, rng):
            clock.set(t)
            code, _ = outcome(actors.depot.ListLogonData, dp.ListLogonDataRequest(parent=c.system),
                              metadata=(("authorization", f"Bearer {login.access_token}"),))
            checks["token"] += 1
            if code == grpc.StatusCode.OK and t >= token_expiry:
                outside.append(f"token at expiry{(t - token_expiry).total_seconds():+.6f}s")
            if code != grpc.StatusCode.OK and t < token_expiry:
                inside_refused.append(f"token {code.name} at expiry{(t - token_expiry).total_seconds():+.6f}s")

        # --- a connection window -------------------------------------------------------------------------------
        clock.set(start)
        actors.conn.SetUpConnection(cn.SetUpConnectionRequest(
            parent=c.system, connection_type="connectionTypes/R3_SUPPORT",
            parameters={"host": "app01", "instance_number": "00"}), metadata=c.ops.md)
        w_start = start + dt.timedelta(hours=1, microseconds=rng.randint(1, 999_999))
        w_end = w_start + dt.timedelta(hours=2)
        window = actors.conn.OpenConnection(cn.OpenConnectionRequest(
            parent=c.system, connection_type="connectionTypes/R3_SUPPORT", start_time=ts(w_start),
            end_time=ts(w_end), reason="row 12"), metadata=c.ops.md).connection
        connector = actors.conn.GetServiceConnector(cn.GetServiceConnectorRequest(name=window.name),
                                                    metadata=c.ops.md).service_connector.content
        for boundary in (w_start, w_end):
            for t in instants(boundary, rng):
                clock.set(t)
                inside = w_start <= t < w_end
                verdict = actors.conn.VerifyServiceConnector(cn.VerifyServiceConnectorRequest(content=connector),
                                                             metadata=c.ops.md)
                state = actors.conn.GetConnection(cn.GetConnectionRequest(name=window.name), metadata=c.ops.md
                                                  ).connection.state
                issued = outcome(actors.conn.GetServiceConnector, cn.GetServiceConnectorRequest(name=window.name),
                                 metadata=c.ops.md)[0] == grpc.StatusCode.OK
                checks["window"] += 3
                label = f"at {'start' if boundary == w_start else 'end'}{(t - boundary).total_seconds():+.6f}s"
                if verdict.currently_usable != inside or (state == cn.CONNECTION_STATE_OPEN) != inside:
                    (outside if verdict.currently_usable or state == cn.CONNECTION_STATE_OPEN else inside_refused
                     ).append(f"window usable={verdict.currently_usable} state={state} {label}")
                if issued != (t < w_end):
                    (outside if issued else inside_refused).append(f"connector issued={issued} {label}")
        clock.set(w_end)
        swept = live.run(live.suite.running["connections"].app.sweep_once())
        closed = actors.conn.GetConnection(cn.GetConnectionRequest(name=window.name), metadata=c.ops.md).connection
        window_swept = window.name in swept.expired and closed.close_time.ToDatetime(dt.timezone.utc) == w_end

        # --- the maximum expiration time ahead ------------------------------------------------------------
        clock.set(start)
        limit = start + live.depot_settings().max_expiry

        def create(at):
            return outcome(actors.depot.CreateLogonData, dp.CreateLogonDataRequest(
                parent=c.system, secret="x", logon_data=dp.LogonData(kind=SYSTEM_USER, client="001", user_name="U",
                                                                     expire_time=ts(at))), metadata=c.creator.md)[0]
        bound_ok = create(limit) == grpc.StatusCode.OK and create(limit + MICRO) == grpc.StatusCode.INVALID_ARGUMENT \
            and create(start) == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        clock.set(start)
    total = sum(checks.values())
    passed = not outside and not inside_refused and sweep_ok and window_swept and bound_ok
    rec(f"{total:,} checks at instants around the boundaries (entries {checks['entry']}, tokens {checks['token']}, "
        f"windows {checks['window']}; exact boundary +-1 us included): {len(outside)} accesses outside the allowed "
        f"interval, {len(inside_refused)} refused inside it; expired entries unreadable at the instant; one sweep "
        f"purged {purged} expired entries ({EXPIRING} due, batch {SWEEP_BATCH}), {left} left, each with EXPIRE and "
        f"PURGE events: {sweep_ok}; window's automatic close recorded by one sweep: {window_swept}; maximum expiry "
        f"enforced to the microsecond: {bound_ok}", passed,
        outside=outside[:10], inside_refused=inside_refused[:10], checks=checks)
    assert passed, (outside[:10], inside_refused[:10], sweep_ok, window_swept, bound_ok)
