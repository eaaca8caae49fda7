"""An OTLP/gRPC trace receiver for `make bench --only tracing`: accepts every export (the collector's TraceService
from opentelemetry-proto) and counts the spans, so the traced services pay the whole cost of exporting, in a
process of its own (its CPU is not the suite's). On SIGTERM it writes the count to BENCH_OTLP_COUNT_FILE.

Run: python -m bench.otlpsink (BENCH_OTLP_PORT, BENCH_OTLP_COUNT_FILE)."""
from __future__ import annotations

import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - the generated servicer's name
        n = sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
        with self.lock:
            self.spans += n
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    server.add_insecure_port(f"127.0.0.1:{int(os.environ['BENCH_OTLP_PORT'])}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop(1)
    Path(os.environ["BENCH_OTLP_COUNT_FILE"]).write_text(str(sink.spans))


if __name__ == "__main__":
    main()
