"""Tracing with OpenTelemetry: a span per RPC (served and called), per database statement, per authz
consultation, per barrier operation and per pass of background work, under the caller's W3C `traceparent`.

Configured only by the standard OTEL_* variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT,
OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER[_ARG], OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED, OTEL_BSP_*) and off
unless they name an exporter or an endpoint. Off, the kit never calls into OpenTelemetry: each hook is one test
of `ON`, chosen when a method's handler is built, not per call.

No attribute carries key material, a secret, a token or a logon user name: spans hold method names, status
codes, ErrorInfo reasons, SQL text (whose values are bound parameters, never in the text), counts and key
versions. `tests/e2e/test_e2e_tracing.py` scans every exported attribute for planted secrets."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, Mapping

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind, Status, StatusCode

ON = False  # True once configure() installed an exporter in this process
_provider: Any = None
_tracer: trace.Tracer = trace.get_tracer("remotesupport")  # a no-op tracer until configured

# Server span status per the RPC semantic conventions: these codes are the server's fault; the rest
# (PERMISSION_DENIED, INVALID_ARGUMENT, ...) are answers and leave the span's status unset.
_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
                            "DATA_LOSS"})
_CODE_NUMBERS = {code.name: code.value[0] for code in grpc.StatusCode}
REASON_ATTRIBUTE = "remotesupport.error.reason"
SUPPORTED_EXPORTERS = ("otlp", "console", "none")


class TracingConfigError(SystemExit):
    """An OTEL_* setting this suite cannot honour: the process stops with the message before serving."""


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables turn tracing on: an exporter other than `none`, or an OTLP endpoint,
    and OTEL_SDK_DISABLED not `true`."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return any(name.strip() not in ("", "none") for name in exporters.split(","))
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip())


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names, lower case (default `otlp`)."""
    return [n.strip() for n in (environ.get("OTEL_TRACES_EXPORTER", "") or "otlp").lower().split(",") if n.strip()]


def exporters_from(environ: Mapping[str, str] = os.environ) -> list:
    """The span exporters OTEL_TRACES_EXPORTER names (default `otlp`): OTLP over gRPC, or the console."""
    out = []
    for name in _exporter_names(environ):
        if name == "otlp":
            protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip().lower()
            if protocol != "grpc":
                raise TracingConfigError(
                    f"tracing: OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported; this suite exports "
                    "OTLP over gRPC (set it to grpc, or leave it unset)")
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            out.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
            out.append(ConsoleSpanExporter(out=sys.stdout))
        elif name != "none":
            raise TracingConfigError(f"tracing: OTEL_TRACES_EXPORTER={name} is not supported; use one of "
                                     f"{', '.join(SUPPORTED_EXPORTERS)}")
    return out


def destination(environ: Mapping[str, str] = os.environ) -> str:
    """Where the OTEL_* variables send spans, for a person to read."""
    endpoint = (environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or "http://localhost:4317")
    return ", ".join(f"OTLP/gRPC at {endpoint}" if n == "otlp" else "the console (stdout)" if n == "console"
                     else n for n in _exporter_names(environ) if n != "none")


def configure(service: str, environ: Mapping[str, str] = os.environ, exporters: list | None = None) -> bool:
    """Turn tracing on for this process when the OTEL_* variables ask for it (or `exporters` are given, as
    tests do). The service name defaults to `remotesupport-<service>`; the sampler is OTEL_TRACES_SAMPLER's
    (the SDK's default: parent-based, always on). Returns whether tracing is on."""
    global ON, _provider, _tracer
    if exporters is None:
        if not wanted(environ):
            return False
        exporters = exporters_from(environ)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = environ.get("OTEL_SERVICE_NAME", "").strip() or f"remotesupport-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))  # + OTEL_RESOURCE_ATTRIBUTES
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _tracer, ON = provider, provider.get_tracer("remotesupport"), True
    return True


def shutdown() -> None:
    """Export what is buffered and stop (at process exit)."""
    global ON, _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer, ON = None, trace.get_tracer("remotesupport"), False


def current_trace_id() -> str:
    """The current span's trace id as 32 hex digits, "" when there is none (the request id when tracing is on)."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def trace_id_of(traceparent: str) -> str:
    """The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), "" when it is not one."""
    if len(traceparent) != 55 or traceparent[2] != "-" or traceparent[35] != "-" or traceparent[52] != "-":
        return ""
    trace_id = traceparent[3:35]
    try:
        return trace_id if int(trace_id, 16) != 0 and trace_id == trace_id.lower() else ""
    except ValueError:
        return ""


# --- served RPCs ------------------------------------------------------------------------------------------
class _MetadataGetter:
    """Reads W3C trace context from gRPC invocation metadata (a sequence of (key, value) pairs)."""

    def get(self, carrier, key: str):
        values = [value for k, value in carrier or () if k == key and isinstance(value, str)]
        return values or None

    def keys(self, carrier):
        return [k for k, _ in carrier or ()]


_GETTER = _MetadataGetter()


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


@contextlib.contextmanager
def _server_span(method: str, attributes: dict, context) -> Iterator[trace.Span]:
    parent = extract(context.invocation_metadata(), getter=_GETTER)
    with _tracer.start_as_current_span(method.lstrip("/"), context=parent, kind=SpanKind.SERVER,
                                       attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException:
            _end_rpc(span, context, "UNKNOWN")
            raise
        _end_rpc(span, context, "OK")


def _end_rpc(span: trace.Span, context, default: str) -> None:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - a context that does not expose the code: the default stands
        code = None
    name = _code_name(code, default)
    span.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS.get(name, 2))
    if name in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, name))


def _code_name(code, default: str) -> str:
    """A grpc.StatusCode's name, `default` for anything else."""
    return code.name if isinstance(code, grpc.StatusCode) else default


def served(method: str, behavior, kind: str = "unary"):
    """`behavior` of a served method inside a SERVER span that continues the caller's trace. `kind` is the
    behaviour's shape: "unary" or "stream" for a coroutine (a streamed response written with context.write),
    "generator" for an async generator of responses. Returned unchanged when tracing is off."""
    if not ON:
        return behavior
    attributes = _rpc_attributes(method)
    if kind == "generator":
        async def traced_generator(request, context):
            with _server_span(method, attributes, context):
                async for response in behavior(request, context):
                    yield response
        return traced_generator

    async def traced(request, context):
        with _server_span(method, attributes, context):
            return await behavior(request, context)
    return traced


def note_error(reason: str) -> None:
    """Record a refused or failed call's ErrorInfo reason on its span."""
    if ON and reason:
        trace.get_current_span().set_attribute(REASON_ATTRIBUTE, reason)


# --- called RPCs, statements, internal work ---------------------------------------------------------------
def client_interceptors() -> list | None:
    """The channel interceptors for streamed calls: a CLIENT span per call and `traceparent` (None when off).
    Unary calls are traced by `traced_channel` instead."""
    if not ON:
        return None
    from opentelemetry.instrumentation.grpc import aio_client_interceptors
    return [i for i in aio_client_interceptors(tracer_provider=_provider)
            if not isinstance(i, grpc.aio.UnaryUnaryClientInterceptor)]


def traced_channel(channel):
    """`channel` with a CLIENT span and `traceparent` per unary call (itself when off). The kit's own rather than
    the instrumentation's interceptor: any unary interceptor sends every call through grpc.aio's intercepted-call
    path, which cost more than the span itself (bench/README.md, the tracing group)."""
    return _TracedChannel(channel) if ON else channel


class _TracedChannel:
    """A grpc.aio channel whose unary-unary multicallables are traced; everything else is the channel's."""

    def __init__(self, channel) -> None:
        self._channel = channel

    def unary_unary(self, method: str, *args, **kwargs):
        return _TracedUnary(self._channel.unary_unary(method, *args, **kwargs), method)

    def __getattr__(self, attribute: str):
        return getattr(self._channel, attribute)

    async def __aenter__(self):
        await self._channel.__aenter__()
        return self

    async def __aexit__(self, *exc_info):
        return await self._channel.__aexit__(*exc_info)


class _TracedUnary:
    """A unary call in a CLIENT span, the current trace context sent as `traceparent` (replacing any the caller's
    metadata carries, as the gateway's forwarded metadata does), its status code on the span. Callers await it."""

    __slots__ = ("_call", "_name", "_attributes")

    def __init__(self, call, method: str) -> None:
        self._call, self._name, self._attributes = call, method.lstrip("/"), _rpc_attributes(method)

    async def __call__(self, request, *, timeout=None, metadata=None, **kwargs):
        from opentelemetry.instrumentation.utils import is_instrumentation_enabled
        if not is_instrumentation_enabled():  # inside quiet()
            return await self._call(request, timeout=timeout, metadata=metadata, **kwargs)
        with _tracer.start_as_current_span(self._name, kind=SpanKind.CLIENT, attributes=self._attributes,
                                           record_exception=False, set_status_on_exception=False) as current:
            carrier: dict[str, str] = {}
            inject(carrier)
            sent = tuple(kv for kv in metadata or () if kv[0] not in carrier) + tuple(carrier.items())
            try:
                response = await self._call(request, timeout=timeout, metadata=sent, **kwargs)
            except grpc.RpcError as err:
                name = _code_name(err.code() if hasattr(err, "code") else None, "UNKNOWN")
                current.set_attribute("rpc.grpc.status_code", _CODE_NUMBERS.get(name, 2))
                current.set_status(Status(StatusCode.ERROR, name))  # the code only: a message can quote a caller
                raise
            current.set_attribute("rpc.grpc.status_code", 0)
            return response


def instrument_engine(engine) -> None:
    """A span per SQL statement of this SQLAlchemy (async) engine, with the statement's text, never its values."""
    if not ON:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter
    usage = get_meter("remotesupport").create_up_down_counter("db.client.connections.usage")
    EngineTracer(_provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
                 getattr(engine, "sync_engine", engine), usage, enable_commenter=False)


_NOTHING = contextlib.nullcontext()


def _failed(current: trace.Span, exc: BaseException) -> None:
    """The class and reason only: an exception's text stays out of spans."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        current.set_attribute(REASON_ATTRIBUTE, reason)
    current.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@contextlib.contextmanager
def _internal(name: str, attributes: dict | None, parent=None) -> Iterator[trace.Span]:
    with _tracer.start_as_current_span(name, context=parent, attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as exc:
            _failed(current, exc)
            raise


class _Leaf:
    """A span that is never the current one (nothing runs under it): cheaper than _internal, for statements and
    barrier operations."""

    __slots__ = ("_span",)

    def __init__(self, name: str, attributes: dict | None) -> None:
        self._span = _tracer.start_span(name, attributes=attributes)

    def __enter__(self) -> trace.Span:
        return self._span

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            _failed(self._span, exc)
        self._span.end()
        return False


def span(name: str, attributes: dict | None = None):
    """An INTERNAL span around a piece of the suite's own work that may have spans of its own (an authz
    consultation, a pass of a sweep); a shared no-op when tracing is off. Attributes: counts, versions, SQL text -
    never a value."""
    if not ON:
        return _NOTHING
    return _internal(name, attributes)


def leaf(name: str, attributes: dict | None = None):
    """As `span`, for work that starts no span of its own (a statement, a barrier operation)."""
    if not ON:
        return _NOTHING
    return _Leaf(name, attributes)


def background(name: str, attributes: dict | None = None):
    """A root span (a trace of its own) for one pass of background work: a sweep, a re-wrap, a check round."""
    if not ON:
        return _NOTHING
    return _internal(name, attributes, otel_context.Context())


def annotate(current, attributes: dict) -> None:
    """Attributes on a span from `span()` / `background()` known only at its end (a no-op when tracing is off)."""
    if current is not None:
        current.set_attributes(attributes)


def quiet():
    """No spans from the instrumentations (statements, calls) inside: for routine passes that would be noise."""
    if not ON:
        return _NOTHING
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    return suppress_instrumentation()
