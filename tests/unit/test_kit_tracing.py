"""Unit tests of the kit's tracing: which OTEL_* settings turn it on, what a served call's span says, the request
id a call logs under, internal and background spans, statement spans that carry text and never values."""
from __future__ import annotations

import re

import grpc
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.kit import interceptors, tracing
from services.kit.logs import request_id_var

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
METHOD = "/remotesupport.depot.v1.LogonDepotService/RevealLogonData"


@pytest.fixture
def exported():
    """Tracing on in this process with an in-memory exporter; `spans()` ends it and returns what was exported."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("depot", {}, exporters=[exporter])

    def spans():
        tracing.shutdown()  # flushes the batch processor
        return exporter.get_finished_spans()
    yield spans
    tracing.shutdown()
    assert not tracing.ON


class Context:
    """The parts of a grpc.aio.ServicerContext a served span reads."""

    def __init__(self, metadata=(), code=None) -> None:
        self.metadata, self._code = tuple(metadata), code

    def invocation_metadata(self):
        return self.metadata

    def code(self):
        return self._code


# --- configuration --------------------------------------------------------------------------------------
@pytest.mark.parametrize("environ,on", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, False),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
])
def test_tracing_is_on_only_when_the_otel_variables_name_an_exporter_or_endpoint(environ, on):
    assert tracing.wanted(environ) is on
    try:
        assert tracing.configure("depot", environ) is on and tracing.ON is on
    finally:
        tracing.shutdown()


def test_the_exporters_are_the_ones_otel_traces_exporter_names():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    assert [type(e) for e in tracing.exporters_from({})] == [OTLPSpanExporter]
    assert [type(e) for e in tracing.exporters_from({"OTEL_TRACES_EXPORTER": "otlp,console"})] == \
        [OTLPSpanExporter, ConsoleSpanExporter]
    assert tracing.exporters_from({"OTEL_TRACES_EXPORTER": "none"}) == []


@pytest.mark.parametrize("environ,named", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
     "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
    ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"),
])
def test_a_setting_the_suite_cannot_honour_stops_the_process_with_its_name(environ, named):
    with pytest.raises(tracing.TracingConfigError) as stopped:
        tracing.exporters_from(environ)
    assert named in str(stopped.value) and isinstance(stopped.value, SystemExit)


def test_the_service_name_defaults_to_the_suites_and_otel_service_name_wins(exported):
    assert tracing._provider.resource.attributes["service.name"] == "remotesupport-depot"
    tracing.shutdown()
    tracing.configure("depot", {"OTEL_SERVICE_NAME": "vault-eu1"}, exporters=[InMemorySpanExporter()])
    assert tracing._provider.resource.attributes["service.name"] == "vault-eu1"


@pytest.mark.parametrize("value,trace_id", [
    (TRACEPARENT, PARENT_TRACE),
    (f"00-{'0' * 32}-{PARENT_SPAN}-01", ""),           # the invalid all-zero trace id
    (f"00-{PARENT_TRACE.upper()}-{PARENT_SPAN}-01", ""),  # upper-case hex is not W3C
    (f"00-{'g' * 32}-{PARENT_SPAN}-01", ""),
    (TRACEPARENT[:-1], ""), ("", ""), ("x" * 55, ""),
])
def test_trace_id_of_a_traceparent(value, trace_id):
    assert tracing.trace_id_of(value) == trace_id


# --- off: nothing changes ---------------------------------------------------------------------------------
async def test_with_tracing_off_every_hook_is_the_identity_or_a_no_op():
    assert not tracing.ON

    async def behavior(request, context):
        return request
    assert tracing.served(METHOD, behavior) is behavior
    assert tracing.client_interceptors() is None
    assert tracing.span("x") is tracing.background("y") is tracing.quiet()
    assert tracing.current_trace_id() == ""


def test_the_request_id_without_tracing_is_the_callers_then_its_trace_id_then_new():
    assert not tracing.ON
    assert interceptors.request_id((("x-request-id", "req-7"), ("traceparent", TRACEPARENT))) == ""
    assert request_id_var.get() == "req-7"
    assert interceptors.request_id((("x-request-id", "bad id!"), ("traceparent", TRACEPARENT),
                                    ("authorization", "Bearer t"))) == "Bearer t"
    assert request_id_var.get() == PARENT_TRACE
    interceptors.request_id((("traceparent", "garbage"),))
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_var.get()) and request_id_var.get() != PARENT_TRACE


# --- on: served calls -------------------------------------------------------------------------------------
async def test_a_served_call_continues_the_callers_trace_and_the_request_id_is_the_trace_id(exported):
    seen = {}

    async def behavior(request, context):
        interceptors.request_id(context.invocation_metadata())
        seen["rid"] = request_id_var.get()
        return request + 1
    traced = tracing.served(METHOD, behavior)
    assert traced is not behavior
    assert await traced(41, Context([("traceparent", TRACEPARENT), ("x-request-id", "ignored")])) == 42
    (span,) = exported()
    assert span.name == METHOD.lstrip("/") and span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == PARENT_TRACE == seen["rid"]
    assert format(span.parent.span_id, "016x") == PARENT_SPAN and span.parent.is_remote
    assert dict(span.attributes) == {"rpc.system": "grpc", "rpc.service": "remotesupport.depot.v1.LogonDepotService",
                                     "rpc.method": "RevealLogonData", "rpc.grpc.status_code": 0}
    assert span.status.status_code == StatusCode.UNSET


async def test_a_refusal_is_an_answer_with_its_code_and_reason_and_a_fault_is_an_error(exported):
    async def refuse(request, context):
        tracing.note_error("NOT_ASSIGNED")
        return None

    async def fail(request, context):
        return None

    async def crash(request, context):
        raise RuntimeError("a secret-looking message")
    await tracing.served(METHOD, refuse)(None, Context(code=grpc.StatusCode.PERMISSION_DENIED))
    await tracing.served(METHOD, fail)(None, Context(code=grpc.StatusCode.INTERNAL))
    with pytest.raises(RuntimeError):
        await tracing.served(METHOD, crash)(None, Context())
    refused, failed, crashed = exported()
    assert refused.attributes["rpc.grpc.status_code"] == 7
    assert refused.attributes[tracing.REASON_ATTRIBUTE] == "NOT_ASSIGNED"
    assert refused.status.status_code == StatusCode.UNSET
    assert failed.attributes["rpc.grpc.status_code"] == 13 and failed.status.status_code == StatusCode.ERROR
    assert crashed.attributes["rpc.grpc.status_code"] == 2 and crashed.status.status_code == StatusCode.ERROR
    assert not crashed.events  # no exception event: its text stays out of the trace


async def test_a_streamed_response_is_one_span_around_every_message(exported):
    async def stream(request, context):
        for i in range(3):
            with tracing.span("step", {"i": i}):
                yield i
    got = [m async for m in tracing.served(METHOD, stream, "generator")(None, Context([("traceparent", TRACEPARENT)]))]
    assert got == [0, 1, 2]
    spans = exported()
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(server) == 1 and len(spans) == 4
    assert all(s.parent.span_id == server[0].context.span_id for s in spans if s.name == "step")


# --- on: internal work ------------------------------------------------------------------------------------
def test_internal_spans_nest_and_background_passes_start_traces_of_their_own(exported):
    class Refused(Exception):
        reason = "WINDOW_CLOSED"
    with tracing.span("outer"):
        with tracing.span("inner", {"remotesupport.handled": 3}):
            pass
        with tracing.background("sweep"):
            pass
        with pytest.raises(Refused):
            with tracing.span("refused"):
                raise Refused("text that stays out")
    inner, sweep, refused, outer = exported()
    assert inner.parent.span_id == outer.context.span_id and inner.attributes["remotesupport.handled"] == 3
    assert sweep.parent is None and sweep.context.trace_id != outer.context.trace_id
    assert refused.status.status_code == StatusCode.ERROR and refused.status.description == "Refused"
    assert refused.attributes[tracing.REASON_ATTRIBUTE] == "WINDOW_CLOSED" and not refused.events


def test_statement_spans_carry_the_text_never_the_values_and_quiet_suppresses_them(exported):
    engine = sa.create_engine("sqlite://")
    tracing.instrument_engine(engine)
    with engine.connect() as conn:
        with tracing.span("request"):
            conn.execute(sa.text("select :planted as v"), {"planted": "Planted-Value-1"})
        with tracing.quiet():
            conn.execute(sa.text("select 2"))
    spans = exported()
    statements = [s for s in spans if "db.statement" in s.attributes]
    assert [s.attributes["db.statement"] for s in statements] == ["select ? as v"]
    request = next(s for s in spans if s.name == "request")
    assert statements[0].parent.span_id == request.context.span_id
    assert not any("Planted-Value-1" in str(dict(s.attributes)) for s in spans)


def test_leaf_spans_are_children_of_the_current_span_and_never_current_themselves(exported):
    class Refused(Exception):
        reason = "SECRET_UNREADABLE"
    with tracing.span("request"):
        with tracing.leaf("barrier open", {"remotesupport.barrier.field": "secret"}):
            with tracing.span("inside"):  # work under a leaf is the request's, not the leaf's
                pass
        with pytest.raises(Refused):
            with tracing.leaf("barrier reseal"):
                raise Refused("text that stays out")
    inside, opened, resealed, request = exported()
    assert opened.parent.span_id == request.context.span_id == inside.parent.span_id
    assert opened.attributes["remotesupport.barrier.field"] == "secret"
    assert resealed.status.status_code == StatusCode.ERROR and resealed.status.description == "Refused"
    assert resealed.attributes[tracing.REASON_ATTRIBUTE] == "SECRET_UNREADABLE" and not resealed.events


def test_streamed_calls_get_the_instrumentations_interceptors_and_unary_calls_the_kits_span(exported):
    streamed = tracing.client_interceptors()
    assert streamed and all(isinstance(i, grpc.aio.ClientInterceptor) for i in streamed)
    assert not any(isinstance(i, grpc.aio.UnaryUnaryClientInterceptor) for i in streamed)  # grpc.aio's slow path


async def test_a_unary_call_is_a_client_span_whose_context_replaces_any_traceparent_sent(exported):
    seen = []

    async def answer(request, context):
        seen.append([v for k, v in context.invocation_metadata() if k == "traceparent"])
        if request == b"refuse":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "a message that stays out")
        return b"ok"
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "remotesupport.test.v1.Echo", {"Say": grpc.unary_unary_rpc_method_handler(answer)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with tracing.traced_channel(grpc.aio.insecure_channel(f"127.0.0.1:{port}")) as channel:
            say = channel.unary_unary("/remotesupport.test.v1.Echo/Say")
            with tracing.span("request"):
                assert await say(b"hi", timeout=5, metadata=(("traceparent", TRACEPARENT), ("x-a", "1"))) == b"ok"
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await say(b"refuse", timeout=5)
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                with tracing.quiet():
                    assert await say(b"quiet", timeout=5) == b"ok"
    finally:
        await server.stop(None)
    spans = exported()
    calls = [s for s in spans if s.kind == SpanKind.CLIENT]
    request = next(s for s in spans if s.name == "request")
    assert [s.name for s in calls] == ["remotesupport.test.v1.Echo/Say"] * 2  # none inside quiet()
    ok, denied = calls
    assert all(s.parent.span_id == request.context.span_id for s in calls)
    assert ok.attributes["rpc.grpc.status_code"] == 0 and ok.status.status_code == StatusCode.UNSET
    assert denied.attributes["rpc.grpc.status_code"] == 7
    assert denied.status.status_code == StatusCode.ERROR and denied.status.description == "PERMISSION_DENIED"
    # exactly one traceparent, the call's own span (the caller's forwarded one is replaced); none when quiet
    assert seen[0] == [f"00-{format(ok.context.trace_id, '032x')}-{format(ok.context.span_id, '016x')}-"
                       f"{int(ok.context.trace_flags):02x}"]
    assert len(seen[1]) == 1 and seen[2] == []
    assert PARENT_TRACE not in seen[0][0]


async def test_off_a_channel_is_returned_as_it_is():
    assert not tracing.ON
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        assert tracing.traced_channel(channel) is channel and tracing.client_interceptors() is None
    finally:
        await channel.close()


def test_make_run_says_where_the_spans_go():
    assert tracing.destination({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}) == "OTLP/gRPC at http://c:4317"
    assert tracing.destination({"OTEL_TRACES_EXPORTER": "console,otlp",
                                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4317"}) == \
        "the console (stdout), OTLP/gRPC at http://t:4317"
