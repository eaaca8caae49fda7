"""Row 15: generated requests for every RPC of every service — authz, depot, connections and the gateway's own
methods, enumerated from the generated descriptors — built by hypothesis from each request's descriptor
(tests/proof/fuzz.py), mostly as mutations of valid requests, plus a fixed corpus of edge values one field at a
time, and sent to the in-process servers with a valid token (a customer user holding every authorization, the
platform admin, an assigned engineer, a service account) or none. No answer may be INTERNAL or UNKNOWN, no
server may log an unhandled fault or stop answering (health checked after each RPC), and no planted secret
may come back in an error.

Two sharper edges: forged page tokens for every List RPC (random text, base64 of random bytes, tokens of the
suite's shape - services/kit/paging.py - with forged cursors and the request's own fingerprint, issued tokens
replayed with other parameters), each answered OK or INVALID_ARGUMENT; and, for every RPC, bytes that are not its
request message (invalid UTF-8 in a string field, truncated fields, field number 0, another type's message,
random bytes) sent raw - to its server and through the gateway, with and without a token - each that does not
decode answered INVALID_ARGUMENT naming the method, and none INTERNAL or UNKNOWN."""
from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from google.protobuf.message import DecodeError

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
from tests.proof.figures import FULL, size
from tests.proof.world import Principal, error_text, md, reason_of

ROW = 15
PER_RPC = size(200, 1000)
BATCH = 10
WORKERS = 6
EDGE_SEEDS = size(1, 3)  # valid requests of each RPC the corpus of edge values is made from
PAGE_TOKENS_PER_LIST = size(40, 1000)  # generated forged page tokens per List RPC
LISTINGS = size(3, 12)  # requests of each List RPC the forged tokens are sent with
EDGE_LISTINGS = size(1, 12)  # of them, those the fixed corpus of edge cursors is sent with
RANDOM_BYTES = size(10, 100)  # random byte strings per RPC, besides the fixed corpus of undecodable ones
OTHER_TYPES = size(2, 30)  # valid requests of other RPCs per RPC, sent with a string made invalid UTF-8
ISSUERS = ("customer user", "platform admin", "support engineer", "service account")
SHOWN = 20  # misanswers a record keeps
FILTER_VALUES = {"order_by": ("sequence desc", "sequence")}  # string filters of a List RPC's scope, besides enums
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


def health_failures(live, after: str) -> list[str]:
    """The servers that do not answer SERVING to a health check (`after`: what was sent before it)."""
    out = []
    for name, address in live.suite.addr.items():
        try:
            with grpc.insecure_channel(address) as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            if health.status != health_pb2.HealthCheckResponse.SERVING:
                out.append(f"{name} not SERVING after {after}")
        except grpc.RpcError as err:
            out.append(f"{name} did not answer its health check after {after}: {err.code().name}")
    return out


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
            call = first_answer(live.channel(server), method, request_serializer=request_cls.SerializeToString,
                                response_deserializer=response_cls.FromString)
            seen = codes.setdefault(path, collections.Counter())
            who = st.sampled_from(["customer user"] * 3 + ["platform admin", "support engineer", "service account",
                                                             "no token"])
            requests = fuzz.weighted((1, fuzz.message(method.input_type, known)),
                                     *[(3, fuzz.message(method.input_type, known, seed=seed)) for seed in valid[path]])

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
            crashes += health_failures(live, path)
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


# --- forged page tokens --------------------------------------------------------------------------------------
@dataclass
class Listing:
    """A request of a List RPC that `token` may send, and the token the service issued for its second page
    ("" when it has one page only)."""

    request: object
    token: str
    issued: str


def list_rpcs() -> list[tuple[str, object]]:
    """(server, method descriptor) of every List RPC: those whose request has a page_token."""
    return [(server, method) for server, method in rpcs() if "page_token" in method.input_type.fields_by_name]


def typed_call(live, server: str, method):
    request_cls = fuzz.message_factory.GetMessageClass(method.input_type)
    response_cls = fuzz.message_factory.GetMessageClass(method.output_type)
    return first_answer(live.channel(server), method, request_serializer=request_cls.SerializeToString,
                        response_deserializer=response_cls.FromString)


def first_answer(channel: grpc.Channel, method, **serializers):
    """A blocking call of `method` on `channel`: its answer, or, for a server stream (an event feed, which
    stays open), its first response, after which the stream is cancelled; a failure raises its RpcError."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if not method.server_streaming:
        return channel.unary_unary(path, **serializers)
    stream = channel.unary_stream(path, **serializers)

    def call(request, **kwargs):
        responses = stream(request, **kwargs)
        try:
            return next(responses, None)
        finally:
            responses.cancel()
    return call


def with_fields(request, **values):
    copy = type(request)()
    copy.CopyFrom(request)
    for name, value in values.items():
        setattr(copy, name, value)
    return copy


def listings(call, requests: list, principals: Principals) -> list[Listing]:
    """The first LISTINGS `requests` someone of `principals` may send (the first of ISSUERS who may), each with
    the token the service issued for its second page at page size 1."""
    out = []
    for request in requests[:LISTINGS]:
        for who in ISSUERS:
            token = principals.tokens[who]
            try:
                answer = call(with_fields(request, page_size=1, page_token=""), metadata=md(token), timeout=30)
            except grpc.RpcError:
                continue
            out.append(Listing(request, token, answer.next_page_token))
            break
    return out


def filter_variants(request) -> list:
    """Copies of `request` with one filter of its scope changed: each enum to each of its values, and the
    string filters of FILTER_VALUES to theirs."""
    out = []
    for field in request.DESCRIPTOR.fields:
        if field.enum_type is not None and not field.is_repeated:
            values = [v.number for v in field.enum_type.values]
        else:
            values = FILTER_VALUES.get(field.name, ())
        out += [with_fields(request, **{field.name: v}) for v in values if v != getattr(request, field.name)]
    return out


def replays(found: dict[str, list[Listing]]) -> list[tuple[str, Listing, object, str]]:
    """(path, listing, request, page token): each issued token with its own request (the control: OK), with the
    other requests of its list, with its request's filters changed, and the first token of every other list."""
    out = []
    firsts = {path: next((x.issued for x in listed if x.issued), "") for path, listed in found.items()}
    for path, listed in found.items():
        for listing in listed:
            tokens = [x.issued for x in listed if x.issued] + [t for p, t in firsts.items() if t and p != path]
            out += [(path, listing, listing.request, token) for token in tokens]
            if listing.issued:
                out += [(path, listing, variant, listing.issued) for variant in filter_variants(listing.request)]
    return out


def shown(page_token: str) -> str:
    """A page token as its JSON body when it has one (forged cursors are read at a glance), else as sent."""
    try:
        return json.dumps(fuzz.read_token(page_token))[:300]
    except (ValueError, RecursionError):
        return repr(page_token[:300])


def own_fingerprint(page_token: str, issued: str) -> bool:
    """Whether `page_token` is of the suite's shape and carries the fingerprint of the token `issued`."""
    try:
        body = fuzz.read_token(page_token)
    except (ValueError, RecursionError):
        return False
    return bool(issued) and isinstance(body, dict) and body.get("q") == fuzz.read_token(issued)["q"]


def test_page_tokens_forged_are_ok_or_invalid_argument(live, actors, rec):
    world = matrix.build(actors, live.service_token)
    principals = Principals(live, actors, world)
    valid = seeds(world, live.clock.now())
    watcher = Unhandled()
    logging.getLogger().addHandler(watcher)
    codes, kinds = collections.Counter(), collections.Counter()
    bad: list[str] = []
    lock = threading.Lock()
    calls = {}
    found: dict[str, list[Listing]] = {}
    try:
        for server, method in list_rpcs():
            path = f"/{method.containing_service.full_name}/{method.name}"
            calls[path] = typed_call(live, server, method)
            found[path] = listings(calls[path], valid[path], principals)

        def send(item):
            path, listing, request, kind, page_token = item
            request = with_fields(request, page_token=page_token)
            try:
                calls[path](request, metadata=md(listing.token), timeout=30)
                code, text = "OK", ""
            except grpc.RpcError as err:
                code, text = err.code().name, f"{err.code().name} {err.details()}"
            with lock:
                codes[code] += 1
                kinds[kind] += 1
                if kind == "forged cursor" and own_fingerprint(page_token, listing.issued):
                    kinds["own fingerprint"] += 1
                if code not in ("OK", "INVALID_ARGUMENT"):
                    bad.append(f"{path} {kind}: {text[:120]} <- page_token={shown(page_token)} with "
                               f"{str(with_fields(request, page_token=''))[:200]!r}")

        for path, listed in found.items():
            if not listed:
                continue
            tokens = st.one_of(*[st.tuples(st.just(x), fuzz.page_tokens([x.issued] if x.issued else []))
                                 for x in listed])

            @settings(settings.get_profile("proof"), max_examples=PAGE_TOKENS_PER_LIST // BATCH)
            @given(st.lists(tokens, min_size=BATCH, max_size=BATCH))
            def run(items):
                with ThreadPoolExecutor(WORKERS) as pool:
                    list(pool.map(send, [(path, x, x.request, kind, token) for x, (kind, token) in items]))

            run()
        paged = {path: [x for x in listed if x.issued][:EDGE_LISTINGS] for path, listed in found.items()}
        edges = [(path, x, x.request, "forged cursor", token) for path, listed in paged.items() for x in listed
                 for token in fuzz.edge_page_tokens(x.issued)]
        again = [(path, x, request, "replayed", token) for path, x, request, token in replays(found)]
        with ThreadPoolExecutor(WORKERS) as pool:  # a fixed corpus of edge cursors, and the issued tokens replayed
            list(pool.map(send, edges + again))
        crashes = health_failures(live, "the forged page tokens")
    finally:
        logging.getLogger().removeHandler(watcher)
    unhandled = watcher.records
    internal = codes["INTERNAL"] + codes["UNKNOWN"]
    unpaged = [path for path, listed in found.items() if not any(x.issued for x in listed)]
    total = sum(codes.values())
    passed = not bad and not crashes and not unhandled and not unpaged
    rec(f"{total:,} forged page tokens over {len(found)} List RPCs ({kinds['random text']:,} random text, "
        f"{kinds['random bytes']:,} base64 of random bytes, {kinds['forged cursor']:,} of the suite's shape with "
        f"forged cursors, {kinds['own fingerprint']:,} of them with the request's own fingerprint; "
        f"{kinds['replayed']:,} issued tokens replayed with other parameters): {internal} INTERNAL/UNKNOWN, "
        f"{len(bad)} neither OK nor INVALID_ARGUMENT, {len(unpaged)} lists that issued no token, {len(crashes)} "
        f"crashes, {len(unhandled)} unhandled server faults; answers: "
        + ", ".join(f"{k} {v:,}" for k, v in codes.most_common()), passed, part="page tokens",
        requests=total, kinds=dict(kinds), codes=dict(codes), unpaged=unpaged, bad=bad[:SHOWN], crashes=crashes[:5],
        unhandled=unhandled[:10])
    assert passed, (bad[:10], unpaged, crashes[:5], unhandled[:5])


# --- bytes that are not the request --------------------------------------------------------------------------
def decodes(request_cls, data: bytes) -> bool:
    try:
        request_cls.FromString(data)
    except DecodeError:
        return False
    return True


def test_undecodable_requests_are_invalid_argument(live, actors, rec):
    world = matrix.build(actors, live.service_token)
    principals = Principals(live, actors, world)
    valid = seeds(world, live.clock.now())
    watcher = Unhandled()
    logging.getLogger().addHandler(watcher)
    kinds, codes, decoded_codes = collections.Counter(), collections.Counter(), collections.Counter()
    bad: list[str] = []
    lock = threading.Lock()
    every = rpcs()
    firsts = [valid[f"/{m.containing_service.full_name}/{m.name}"][:1] for _, m in every]
    try:
        for number, (server, method) in enumerate(every):
            if not principals.all_valid():  # a random message that decoded may have been a Logout
                principals.renew()
            path = f"/{method.containing_service.full_name}/{method.name}"
            request_cls = fuzz.message_factory.GetMessageClass(method.input_type)
            own = valid[path][0].SerializeToString() if valid[path] else b""
            others = [r for seeds_of in firsts[number + 1:] + firsts[:number] for r in seeds_of
                      if type(r) is not request_cls][:OTHER_TYPES]
            routes = [server] + (["gateway"] if server != "gateway" else [])
            ways = [(route, token) for route in routes for token in (principals.tokens["customer user"], "")]
            raw = {route: first_answer(live.channel(route), method) for route in routes}  # the bytes as they are

            def send(item):
                kind, data, (route, token) = item
                try:
                    raw[route](data, metadata=md(token) if token else (), timeout=30)
                    code, reason, details = "OK", "", ""
                except grpc.RpcError as err:
                    code, reason, details = err.code().name, reason_of(err), err.details() or ""
                decoded = decodes(request_cls, data)
                with lock:
                    kinds[kind] += 1
                    codes[code] += 1
                    if decoded:
                        decoded_codes[code] += 1
                        if code in ("INTERNAL", "UNKNOWN"):
                            bad.append(f"{path} via {route}, {kind} that decodes: {code} {details[:200]} "
                                       f"<- {data[:200]!r}")
                    elif code == reason == "INVALID_ARGUMENT" and path in details:
                        kinds["refused"] += 1
                    else:
                        bad.append(f"{path} via {route}, {kind}: {code} {reason} {details[:200]} "
                                   f"<- {data[:200]!r}")

            def sent(corpus: list[tuple[str, bytes]]) -> list:
                """Each of `corpus` every way (full form), or one way each in turn (short form)."""
                if FULL:
                    return [(kind, data, way) for kind, data in corpus for way in ways]
                return [(kind, data, ways[i % len(ways)]) for i, (kind, data) in enumerate(corpus)]

            rng = random.Random(None if FULL else path)  # the short form sends the same bytes each run
            corpus = fuzz.undecodable(method.input_type, own, others)
            corpus += [("random bytes", fuzz.random_bytes(rng, own)) for _ in range(RANDOM_BYTES)]
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(send, sent(corpus)))
        crashes = health_failures(live, "the undecodable requests")
    finally:
        logging.getLogger().removeHandler(watcher)
    unhandled = watcher.records
    total = sum(codes.values())
    decoded = sum(decoded_codes.values())
    internal = codes["INTERNAL"] + codes["UNKNOWN"]
    passed = not bad and not crashes and not unhandled
    ways = "each every way" if FULL else "each one way in turn"
    rec(f"{total:,} requests that are not their message over {len(every)} RPCs, raw, to their servers and through "
        f"the gateway, with and without a token ({ways}; {kinds['invalid UTF-8']:,} invalid UTF-8 in a string field, "
        f"{kinds['truncated']:,} truncated, {kinds['field number 0']:,} field number 0 or a bad wire type, "
        f"{kinds['another type']:,} another type's message with invalid UTF-8, {kinds['random bytes']:,} random "
        f"bytes): {kinds['refused']:,} of the {total - decoded:,} that do not decode INVALID_ARGUMENT naming the "
        f"method, {decoded:,} that happen to decode answered as requests ("
        + ", ".join(f"{k} {v:,}" for k, v in decoded_codes.most_common())
        + f"); {internal} INTERNAL/UNKNOWN, {len(bad)} other misanswers, {len(crashes)} crashes, "
        f"{len(unhandled)} unhandled server faults", passed, part="undecodable",
        requests=total, kinds=dict(kinds), decoded=dict(decoded_codes), bad=bad[:SHOWN], crashes=crashes[:5],
        unhandled=unhandled[:10])
    assert passed, (bad[:10], crashes[:5], unhandled[:5])
