"""The tracing group's verdicts (bench/tracing.py) and its OTLP sink counting what it is sent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from bench import tracing
from bench.peers import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]


def row(clients: int, cpu_ratio: float) -> dict:
    return {"comparison": tracing.COMPARISON["label"], "clients": clients, "cpu_ratio": cpu_ratio}


def test_the_target_is_the_cpu_ratio_on_over_off_per_client_count():
    got = tracing.targets([row(1, 1.12), row(32, 1.2), {"comparison": "other", "clients": 1, "cpu_ratio": 9}], [1, 32])
    assert [(t["name"], t["value"], t["verdict"]) for t in got] == [
        ("depot reveal CPU with tracing on / off, 1 client(s)", 1.12, "PASS"),
        ("depot reveal CPU with tracing on / off, 32 client(s)", 1.2, "FAIL")]
    assert tracing.targets([], [1, 32]) == []  # the group did not run: no verdict


def test_the_sink_counts_every_exported_span(tmp_path):
    port, count = free_port(), tmp_path / "count"
    env = dict(os.environ, BENCH_OTLP_PORT=str(port), BENCH_OTLP_COUNT_FILE=str(count), PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "bench.otlpsink"], env=env)
    try:
        wait_port(port, 60, process)
        request = trace_service_pb2.ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(3):
            scope.spans.add(name=f"s{i}", kind=trace_pb2.Span.SPAN_KIND_SERVER)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = trace_service_pb2_grpc.TraceServiceStub(channel).Export
            export(request, timeout=10)
            export(request, timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0 and count.read_text() == "6"
