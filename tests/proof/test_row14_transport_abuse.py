"""Row 14: transport abuse against the four real processes.

- a message over the size limit (RS_MAX_MESSAGE_BYTES, 4 MiB) is refused with RESOURCE_EXHAUSTED by every
  server, the gateway included;
- no token, or a garbage one (wrong scheme, empty, oversized, unknown, in the wrong header) is UNAUTHENTICATED
  on every non-public method of every server;
- a call without a deadline whose dependency hangs (the process stopped with SIGSTOP) still ends, after the
  server's default deadline for that dependency;
- a flood of concurrent calls (many channels, many streams each: cheap calls, garbage tokens, password
  guesses) while a normal client keeps calling: the normal client is served throughout, and all servers are
  healthy afterwards."""
from __future__ import annotations

import collections
import json
import signal
import statistics
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from tests.proof.figures import size
from tests.proof.live import CHANNEL_OPTIONS
from tests.proof.procs import AUTHZ_DEADLINE_S, CALL_DEADLINE_S, STUBS
from tests.proof.world import SYSTEM_USER, Actors, new_customer, planted, reason_of

ROW = 14
FLOOD = size(600, 5000)
FLOOD_CHANNELS = size(6, 20)
NORMAL_DEADLINE_S = 10.0
SERVERS = ("gateway", "authz", "depot", "connections")
# A normal client follows gRPC's guidance: UNAVAILABLE (here mostly HTTP/2 REFUSED_STREAM, the transport's
# "not processed, try again" when it sheds load) is retried with backoff, within the call's deadline.
RETRYING = [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps({"methodConfig": [{
    "name": [{}], "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "1s",
                                  "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}))]


def code_of(thunk) -> str:
    try:
        thunk()
        return "OK"
    except grpc.RpcError as err:
        return err.code().name


def test_oversize_messages_and_bad_tokens(procs, rec):
    actors = Actors(procs, via="gateway")
    c = new_customer(actors)
    entry = actors.entry(c.creator, c.system, secret=planted("row14"))
    big = "x" * (4 * 1024 * 1024 + 1)
    oversize = collections.Counter()
    for server in SERVERS:
        for service in ("depot", "connections", "authz"):
            if server not in ("gateway", service):
                continue
            stub = procs.stub(service, via=server)
            if service == "depot":
                thunk = lambda s=stub: s.CreateLogonData(dp.CreateLogonDataRequest(  # noqa: E731
                    parent=c.system, secret="s", logon_data=dp.LogonData(kind=SYSTEM_USER, notes=big)),
                    metadata=c.creator.md, timeout=30)
            elif service == "connections":
                thunk = lambda s=stub: s.VerifyServiceConnector(cn.VerifyServiceConnectorRequest(  # noqa: E731
                    content=big.encode()), metadata=c.ops.md, timeout=30)
            else:
                thunk = lambda s=stub: s.Login(az.LoginRequest(user_id="x", password=big), timeout=30)  # noqa: E731
            oversize[code_of(thunk)] += 1
    bad_headers = {
        "no token": (),
        "empty bearer": (("authorization", "Bearer "),),
        "wrong scheme": (("authorization", "Basic abc"),),
        "no scheme": (("authorization", c.creator.token),),
        "unknown token": (("authorization", "Bearer rs_" + "A" * 43),),
        "oversized token": (("authorization", "Bearer " + "A" * 600),),
        "wrong header": (("authorisation", f"Bearer {c.creator.token}"),),
        "two tokens": (("authorization", f"Bearer {c.creator.token} Bearer x"),),
    }
    unauthenticated = collections.Counter()
    for metadata in bad_headers.values():
        for server in SERVERS:
            calls = {
                "depot": lambda s: s.RevealLogonData(dp.RevealLogonDataRequest(name=entry.name), metadata=metadata,
                                                     timeout=10),
                "connections": lambda s: s.GetSystem(cn.GetSystemRequest(name=c.system), metadata=metadata, timeout=10),
                "authz": lambda s: s.GetUser(az.GetUserRequest(name=c.creator.name), metadata=metadata, timeout=10),
            }
            for service, call in calls.items():
                if server not in ("gateway", service):
                    continue
                unauthenticated[code_of(lambda: call(procs.stub(service, via=server)))] += 1
    over_ok = set(oversize) == {"RESOURCE_EXHAUSTED"}
    unauth_ok = set(unauthenticated) == {"UNAUTHENTICATED"}
    rec(f"oversize (>4 MiB) requests to all 4 servers: {oversize['RESOURCE_EXHAUSTED']}/{sum(oversize.values())} "
        f"RESOURCE_EXHAUSTED; {len(bad_headers)} kinds of missing or garbage token on every server: "
        f"{unauthenticated['UNAUTHENTICATED']}/{sum(unauthenticated.values())} UNAUTHENTICATED", over_ok and unauth_ok,
        part="1 size and tokens", oversize=dict(oversize), unauthenticated=dict(unauthenticated))
    assert over_ok and unauth_ok, (oversize, unauthenticated)


def test_calls_without_deadline_end_when_a_dependency_hangs(procs, rec):
    actors = Actors(procs, via="gateway")
    c = new_customer(actors)
    entry = actors.entry(c.creator, c.system, secret=planted("row14d"))
    cases = [
        ("authz stopped; depot call", "authz", AUTHZ_DEADLINE_S,
         lambda: procs.stub("depot", via=None).GetLogonData.future(dp.GetLogonDataRequest(name=entry.name),
                                                                   metadata=c.creator.md)),
        ("authz stopped; call through the gateway", "authz", AUTHZ_DEADLINE_S,
         lambda: procs.stub("connections").GetSystem.future(cn.GetSystemRequest(name=c.system), metadata=c.ops.md)),
        ("connections stopped; depot create (asks connections)", "connections", CALL_DEADLINE_S,
         lambda: procs.stub("depot", via=None).CreateLogonData.future(dp.CreateLogonDataRequest(
             parent=c.system, secret="s", logon_data=dp.LogonData(kind=SYSTEM_USER, client="001", user_name="U",
                                                                   expire_time=actors.expire_in(days=1))),
             metadata=c.creator.md)),
        ("depot stopped; call through the gateway", "depot", CALL_DEADLINE_S,
         lambda: procs.stub("depot").GetLogonData.future(dp.GetLogonDataRequest(name=entry.name),
                                                         metadata=c.creator.md)),
    ]
    results = {}
    for label, stopped, default, start in cases:
        procs.signal(stopped, signal.SIGSTOP)
        try:
            began = time.monotonic()
            future = start()  # no timeout: the caller sets no deadline
            try:
                future.result(timeout=CALL_DEADLINE_S * 5)
                code = "OK"
            except grpc.FutureTimeoutError:
                future.cancel()
                code = "no answer"
            except grpc.RpcError as err:
                code = f"{err.code().name} {reason_of(err)}".strip()
            results[label] = (code, round(time.monotonic() - began, 2), default)
        finally:
            procs.signal(stopped, signal.SIGCONT)
    ended = all(code not in ("OK", "no answer") and took <= default + 2.0 for code, took, default in results.values())
    back = code_of(lambda: actors.reveal(c.creator, entry.name)) == "OK"
    rec("calls without a deadline while a dependency hangs (SIGSTOP): " + "; ".join(
        f"{label}: {code} after {took:.1f} s (default {default:.0f} s)"
        for label, (code, took, default) in results.items())
        + f"; serving normally after SIGCONT: {back}", ended and back, part="2 no deadline", results=results)
    assert ended and back, results


def test_a_flood_does_not_stop_normal_clients(procs, rec):
    actors = Actors(procs, via="gateway")
    c = new_customer(actors)
    stop = threading.Event()
    normal: dict[str, dict] = {name: {"codes": collections.Counter(), "latencies": [], "errors": []}
                               for name in ("retrying", "single attempt")}
    flood_errors = collections.Counter()

    def normal_client(name: str) -> None:
        options = CHANNEL_OPTIONS + (RETRYING if name == "retrying" else [])
        seen = normal[name]
        with grpc.insecure_channel(procs.address("gateway"), options=options) as channel:
            stub = STUBS["connections"](channel)
            while not stop.is_set():
                began = time.monotonic()
                try:
                    stub.GetSystem(cn.GetSystemRequest(name=c.system), metadata=c.ops.md, timeout=NORMAL_DEADLINE_S)
                    seen["codes"]["OK"] += 1
                except grpc.RpcError as err:
                    seen["codes"][err.code().name] += 1
                    seen["errors"].append(f"{err.code().name}: {err.details()}")
                seen["latencies"].append(time.monotonic() - began)

    channels = [grpc.insecure_channel(procs.address("gateway"), options=CHANNEL_OPTIONS)
                for _ in range(FLOOD_CHANNELS)]
    flood_codes = collections.Counter()
    threads = [threading.Thread(target=normal_client, args=(name,)) for name in normal]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    try:
        time.sleep(0.3)
        futures = []
        for i in range(FLOOD):
            channel = channels[i % len(channels)]
            kind = i % 4
            if kind == 0:  # cheap, valid
                futures.append(STUBS["connections"](channel).ListConnectionTypes.future(
                    cn.ListConnectionTypesRequest(), metadata=c.ops.md, timeout=60))
            elif kind == 1:  # garbage tokens
                futures.append(STUBS["depot"](channel).ListLogonData.future(
                    dp.ListLogonDataRequest(parent=c.system), metadata=(("authorization", f"Bearer junk{i}"),),
                    timeout=60))
            elif kind == 2:  # password guesses (the slow key derivation)
                futures.append(STUBS["authz"](channel).Login.future(
                    az.LoginRequest(user_id=c.ops.user_id, password=f"guess number {i}"), timeout=60))
            else:  # valid reads that fan out to other services
                futures.append(STUBS["connections"](channel).ListIncidents.future(
                    cn.ListIncidentsRequest(parent=c.name), metadata=c.ops.md, timeout=60))
        for future in futures:
            try:
                future.result()
                flood_codes["OK"] += 1
            except grpc.RpcError as err:
                flood_codes[err.code().name] += 1
                flood_errors[f"{err.code().name}: {err.details()}"[:160]] += 1
    finally:
        flood_s = time.monotonic() - began
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
        for channel in channels:
            channel.close()
    healthy = []
    for server in SERVERS:
        with grpc.insecure_channel(procs.address(server)) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            healthy.append(status == health_pb2.HealthCheckResponse.SERVING)
    after = code_of(lambda: procs.stub("connections").GetSystem(cn.GetSystemRequest(name=c.system),
                                                                metadata=c.ops.md, timeout=10))
    retrying, single = normal["retrying"], normal["single attempt"]
    served, total = retrying["codes"]["OK"], sum(retrying["codes"].values())
    first, tried = single["codes"]["OK"], sum(single["codes"].values())
    p50 = statistics.median(retrying["latencies"]) if retrying["latencies"] else 0
    worst = max(retrying["latencies"], default=0)
    alive = all(procs.process(s).poll() is None for s in SERVERS)
    passed = total > 0 and served == total and all(healthy) and after == "OK" and alive
    rec(f"flood of {FLOOD:,} concurrent calls on {FLOOD_CHANNELS} connections for {flood_s:.1f} s ("
        + ", ".join(f"{k} {v:,}" for k, v in sorted(flood_codes.items()))
        + f"): a normal client (retrying UNAVAILABLE, as gRPC advises) got {served}/{total} answers (median "
          f"{p50 * 1000:.0f} ms, worst {worst:.1f} s, deadline {NORMAL_DEADLINE_S:.0f} s); without retrying "
          f"{first}/{tried} on the first attempt (the rest refused at once: REFUSED_STREAM or AUTHZ_UNAVAILABLE); no "
          f"process died, all SERVING and answering afterwards: {all(healthy) and after == 'OK' and alive}",
        passed, part="3 flood", flood=dict(flood_codes), normal={k: dict(v["codes"]) for k, v in normal.items()},
        normal_errors={k: v["errors"][:3] for k, v in normal.items()}, flood_errors=dict(flood_errors.most_common(5)))
    assert passed, (normal["retrying"]["codes"], normal["retrying"]["errors"][:5], healthy, after,
                    dict(flood_errors.most_common(5)))
