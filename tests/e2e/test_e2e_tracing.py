"""Tracing end to end: the suite's real processes export OTLP/gRPC to a real receiver served here on loopback (the
collector's TraceService from opentelemetry-proto). One reveal through the gateway, sent under the caller's own
`traceparent`, is one trace with the spans of every service it touched, parented correctly; every exported byte
of the README's walk-throughs is scanned for secrets, passwords, tokens and logon user names; with tracing off
nothing is exported."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.conftest import BACKENDS, require_backend
from tests.e2e.conftest import E2E
from tests.e2e.readme import run_readme
from tests.helpers import status_details
from tests.e2e.relay_world import PASSWORD, RelayWorld, md, ts

pytestmark = pytest.mark.e2e

SERVER, CLIENT, INTERNAL = (trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT,
                            trace_pb2.Span.SPAN_KIND_INTERNAL)
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SECRET = "Trace-Planted-Secret-8731"
LOGON_USER = "TRACEUSR8731"
TOKEN_SHAPE = re.compile(r"rs_[A-Za-z0-9_-]{40,}")  # a bearer token: "rs_" + 43 url-safe characters
README_PLANTED = ("Sup3r-Secret!", "Rsctl-Secret-1", "choose a long password", "another long password",
                  "engineer long password", "a third long password", "SUPPORT01")


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver keeping every export request."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request, context):  # noqa: N802 - the generated servicer's name
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[str, trace_pb2.Span]]:
        """(service.name, span) of everything received so far."""
        out = []
        with self.lock:
            requests = list(self.requests)
        for request in requests:
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope in resource_spans.scope_spans:
                    out.extend((service, span) for span in scope.spans)
        return out

    def text(self) -> str:
        """Everything received, as text: names, attributes, events, statuses, resources."""
        with self.lock:
            return "\n".join(str(request) for request in self.requests)

    def stop(self) -> None:
        self.server.stop(0)


def attributes(span: trace_pb2.Span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return out


def traced_env(receiver: Receiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module", params=BACKENDS)
def traced(request, tmp_path_factory):
    require_backend(request.param)
    receiver = Receiver()
    suite = E2E(request.param, tmp_path_factory.mktemp(f"traced-{request.param}"), traced_env(receiver))
    try:
        suite.start()
        yield suite, receiver
    finally:
        suite.stop()
        receiver.stop()


def log_entries(suite: E2E) -> list[dict]:
    return [json.loads(line) for line in suite.logs().splitlines() if line.startswith("{")]


def wait_for(receiver: Receiver, done, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        spans = receiver.spans()
        if done(spans):
            return spans
        if time.monotonic() > deadline:
            names = sorted({(service, span.name, span.kind, span.trace_id.hex()[:8]) for service, span in spans
                            if "/" in span.name})
            raise AssertionError(f"{what}: not exported within {timeout:.0f} s; received {names}")
        time.sleep(0.2)


def test_a_reveal_through_the_gateway_is_one_trace_under_the_callers_own(traced, tmp_path):
    suite, receiver = traced
    world = RelayWorld(suite, tmp_path).make_people()
    line = world.new_line("R3_SUPPORT", {"host": "prd-app01", "instance_number": "00"})
    keeper = md(world.tokens["keeper"])
    entry = world.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=line.system, logon_data=dp.LogonData(
        kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name=LOGON_USER, client="100",
        expire_time=ts(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7))), secret=SECRET),
        metadata=keeper).logon_data
    parent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    revealed = world.depot.RevealLogonData(dp.RevealLogonDataRequest(name=entry.name, reason="trace it"),
                                           metadata=keeper + (("traceparent", parent),))
    assert revealed.secret == SECRET

    reveal = "remotesupport.depot.v1.LogonDepotService/RevealLogonData"
    check = "remotesupport.authz.v1.AuthzService/CheckBulk"  # a reveal asks its checks in one bulk call

    def complete(spans) -> bool:
        mine = [(svc, s) for svc, s in spans if s.trace_id.hex() == CALLER_TRACE]
        return {("remotesupport-gateway", reveal), ("remotesupport-depot", reveal),
                ("remotesupport-authz", check)} <= {(svc, s.name) for svc, s in mine if s.kind == SERVER}

    spans = [(svc, s) for svc, s in wait_for(receiver, complete, "the reveal's trace")
             if s.trace_id.hex() == CALLER_TRACE]
    by_id = {s.span_id: (svc, s) for svc, s in spans}

    def one(service: str, name: str, kind) -> trace_pb2.Span:
        found = [s for svc, s in spans if svc == service and s.name == name and s.kind == kind]
        assert len(found) == 1, (service, name, kind, [(svc, s.name) for svc, s in spans])
        return found[0]

    def parent_of(span: trace_pb2.Span) -> tuple[str, trace_pb2.Span]:
        assert span.parent_span_id in by_id, f"{span.name}'s parent is not in the trace"
        return by_id[span.parent_span_id]

    # the caller's span is the root: the gateway's server span is its child
    gateway = one("remotesupport-gateway", reveal, SERVER)
    assert gateway.parent_span_id.hex() == CALLER_SPAN
    assert attributes(gateway)["rpc.grpc.status_code"] == 0
    assert attributes(gateway)["rpc.service"] == "remotesupport.depot.v1.LogonDepotService"
    # gateway -> depot: the gateway's client span, then the depot's server span under it
    forward = one("remotesupport-gateway", reveal, CLIENT)
    assert parent_of(forward)[1] is gateway
    depot = one("remotesupport-depot", reveal, SERVER)
    assert parent_of(depot)[1] is forward
    assert attributes(depot)["rpc.grpc.status_code"] == 0
    # depot -> authz: the consultation (its checks travel together), its client span, authz's server span
    consultations = [s for svc, s in spans if svc == "remotesupport-depot" and s.name == "authz consultation"]
    assert consultations and all(parent_of(s)[1] is depot for s in consultations)
    assert len(consultations) == 1 and attributes(consultations[0])["remotesupport.authz.checks"] >= 1
    assert attributes(consultations[0])["remotesupport.authz.travelled_with"] >= \
        attributes(consultations[0])["remotesupport.authz.checks"]
    asked = one("remotesupport-depot", check, CLIENT)
    assert parent_of(asked)[1] in consultations
    decided = one("remotesupport-authz", check, SERVER)
    assert parent_of(decided)[1] is asked
    # the database statements and the barrier's work are children within each service
    for service, server_span in (("remotesupport-depot", depot), ("remotesupport-authz", decided)):
        statements = [s for svc, s in spans if svc == service and "db.statement" in attributes(s)]
        assert statements, f"{service}: no statement spans"
        for statement in statements:
            ancestor = statement
            while ancestor.span_id != server_span.span_id:
                ancestor = parent_of(ancestor)[1]
    opened = [s for svc, s in spans if svc == "remotesupport-depot" and s.name == "barrier open"]
    assert opened and attributes(opened[0])["remotesupport.barrier.field"]
    # each service's access line of the call is logged under the trace id: a log line leads to its trace
    access = {(e["service"], e["method"].rsplit("/", 1)[-1]) for e in log_entries(suite)
              if e.get("msg") == "rpc" and e.get("request_id") == CALLER_TRACE}
    assert {("gateway", "RevealLogonData"), ("depot", "RevealLogonData"), ("authz", "CheckBulk")} <= access


def test_a_refusal_is_traced_with_its_code_and_reason(traced, tmp_path):
    suite, receiver = traced
    world = RelayWorld(suite, tmp_path).make_people()
    line = world.new_line("R3_SUPPORT", {"host": "prd-app01", "instance_number": "00"})
    trace_id = os.urandom(16).hex()
    with pytest.raises(grpc.RpcError) as refused:
        world.depot.ListLogonData(dp.ListLogonDataRequest(parent=line.system),
                                  metadata=md(world.tokens["basis"]) + (("traceparent", f"00-{trace_id}-{CALLER_SPAN}-01"),))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reason, _, info = status_details(refused.value)
    assert info["request_id"] == trace_id  # the request id the caller is shown is the trace id...
    denied = [e for e in log_entries(suite) if e.get("msg", "").startswith("denied ") and trace_id in str(e)]
    assert [(e["service"], e["request_id"]) for e in denied] == [("authz", trace_id)]  # ...and the logs' one
    method = "remotesupport.depot.v1.LogonDepotService/ListLogonData"

    def served(spans):
        return [s for svc, s in spans if svc == "remotesupport-depot" and s.trace_id.hex() == trace_id
                and s.name == method and s.kind == SERVER]

    span = served(wait_for(receiver, served, "the refused call's span"))[0]
    assert attributes(span)["rpc.grpc.status_code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert reason and attributes(span)["remotesupport.error.reason"] == reason
    assert span.status.code == trace_pb2.Status.STATUS_CODE_UNSET  # an answer, not the server's fault


def test_background_work_is_a_trace_of_its_own_per_pass(traced):
    suite, receiver = traced
    steps = {"depot expiry sweep", "depot refused-reveal counts", "depot re-wrap batch"}

    def passes(spans):
        return ({s.name for svc, s in spans if svc == "remotesupport-depot"} >= steps | {"depot background pass"}
                and any(s.name == "connections sweep" for _, s in spans))
    spans = wait_for(receiver, passes, "the first background passes")
    roots = {s.span_id: s for svc, s in spans if s.name in ("depot background pass", "connections sweep")}
    assert roots and all(not s.parent_span_id for s in roots.values())  # each pass starts a trace
    depot_steps = [s for svc, s in spans if svc == "remotesupport-depot" and s.name in steps]
    assert depot_steps and all(roots[s.parent_span_id].name == "depot background pass" for s in depot_steps)
    assert all("remotesupport.handled" in attributes(s) for s in depot_steps)
    sweep = next(s for s in roots.values() if s.name == "connections sweep")
    assert {"remotesupport.windows_expired", "remotesupport.assignments_reconciled"} <= set(attributes(sweep))


def test_the_readme_walkthroughs_export_no_secret_password_token_or_logon_user(traced, tmp_path):
    suite, receiver = traced
    for name in ("grpcurl", "rsctl"):
        run_readme(suite, name, tmp_path)
    wait_for(receiver, lambda spans: any(s.name.endswith("/RevealLogonData") for _, s in spans), "the walk-throughs")
    time.sleep(1.0)  # the batch processors' last exports (scheduled every 100 ms)
    text = receiver.text()
    assert len(receiver.spans()) > 100
    secrets = [Path(p).read_text().strip() for p in sorted(suite.var.rglob("*.token"))]
    assert len(secrets) >= 3, "the services' own tokens were not found"  # connections', depot's, gateway's
    secrets += [suite.admin_token, PASSWORD, SECRET, LOGON_USER, *README_PLANTED]
    found = [value for value in secrets if value and value in text]
    assert not found, f"planted values in exported spans: {found}"
    assert not TOKEN_SHAPE.search(text), "a bearer token in the exported spans"
    bearer = [text[max(0, m.start() - 200):m.end() + 80] for m in re.finditer(r"(?i)bearer\s+\S", text)]
    assert not bearer, f"a bearer credential in the exported spans: {bearer}"


def test_with_tracing_off_nothing_is_exported(tmp_path):
    require_backend("sqlite")
    receiver = Receiver()
    env = {**traced_env(receiver), "OTEL_SDK_DISABLED": "true"}
    suite = E2E("sqlite", tmp_path, env)
    try:
        suite.start()
        world = RelayWorld(suite, tmp_path).make_people()
        world.new_line("R3_SUPPORT", {"host": "prd-app01", "instance_number": "00"})
        time.sleep(1.0)
        assert receiver.requests == []
        assert "(tracing on)" not in suite.logs()
    finally:
        suite.stop()
        receiver.stop()
