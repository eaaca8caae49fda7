"""Operations: a kit server exposes Prometheus metrics on its own HTTP port (requests by method and code,
latency histograms, authorization decisions, sweeps), and its access log is JSON lines with the request id.
The server is the real kit server; the authorizer is a stand-in (this is a unit test of the kit)."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from remotesupport.authz.v1 import authz_pb2 as pb
from remotesupport.authz.v1 import authz_pb2_grpc
from services.kit import app as kit_app
from services.kit import auth, logs, metrics
from services.kit.auth import MethodPolicy
from services.kit.clock import ManualClock
from services.kit.config import ServiceConfig
from services.kit.errors import AuthzUnavailable, NotFound
from services.kit.server import ServerSpec

SERVICE = "remotesupport.authz.v1.AuthzService"
GET, LIST = f"/{SERVICE}/GetUser", f"/{SERVICE}/ListUsers"


class Probe(authz_pb2_grpc.AuthzServiceServicer):
    async def GetUser(self, request, context):
        return pb.GetUserResponse(user=pb.User(name=request.name))

    async def ListUsers(self, request, context):
        raise NotFound("no such users")


class StandInAuthorizer:
    """good: allowed; bad: unknown token; denied: authenticated, not allowed; down: authz unavailable."""

    async def check(self, token, permission, resource):
        if token == "down":
            raise AuthzUnavailable("authz did not answer")
        subject = auth.Subject("users/S0000000001", "CUSTOMER_USER", "customers/1")
        if token == "good":
            return auth.Decision(True, True, "", "d1", subject=subject)
        if token == "denied":
            return auth.Decision(False, True, "no", "d2", subject=subject)
        return auth.Decision(False, False, "unknown token", "d3")

    async def check_bulk(self, token, items):
        return [await self.check(token, p, r) for p, r in items]


class ProbeApp:
    def __init__(self) -> None:
        self.spec = ServerSpec(register=lambda s: authz_pb2_grpc.add_AuthzServiceServicer_to_server(Probe(), s),
                               service_names=[SERVICE],
                               policies={GET: MethodPolicy("authz.session"), LIST: MethodPolicy("authz.session")})
        self.authorizer = StandInAuthorizer()

    async def start(self):
        return None

    async def stop(self):
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def running(tmp_path):
    config = ServiceConfig(service="depot", port=0, var_dir=tmp_path, metrics_port=free_port())
    deps = kit_app.Deps(config, ManualClock(), lambda: "")

    async def build(_deps):
        return ProbeApp()

    server = await kit_app.start(deps, build)
    try:
        yield server
    finally:
        await server.stop(0.1)


async def call(running, method: str, token: str | None, rid: str = ""):
    md = ([("authorization", f"Bearer {token}")] if token else []) + ([("x-request-id", rid)] if rid else [])
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = authz_pb2_grpc.AuthzServiceStub(channel)
        rpc = stub.GetUser(pb.GetUserRequest(name="users/x"), metadata=md) if method == GET else \
            stub.ListUsers(pb.ListUsersRequest(), metadata=md)
        try:
            await rpc
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            return err.code()


async def test_requests_latency_errors_decisions_and_sweeps_are_exposed(running):
    assert running.metrics_port
    before = await asyncio.to_thread(scrape, running.metrics_port)
    codes = [await call(running, GET, "good"), await call(running, GET, None), await call(running, GET, "bad"),
             await call(running, GET, "denied"), await call(running, GET, "down"), await call(running, LIST, "good")]
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED,
                     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND]
    metrics.sweep_done("expiry", 3, service="depot")
    metrics.sweep_done("expiry", 0, service="depot")
    after = await asyncio.to_thread(scrape, running.metrics_port)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("rs_requests_total", method=GET, code="OK") == 1
    assert delta("rs_requests_total", method=GET, code="UNAUTHENTICATED") == 2
    assert delta("rs_requests_total", method=GET, code="PERMISSION_DENIED") == 1
    assert delta("rs_requests_total", method=GET, code="UNAVAILABLE") == 1
    assert delta("rs_requests_total", method=LIST, code="NOT_FOUND") == 1
    assert delta("rs_request_seconds_count", method=GET) == 5
    assert delta("rs_request_seconds_bucket", method=GET, le="+Inf") == 5
    assert delta("rs_authz_decisions_total", allowed="true") == 2
    assert delta("rs_authz_decisions_total", allowed="false") == 2  # unknown token, denied
    assert delta("rs_authz_decisions_total", allowed="unavailable") == 1
    assert delta("rs_sweeps_total", service="depot", kind="expiry") == 2
    assert delta("rs_swept_items_total", service="depot", kind="expiry") == 3


async def test_health_and_reflection_are_not_counted_as_requests(running):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    before = await asyncio.to_thread(scrape, running.metrics_port)
    async with grpc.aio.insecure_channel(running.address) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    after = await asyncio.to_thread(scrape, running.metrics_port)
    assert not [k for k in after if k[0] == "rs_requests_total" and "Health" in str(k[1])]
    assert sum(v for k, v in after.items() if k[0] == "rs_requests_total") == \
        sum(v for k, v in before.items() if k[0] == "rs_requests_total")


def test_metrics_are_off_by_default_and_bind_to_loopback(monkeypatch):
    for name in ("RS_DEPOT_METRICS_PORT", "RS_METRICS_HOST"):
        monkeypatch.delenv(name, raising=False)
    config = ServiceConfig.from_env("depot")
    assert config.metrics_port == 0 and config.metrics_host == "127.0.0.1"
    monkeypatch.setenv("RS_DEPOT_METRICS_PORT", "9103")
    assert ServiceConfig.from_env("depot").metrics_port == 9103
    assert ServiceConfig.from_env("authz").metrics_port == 0


def test_sweep_done_takes_the_service_from_the_calling_module():
    before = metrics.SWEEPS.labels(service="connections", kind="auto_close")._value.get()
    namespace = {"__name__": "services.connections.windows", "metrics": metrics}
    exec("def sweep():\n    metrics.sweep_done('auto_close', 2)\n", namespace)  # noqa: S102 - a module stand-in
    namespace["sweep"]()
    assert metrics.SWEEPS.labels(service="connections", kind="auto_close")._value.get() == before + 1


async def test_access_log_is_json_lines_with_the_request_id(running):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter("depot"))
    access = logging.getLogger("rs.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        await call(running, GET, "good", rid="req-metrics-1")
        await call(running, GET, "bad")
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["request_id"] == "req-metrics-1"
    assert lines[0]["method"] == GET and lines[0]["code"] == "OK" and lines[0]["service"] == "depot"
    assert lines[0]["subject"] == "users/S0000000001"
    assert lines[1]["code"] == "UNAUTHENTICATED" and len(lines[1]["request_id"]) == 32  # one made up
    assert "good" not in stream.getvalue() and "Bearer" not in stream.getvalue()
