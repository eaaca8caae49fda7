"""An OTLP/gRPC trace receiver for `make bench --only tracing`: accepts every export (the collector's TraceService
from opentelemetry-proto) and counts the spans, so the traced services pay the whole cost of exporting, in a
process of its own (its CPU is not the suite's).

On SIGTERM it writes to BENCH_OTLP_COUNT_FILE the number of spans received, and beside it (`<file>.json`) the
spans of the traces rooted in a served `BENCH_OTLP_ROOT` call (default RevealLogonData): how many such traces,
and per trace the spans by service and name. So spans per reveal are counted exactly, warm-ups included in both.

Run: python -m bench.otlpsink (BENCH_OTLP_PORT, BENCH_OTLP_COUNT_FILE, BENCH_OTLP_ROOT)."""
from __future__ import annotations

import collections
import json
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, root: str) -> None:
        self.root = root
        self.spans = 0
        self.by_trace: dict[bytes, collections.Counter] = collections.defaultdict(collections.Counter)
        self.rooted: set[bytes] = set()  # traces whose root is a served `root` call
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - the generated servicer's name
        with self.lock:
            for rs in request.resource_spans:
                service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "?")
                for scope in rs.scope_spans:
                    for span in scope.spans:
                        self.spans += 1
                        self.by_trace[span.trace_id][f"{service}: {span.name}"] += 1
                        if (span.kind == trace_pb2.Span.SPAN_KIND_SERVER and not span.parent_span_id
                                and span.name.endswith(self.root)):
                            self.rooted.add(span.trace_id)
        return trace_service_pb2.ExportTraceServiceResponse()

    def summary(self) -> dict:
        names: collections.Counter = collections.Counter()
        for trace_id in self.rooted:
            names.update(self.by_trace[trace_id])
        return {"traces": len(self.rooted), "spans": sum(names.values()), "names": dict(names.most_common())}


def main() -> None:
    sink = Sink(os.environ.get("BENCH_OTLP_ROOT", "/RevealLogonData"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    server.add_insecure_port(f"127.0.0.1:{int(os.environ['BENCH_OTLP_PORT'])}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop(1)
    count_file = Path(os.environ["BENCH_OTLP_COUNT_FILE"])
    with sink.lock:
        count_file.with_name(count_file.name + ".json").write_text(json.dumps(sink.summary()))
        count_file.write_text(str(sink.spans))


if __name__ == "__main__":
    main()
