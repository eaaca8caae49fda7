"""Prometheus metrics: requests, latency, errors by code, authorization decisions and sweeps.

Each process serves them on http://RS_METRICS_HOST:RS_<SVC>_METRICS_PORT/metrics (off when the port is 0).
Services call `sweep_done(kind, count)` after each background sweep; the interceptor chain records the rest."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("rs_requests", "gRPC calls served, by full method and status code.", ["method", "code"])
REQUEST_SECONDS = Histogram("rs_request_seconds", "Time to serve a gRPC call, by full method.", ["method"],
                            buckets=LATENCY_BUCKETS)
AUTHZ_DECISIONS = Counter("rs_authz_decisions", "Authorization decisions enforced on incoming calls "
                          "(allowed: true, false, or unavailable when authz did not answer).", ["allowed"])
SWEEPS = Counter("rs_sweeps", "Background sweeps completed, by service and kind.", ["service", "kind"])
SWEPT_ITEMS = Counter("rs_swept_items", "Rows a sweep acted on (closed, purged, re-wrapped...), by service "
                      "and kind.", ["service", "kind"])
# the relay (services/connections/relay)
RELAY_CONNECTORS = Gauge("rs_relay_connectors", "Service Connectors attached to this relay replica.")
RELAY_SESSIONS = Gauge("rs_relay_sessions", "Live sessions (tunnels) carried by this relay replica.")
RELAY_BYTES = Counter("rs_relay_bytes", "Bytes carried by the relay, by direction (to_target, from_target).",
                      ["direction"])
RELAY_REFUSALS = Counter("rs_relay_refusals", "Tunnel admissions and connector attachments refused, by reason.",
                         ["reason"])
RELAY_ENDS = Counter("rs_relay_session_ends", "Sessions ended, by reason.", ["reason"])

_service: list[str] = [""]


def set_service(service: str) -> None:
    """The process's service (app.main sets it); the default `service` label of sweep metrics."""
    _service[0] = service


def _caller_service() -> str:
    """'depot' for code in services.depot.*, 'gateway' for gateway.*; else the process's service."""
    try:
        module = sys._getframe(2).f_globals.get("__name__", "")  # noqa: SLF001 - the caller of sweep_done
    except ValueError:
        module = ""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "services" and parts[1] != "kit":
        return parts[1]
    if parts and parts[0] == "gateway":
        return "gateway"
    return _service[0] or "unknown"


def sweep_done(kind: str, count: int = 0, *, service: str | None = None) -> None:
    """Record one completed sweep of `kind` (e.g. "expiry", "purge", "auto_close", "rewrap") that acted on
    `count` rows. Call it once per sweep run, after its transaction committed."""
    label = service or _caller_service()
    SWEEPS.labels(service=label, kind=kind).inc()
    if count:
        SWEPT_ITEMS.labels(service=label, kind=kind).inc(count)


def observe_request(method: str, code: str, seconds: float) -> None:
    REQUESTS.labels(method=method, code=code).inc()
    REQUEST_SECONDS.labels(method=method).observe(seconds)


def authz_decision(allowed: bool | None) -> None:
    """allowed None: authz could not answer (the call was refused)."""
    AUTHZ_DECISIONS.labels(allowed="unavailable" if allowed is None else str(bool(allowed)).lower()).inc()


def serve(port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> tuple[int, Callable[[], None]]:
    """Start the /metrics HTTP endpoint in a thread; returns (bound port, stop)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound = server.server_address[1]
    logger.info("metrics on http://%s:%d/metrics", host, bound)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return bound, stop
