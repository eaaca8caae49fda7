"""The tracing group's verdicts (bench/tracing.py) and its OTLP sink counting what it is sent."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from bench import tracing
from bench.peers import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]


def result(side: str, clients: int, cpu: float) -> SimpleNamespace:
    return SimpleNamespace(side=side, clients=clients, cpu_us_per_request=cpu)


def test_the_verdict_is_the_median_of_the_rounds_ratios_per_client_count(monkeypatch):
    monkeypatch.setattr(tracing, "ROUNDS", 3)
    results = [result("off 1", 1, 1000), result("on 1", 1, 1100),  # 1.10
               result("off 2", 1, 2000), result("on 2", 1, 2600),  # 1.30: a busier stretch weighs on both sides
               result("off 3", 1, 1000), result("on 3", 1, 1200),  # 1.20
               result("off 1", 32, 900), result("on 1", 32, 990), result("off 2", 32, 0), result("on 2", 32, 5)]
    assert tracing.median_ratios(results, [1, 32, 4]) == {1: 1.2, 32: 1.1}  # a round without CPU does not count
    figures = {tracing.ratio_figure(1): 1.12, tracing.ratio_figure(32): 1.2}
    got = tracing.targets(figures, [1, 32])
    assert [(t["name"], t["value"], t["verdict"]) for t in got] == [
        ("depot reveal CPU with tracing on / off, 1 client(s) (median of 3 rounds)", 1.12, "PASS"),
        ("depot reveal CPU with tracing on / off, 32 client(s) (median of 3 rounds)", 1.2, "FAIL")]
    assert tracing.targets({}, [1, 32]) == []  # the group did not run: no verdict


def test_the_sink_counts_every_span_and_the_spans_of_each_reveals_trace(tmp_path):
    port, count = free_port(), tmp_path / "count"
    env = dict(os.environ, BENCH_OTLP_PORT=str(port), BENCH_OTLP_COUNT_FILE=str(count), PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "bench.otlpsink"], env=env)
    try:
        wait_port(port, 60, process)
        reveal, background = b"r" * 16, b"b" * 16
        depot = trace_service_pb2.ExportTraceServiceRequest()
        resource = depot.resource_spans.add()
        resource.resource.attributes.add(key="service.name").value.string_value = "remotesupport-depot"
        scope = resource.scope_spans.add()
        scope.spans.add(name="remotesupport.depot.v1.LogonDepotService/RevealLogonData", trace_id=reveal,
                        kind=trace_pb2.Span.SPAN_KIND_SERVER)
        scope.spans.add(name="SELECT", trace_id=reveal, parent_span_id=b"p" * 8)
        scope.spans.add(name="depot background pass", trace_id=background)  # not a reveal's
        authz = trace_service_pb2.ExportTraceServiceRequest()  # another process, another export, the same trace
        resource = authz.resource_spans.add()
        resource.resource.attributes.add(key="service.name").value.string_value = "remotesupport-authz"
        resource.scope_spans.add().spans.add(name="remotesupport.authz.v1.AuthzService/CheckBulk", trace_id=reveal,
                                             parent_span_id=b"q" * 8, kind=trace_pb2.Span.SPAN_KIND_SERVER)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = trace_service_pb2_grpc.TraceServiceStub(channel).Export
            export(depot, timeout=10)
            export(authz, timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0 and count.read_text() == "4"
    assert json.loads((tmp_path / "count.json").read_text()) == {"traces": 1, "spans": 3, "names": {
        "remotesupport-depot: remotesupport.depot.v1.LogonDepotService/RevealLogonData": 1,
        "remotesupport-depot: SELECT": 1, "remotesupport-authz: remotesupport.authz.v1.AuthzService/CheckBulk": 1}}


def test_an_untraced_restart_drops_every_otel_variable_a_traced_one_added():
    restarted = []
    ours = SimpleNamespace(supervisor=SimpleNamespace(env={"RS_VAR_DIR": "v"}),
                           restart=lambda service, **env: (ours.supervisor.env.update(env),
                                                           restarted.append((service, dict(ours.supervisor.env)))))
    tracing._restart(ours, OTEL_EXPORTER_OTLP_ENDPOINT="http://x:1", OTEL_TRACES_SAMPLER="parentbased_traceidratio")
    tracing._restart(ours)
    assert [service for service, _ in restarted] == ["authz", "depot"] * 2
    assert restarted[-1][1] == {"RS_VAR_DIR": "v"}  # the untraced side is untraced


def test_the_span_cost_counts_only_what_the_sink_received(tmp_path):
    per_span = tracing.span_cost_us(tmp_path)
    assert 0 < per_span < 10_000
