"""Row 10: the authorization matrix, property-based. Hypothesis draws cases — principal (customer users of
customer A and B with each authorization, installation-scoped grants, engineers assigned, assigned behind a
restricted view, assigned elsewhere or not at all, the platform admin, each service account, no token, a
garbage token, a logged-out token, a disabled user) x method (every method of authz, depot, connections and
the gateway) x target (own/other entries, entries restricted to an incident or hidden by a view, systems and
incidents of customer A and B, installations) x path (straight to the service or through the gateway) — and
each is a real call whose decision must match the reference table in tests/proof/matrix.py. Then odd method
paths (wrong case, trailing or double slashes, unknown methods, a method on the wrong server, path tricks)
must never be served."""
from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.proof import matrix
from tests.proof.figures import FULL, size
from tests.proof.world import outcome

ROW = 10
CASES = size(600, 10_000)
BATCH = 50
WORKERS = 4

ODD_PATHS = [
    "/remotesupport.depot.v1.LogonDepotService/revealLogonData",
    "/remotesupport.depot.v1.logondepotservice/RevealLogonData",
    "/remotesupport.depot.v1.LogonDepotService/RevealLogonData/",
    "//remotesupport.depot.v1.LogonDepotService/RevealLogonData",
    "/remotesupport.depot.v1.LogonDepotService//RevealLogonData",
    "remotesupport.depot.v1.LogonDepotService/RevealLogonData",
    "/remotesupport.depot.v1.LogonDepotService/RevealLogonData ",
    "/remotesupport.depot.v1.LogonDepotService/RevealLogonData?x=1",
    "/remotesupport.depot.v1.LogonDepotService/RevealLogonData%00",
    "/remotesupport.depot.v1.LogonDepotService/RevealLogonDataX",
    "/remotesupport.depot.v1.LogonDepotService/",
    "/remotesupport.depot.v1.LogonDepotService",
    "/remotesupport.depot.v1.LogonDepotService/NoSuchMethod",
    "/remotesupport.depot.v2.LogonDepotService/RevealLogonData",
    "/grpc.health.v1.Health/../remotesupport.depot.v1.LogonDepotService/RevealLogonData",
    "/grpc.health.v1.Health/Check/../../remotesupport.depot.v1.LogonDepotService/RevealLogonData",
    "/grpc.reflection.v1alpha.ServerReflection/../../remotesupport.depot.v1.LogonDepotService/RotateKey",
    "/remotesupport.depot.v1.LogonDepotService/RevealLogonData/../RotateKey",
    "/remotesupport.authz.v1.AuthzService/CheckBulk/",
    "/remotesupport.authz.v1.AuthzService/check",
    "/remotesupport.gateway.v1.RemoteSupportService/prepareRemoteAccess",
    "/remotesupport.connections.v1.ConnectionsService/GetSystem\u0000",
    "/remotesupport.connections.v1.ConnectionsService/Get\u00dfystem",
    "/" + "A" * 4000,
    "/",
    "",
]
# a method served by another server: the depot's methods on connections and authz, and so on
WRONG_SERVER = [("connections", "/remotesupport.depot.v1.LogonDepotService/RevealLogonData"),
                ("authz", "/remotesupport.depot.v1.LogonDepotService/RotateKey"),
                ("depot", "/remotesupport.authz.v1.AuthzService/Check"),
                ("depot", "/remotesupport.gateway.v1.RemoteSupportService/PrepareRemoteAccess"),
                ("authz", "/remotesupport.connections.v1.ConnectionsService/OpenConnection")]


def test_the_authorization_matrix_matches_the_reference(live, actors, rec):
    world = matrix.build(actors, live.service_token)
    methods = matrix.methods()
    targets = {m.key: m.targets(world) for m in methods}
    principals = sorted(world.who)
    case = st.sampled_from(methods).flatmap(lambda m: st.tuples(
        st.just(m), st.sampled_from(targets[m.key]), st.sampled_from(principals), st.sampled_from(m.paths)))
    lock = threading.Lock()
    seen: collections.Counter = collections.Counter()
    distinct: set = set()
    mismatches: list[str] = []
    errors: list[str] = []
    decisions: collections.Counter = collections.Counter()
    retried = [0]

    def run(item) -> None:
        method, target, key, path = item
        who = world.who[key]
        request = method.request(world, who, target, live.clock.now())
        via = "gateway" if path == "via gateway" else None
        stub = live.stub(method.service, via)
        for _ in range(3):  # unavailable under load says nothing about the decision: ask again
            code, answer = outcome(getattr(stub, method.rpc), request, metadata=who.md, timeout=30)
            if matrix.classify(code) != matrix.ERROR:
                break
            with lock:
                retried[0] += 1
        expected = matrix.decide(world, who, method.key, target)
        got = matrix.classify(code)
        label = f"{key} -> {method.key}({target.key if target else ''}) {path}"
        with lock:
            seen[method.key] += 1
            distinct.add((method.key, target.key if target else "", key, path))
            decisions[got] += 1
            if got == matrix.ERROR:
                errors.append(f"{label}: {code.name} {answer.details() if code != grpc.StatusCode.OK else ''}")
            elif got != expected:
                detail = answer.details() if code != grpc.StatusCode.OK else "OK"
                mismatches.append(f"{label}: expected {expected}, got {got} ({code.name}: {detail})")

    @settings(settings.get_profile("proof"), max_examples=CASES // BATCH)
    @given(st.lists(case, min_size=BATCH, max_size=BATCH))
    def batches(items):
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(run, items))

    batches()
    total = sum(seen.values())
    untried = [m.key for m in methods if not seen[m.key]]
    passed = not mismatches and not errors and total >= CASES and (not FULL or not untried)
    rec(f"{total:,} generated cases ({len(distinct):,} distinct of {len(principals)} principals x {len(methods)} "
        f"methods x their targets x 2 paths; {decisions[matrix.ALLOW]:,} allowed, {decisions[matrix.DENY]:,} denied, "
        f"{decisions[matrix.UNAUTH]:,} unauthenticated): {len(mismatches)} mismatches, {len(errors)} errors "
        f"({retried[0]} calls asked again after UNAVAILABLE under load)",
        passed, part="matrix", cases=total, retried=retried[0], distinct=len(distinct), mismatches=mismatches[:20],
        errors=errors[:20],
        untried=untried)
    assert passed, (mismatches[:20], errors[:20], untried)


def test_every_method_goes_through_the_interceptor_chain(rec):
    """The kit's interceptor runs its stages around unary methods and around the streams a policy table names
    (the relay's, and the event feeds); any other streaming method is not served. So every method is unary except
    the relay's three streams and the three WatchEvents feeds, and each of those has a policy the stream stages
    can enforce: public (the connector's, authenticated by the signed file or the one-time dial key) or
    handler_decides (the engineer's OpenTunnel asks authz once its first message names the window; a feed asks
    for the watch, then for every batch of events); policy_table refuses any other."""
    from remotesupport.authz.v1 import authz_pb2
    from remotesupport.connections.v1 import connections_pb2, relay_pb2
    from remotesupport.depot.v1 import depot_pb2
    from remotesupport.gateway.v1 import gateway_pb2
    from services.connections.relay.policies import build_policies
    methods = [m for module in (authz_pb2, depot_pb2, connections_pb2, relay_pb2, gateway_pb2)
               for service in module.DESCRIPTOR.services_by_name.values() for m in service.methods]
    from gateway.passthrough import Passthrough
    from gateway.policies import build_policies as gateway_policies
    from services.connections.policies import build_policies as connections_policies
    from services.depot.policies import build_policies as depot_policies
    streaming = sorted(m.full_name for m in methods if m.client_streaming or m.server_streaming)
    relay = sorted(m.full_name for m in relay_pb2.DESCRIPTOR.services_by_name["RelayService"].methods)
    feeds = sorted(f"{module.DESCRIPTOR.package}.{service}.WatchEvents" for module, service in (
        (depot_pb2, "LogonDepotService"), (connections_pb2, "ConnectionsService"),
        (gateway_pb2, "RemoteSupportService")))
    feed_policies = {**depot_policies(None), **connections_policies(None),
                     **gateway_policies(None, Passthrough({}, 1.0))}
    policies = build_policies()
    enforceable = all(p.permission is None or p.handler_decides for p in policies.values()) and all(
        feed_policies["/" + name.rsplit(".", 1)[0] + "/WatchEvents"].handler_decides for name in feeds)
    passed = streaming == sorted(relay + feeds) and enforceable
    rec(f"{len(methods)} methods of 5 services, {len(streaming)} streaming: the relay's {len(relay)} "
        f"(AttachConnector and AcceptTunnel public, OpenTunnel handler_decides) and {len(feeds)} WatchEvents "
        f"(handler_decides), each with a stream policy: {enforceable}", passed, part="unary or relay streams",
        streaming=streaming)
    assert passed, streaming


def test_odd_method_paths_are_never_served(live, actors, rec):
    token = actors.admin.md
    user = actors.user(actors.customer(), list(matrix.ALL))
    served: list[str] = []
    codes: collections.Counter = collections.Counter()
    calls = [(server, path) for server in ("authz", "depot", "connections", "gateway") for path in ODD_PATHS]
    calls += WRONG_SERVER
    for server, path in calls:
        for metadata in (token, user.md, ()):
            try:
                live.channel(server).unary_unary(path)(b"", metadata=metadata, timeout=5)
                served.append(f"{server} {path!r}")
                codes["OK"] += 1
            except grpc.RpcError as err:
                codes[err.code().name] += 1
            except (ValueError, TypeError) as err:  # the client refuses to send such a path at all
                codes[f"client refused ({type(err).__name__})"] += 1
    total = sum(codes.values())
    passed = not served
    rec(f"{total} calls on {len(calls)} odd method paths (x admin, full customer user, no token): "
        f"{len(served)} served ({', '.join(f'{k} {v}' for k, v in sorted(codes.items()))})", passed,
        part="odd paths", codes=dict(codes), served=served)
    assert passed, served
