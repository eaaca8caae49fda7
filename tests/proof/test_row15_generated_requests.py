"""Row 15: generated requests for every RPC of every service — authz, depot, connections and the gateway's own
methods, enumerated from the generated descriptors — built by hypothesis from each request's descriptor
(tests/proof/fuzz.py), mostly as mutations of valid requests, plus a fixed corpus of edge values one field at a
time, and sent to the in-process servers with a valid token (a customer user holding every authorization, the
platform admin, an assigned engineer, a service account) or none. No answer may be INTERNAL or UNKNOWN, no
server may log an unhandled fault or stop answering (health checked after each RPC), and no planted secret
may come back in an error."""
from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from remotesupport.authz.v1 import authz_pb2
from remotesupport.connections.v1 import connections_pb2
from remotesupport.depot.v1 import depot_pb2
from remotesupport.gateway.v1 import gateway_pb2
from services.authz import sessions
from tests.proof import fuzz, matrix, scan
from tests.proof.figures import size
from tests.proof.world import Principal, error_text

ROW = 15
PER_RPC = size(200, 1000)
BATCH = 10
WORKERS = 6
EDGE_SEEDS = size(1, 3)  # valid requests of each RPC the corpus of edge values is made from
SERVICES = (("authz", authz_pb2, "AuthzService"), ("depot", depot_pb2, "LogonDepotService"),
            ("connections", connections_pb2, "ConnectionsService"), ("gateway", gateway_pb2, "RemoteSupportService"))


class Unhandled(logging.Handler):
    """Server-side log records of faults nobody handled (the error-mapping interceptor logs them)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}"[:300])


def rpcs() -> list[tuple[str, object]]:
    """(server, method descriptor) of every RPC of every service, from the generated descriptors."""
    return [(server, method) for server, module, name in SERVICES
            for method in module.DESCRIPTOR.services_by_name[name].methods]


class Principals:
    """Tokens the generated requests are sent with, renewed whenever a generated request ended them (a Logout,
    a password change, a disabled user, a revoked grant): a customer user of customer A holding every
    authorization, a platform admin token of its own, an engineer assigned to one of A's systems, and a token of
    the connections service account of its own (the suite's own tokens are never handed to generated calls)."""

    def __init__(self, live, actors, world: matrix.World) -> None:
        self.live, self.actors, self.world = live, actors, world
        self.tokens: dict[str, str] = {}
        self.renew()

    def _mint(self, user_id: str) -> str:
        """A token of the suite's own principals, minted by authz's code (as its bootstrap does), so that a
        generated Logout or password change never ends the tokens the rest of the suite runs on."""
        store = self.live.suite.running["authz"].app.store
        return self.live.run(sessions.mint_token(store, self.live.clock, user_id, dt.timedelta(days=1)))[0]

    def renew(self) -> None:
        a, w = self.actors, self.world
        admin, service = self._mint("admin"), self._mint("svc-connections")
        engineer = a.engineer()
        try:
            ops = Principal(w.who["A:all"].user, w.who["A:all"].token)
            a.assign(a.incident(w.systems["S1"].name, ops), engineer)
        except grpc.RpcError:
            pass  # the system or its owner may be gone (a generated DeleteSystem, UpdateUser): no assignment then
        self.tokens = {"customer user": a.user(w.customers["A"], list(matrix.ALL)).token, "platform admin": admin,
                       "support engineer": engineer.token, "service account": service}

    def all_valid(self) -> bool:
        checker = (("authorization", f"Bearer {self.tokens['service account']}"),)
        try:
            for token in self.tokens.values():
                decision = self.actors.authz.Check(authz_pb2.CheckRequest(subject_token=token,
                                                                          permission="authz.session"), metadata=checker)
                if not decision.allowed:
                    return False
        except grpc.RpcError:
            return False
        return True


def known_names(w: matrix.World) -> list[str]:
    names = [w.customer_name(k) for k in w.customers] + [t.name for group in (
        w.systems, w.entries, w.incidents, w.windows) for t in group.values()]
    names += [p.user for p in w.who.values() if p.user and not fuzz.PROTECTED.search(p.user)]
    names += [matrix.view_name(w, "S1", "X2"), f"{w.systems['S1'].name}/connectionSetups/R3_SUPPORT", matrix.R3,
              matrix.HTTP]
    return names


def seeds(w: matrix.World, now) -> dict[str, list]:
    """Valid requests of each RPC (full path -> requests), from row 10's request builders."""
    out: dict[str, list] = collections.defaultdict(list)
    who = w.who["A:all"]
    for method in matrix.methods():
        service = {"authz": authz_pb2, "depot": depot_pb2, "connections": connections_pb2, "gateway": gateway_pb2}[
            method.service].DESCRIPTOR
        full = next(s.full_name for s in service.services_by_name.values())
        for target in method.targets(w):
            out[f"/{full}/{method.rpc}"].append(method.request(w, who, target, now))
    auth = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].full_name
    out[f"/{auth}/Login"].append(authz_pb2.LoginRequest(user_id=w.who["A:none"].user.removeprefix("users/"),
                                                        password="correct horse battery staple"))
    out[f"/{auth}/Logout"].append(authz_pb2.LogoutRequest())
    return out


def test_generated_requests_never_break_a_server(live, actors, rec):
    world = matrix.build(actors, live.service_token)
    principals = Principals(live, actors, world)
    known = known_names(world)
    valid = seeds(world, live.clock.now())
    watcher = Unhandled()
    logging.getLogger().addHandler(watcher)
    codes: dict[str, collections.Counter] = {}
    bad: list[str] = []
    leaks: list[str] = []
    crashes: list[str] = []
    planted_now: set[str] = set()
    edge = [0]
    lock = threading.Lock()
    try:
        for server, method in rpcs():
            if not principals.all_valid():
                principals.renew()
            path = f"/{method.containing_service.full_name}/{method.name}"
            request_cls = fuzz.message_factory.GetMessageClass(method.input_type)
            response_cls = fuzz.message_factory.GetMessageClass(method.output_type)
            call = live.channel(server).unary_unary(path, request_serializer=request_cls.SerializeToString,
                                                    response_deserializer=response_cls.FromString)
            seen = codes.setdefault(path, collections.Counter())
            who = st.sampled_from(["customer user"] * 3 + ["platform admin", "support engineer", "service account",
                                                             "no token"])
            requests = st.one_of(fuzz.message(method.input_type, known),
                                 *[fuzz.message(method.input_type, known, seed=seed) for seed in valid[path]] * 3)

            @settings(settings.get_profile("proof"), max_examples=PER_RPC // BATCH)
            @given(st.lists(st.tuples(requests, who), min_size=BATCH, max_size=BATCH))
            def run(items):
                with ThreadPoolExecutor(WORKERS) as pool:
                    list(pool.map(send, items))

            def send(item):
                request, principal = item
                token = principals.tokens.get(principal)
                for field in fuzz.SECRET_FIELDS:
                    value = getattr(request, field, None) if field in request.DESCRIPTOR.fields_by_name else None
                    if isinstance(value, str) and value.startswith("PLANT-"):
                        with lock:
                            planted_now.add(value)
                try:
                    call(request, metadata=(("authorization", f"Bearer {token}"),) if token else (), timeout=30)
                    code, text = "OK", ""
                except grpc.RpcError as err:
                    code, text = err.code().name, error_text(err)
                with lock:
                    seen[code] += 1
                    if code in ("INTERNAL", "UNKNOWN"):
                        bad.append(f"{path} as {principal}: {text[:200]} <- {str(request)[:300]!r}")
                    found = scan.planted_in(text) & planted_now
                    if found:
                        leaks.append(f"{path}: {sorted(found)[:2]}")

            run()
            token = principals.tokens["customer user" if server != "authz" else "platform admin"]
            corpus = [(request, token) for seed in valid[path][:EDGE_SEEDS] for request in fuzz.edge_cases(seed)]

            def send_edge(item):
                request, token = item
                try:
                    call(request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
                    code, text = "OK", ""
                except grpc.RpcError as err:
                    code, text = err.code().name, f"{err.code().name} {err.details()}"
                with lock:
                    seen[code] += 1
                    edge[0] += 1
                    if code in ("INTERNAL", "UNKNOWN"):
                        bad.append(f"{path} edge case: {text[:200]} <- {str(request)[:300]!r}")

            with ThreadPoolExecutor(WORKERS) as pool:  # and a fixed corpus of edge values, one field at a time
                list(pool.map(send_edge, corpus))
            for name, address in live.suite.addr.items():
                try:
                    with grpc.insecure_channel(address) as channel:
                        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                    if health.status != health_pb2.HealthCheckResponse.SERVING:
                        crashes.append(f"{name} not SERVING after {path}")
                except grpc.RpcError as err:
                    crashes.append(f"{name} did not answer its health check after {path}: {err.code().name}")
    finally:
        logging.getLogger().removeHandler(watcher)
    unhandled = watcher.records
    total = sum(sum(c.values()) for c in codes.values())
    fewest = min(sum(c.values()) for c in codes.values())
    overall = collections.Counter()
    for counter in codes.values():
        overall.update(counter)
    internal = overall["INTERNAL"] + overall["UNKNOWN"]
    passed = internal == 0 and not bad and not crashes and not leaks and not unhandled and fewest >= PER_RPC
    missing = [path for path in codes if not valid[path]]
    rec(f"{total:,} generated requests over {len(codes)} RPCs of 4 services (at least {fewest:,} each, "
        f"{len(codes) - len(missing)} of them also from valid seed requests; {edge[0]:,} of them a fixed corpus of "
        f"edge values): {internal} "
        f"INTERNAL/UNKNOWN, {len(crashes)} crashes, {len(unhandled)} unhandled server faults, "
        f"{len(leaks)} planted secrets ({len(planted_now):,} planted) in error details; answers: "
        + ", ".join(f"{k} {v:,}" for k, v in overall.most_common()), passed,
        requests=total, per_rpc={k: dict(v) for k, v in codes.items()}, bad=bad[:20], crashes=crashes[:5],
        leaks=leaks[:5], unhandled=unhandled[:10])
    assert passed, (bad[:10], crashes[:5], leaks[:5], unhandled[:5])
