"""Mutual TLS between the services (RS_TLS=1): every server requires a client certificate from the suite's
CA; a service account's calls are accepted only over a connection whose certificate names that service;
the whole suite (authz, connections, depot and the gateway, in-process) works with TLS on; the gateway can
serve its clients with a separate certificate."""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2 as cp
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.depot.v1 import depot_pb2_grpc
from services.kit import certs
from services.kit.clock import UTC
from services.kit.validate import to_timestamp
from tests.conftest import BACKENDS, require_backend
from tests.harness import Suite
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")


def pem(path: Path) -> bytes:
    return path.read_bytes()


def client_credentials(certs_dir: Path, who: str = certs.CLIENT) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(pem(certs_dir / "ca.pem"), pem(certs_dir / f"{who}-key.pem"),
                                        pem(certs_dir / f"{who}.pem"))


class TlsSuite(Suite):
    """The harness's in-process suite with RS_TLS on: each service presents its own certificate; the test
    talks to them as an operator with the 'client' certificate."""

    def __init__(self, backend: str, tmp: Path, certs_dir: Path) -> None:
        super().__init__(backend, tmp)
        self.certs = certs_dir
        self.public: dict[str, Path] = {}

    def config(self, service: str):
        config = super().config(service)
        config = dataclasses.replace(config, tls=True, tls_dir=self.certs)
        if service == "gateway" and self.public:
            config = dataclasses.replace(config, public_tls_cert=self.public["cert"],
                                         public_tls_key=self.public["key"])
        return config

    async def start_service(self, service: str, build=None, **build_kwargs):
        running = await super().start_service(service, build, **build_kwargs)
        await self.channels[service].close()
        self.channels[service] = grpc.aio.secure_channel(running.address, client_credentials(self.certs))
        return running


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    certs.generate(out)
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def tls_suite(request, tmp_path_factory, certs_dir):
    require_backend(request.param)
    running = TlsSuite(request.param, tmp_path_factory.mktemp(f"tls-{request.param}"), certs_dir)
    try:
        await running.start(("authz", "connections", "depot"))
        from gateway.server import build as gateway_build
        await running.start_service("gateway", build=gateway_build)
        yield running
    finally:
        await running.stop()


async def health(address: str, credentials: grpc.ChannelCredentials | None, **options) -> str:
    channel = grpc.aio.secure_channel(address, credentials, options=list(options.items())) if credentials \
        else grpc.aio.insecure_channel(address)
    async with channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def service_token(suite: TlsSuite, service: str) -> str:
    return (suite.var / "secrets" / f"{service}.token").read_text().strip()


# --- refused at the handshake ---------------------------------------------------------------------------
async def test_plaintext_client_is_refused(tls_suite):
    for service in ("authz", "depot", "connections", "gateway"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health(tls_suite.addr[service], None)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_without_certificate_is_refused(tls_suite):
    only_ca = grpc.ssl_channel_credentials(pem(tls_suite.certs / "ca.pem"))
    for service in ("authz", "depot", "connections", "gateway"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health(tls_suite.addr[service], only_ca)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_from_another_ca_is_refused(tls_suite, tmp_path):
    other_ca, other_key = certs.make_ca("Somebody else's CA")
    cert, key = certs.issue(other_ca, other_key, "depot", dns=("depot", "localhost"))
    forged = grpc.ssl_channel_credentials(pem(tls_suite.certs / "ca.pem"), certs.key_pem(key), certs.cert_pem(cert))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await health(tls_suite.addr["authz"], forged)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # and a call with the depot's real token over it is refused too, before any authorization
    channel = grpc.aio.secure_channel(tls_suite.addr["authz"], forged)
    async with channel:
        await expect_error(authz_pb2_grpc.AuthzServiceStub(channel).Check(
            authz_pb2.CheckRequest(subject_token="x", permission="connections.types.read"), timeout=3,
            metadata=tls_suite.md(service_token(tls_suite, "depot"))), grpc.StatusCode.UNAVAILABLE)


async def test_expired_certificate_is_refused(tls_suite):
    ca_cert = certs.x509.load_pem_x509_certificate(pem(tls_suite.certs / "ca.pem"))
    ca_key = certs.serialization.load_pem_private_key(pem(tls_suite.certs / "ca-key.pem"), None)
    past = dt.datetime.now(UTC) - dt.timedelta(days=10)
    cert, key = certs.issue(ca_cert, ca_key, "depot", dns=("depot", "localhost"), days=1, not_before=past)
    expired = grpc.ssl_channel_credentials(pem(tls_suite.certs / "ca.pem"), certs.key_pem(key), certs.cert_pem(cert))
    for service in ("authz", "depot"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health(tls_suite.addr[service], expired)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # the same CA, valid dates: accepted (the refusal above is the expiry, not the issuer)
    cert, key = certs.issue(ca_cert, ca_key, "depot", dns=("depot", "localhost"), days=1)
    fresh = grpc.ssl_channel_credentials(pem(tls_suite.certs / "ca.pem"), certs.key_pem(key), certs.cert_pem(cert))
    assert await health(tls_suite.addr["authz"], fresh) == "SERVING"


# --- the certificate must name the service whose token is used ------------------------------------------
async def check_as(suite: TlsSuite, cert_of: str, token_of: str):
    channel = grpc.aio.secure_channel(suite.addr["authz"], client_credentials(suite.certs, cert_of))
    async with channel:
        return await authz_pb2_grpc.AuthzServiceStub(channel).Check(
            authz_pb2.CheckRequest(subject_token=suite.admin_token, permission="depot.keys.manage"), timeout=3,
            metadata=suite.md(service_token(suite, token_of)))


async def test_service_token_with_its_own_certificate_is_accepted(tls_suite):
    for service in ("depot", "connections", "gateway"):
        response = await check_as(tls_suite, service, service)
        assert response.authenticated and response.allowed


async def test_service_token_with_another_services_certificate_is_refused(tls_suite):
    for cert_of, token_of in (("connections", "depot"), ("depot", "connections"), ("gateway", "depot"),
                              (certs.CLIENT, "depot"), ("authz", "gateway")):
        await expect_error(check_as(tls_suite, cert_of, token_of), grpc.StatusCode.PERMISSION_DENIED,
                           "PEER_CERTIFICATE_MISMATCH")


async def test_assignment_writes_need_the_connections_certificate(tls_suite):
    """SetSupportAssignment is for the connections service only: its token over the depot's certificate
    is refused before the request is looked at."""
    channel = grpc.aio.secure_channel(tls_suite.addr["authz"], client_credentials(tls_suite.certs, "depot"))
    async with channel:
        await expect_error(authz_pb2_grpc.AuthzServiceStub(channel).SetSupportAssignment(
            authz_pb2.SetSupportAssignmentRequest(), timeout=3,
            metadata=tls_suite.md(service_token(tls_suite, "connections"))),
            grpc.StatusCode.PERMISSION_DENIED, "PEER_CERTIFICATE_MISMATCH")


async def test_service_token_over_the_certificate_of_another_service_is_refused_by_every_service(tls_suite):
    """Not only authz: a service account's call to any service must come with that service's certificate."""
    channel = grpc.aio.secure_channel(tls_suite.addr["connections"], client_credentials(tls_suite.certs, "gateway"))
    async with channel:
        await expect_error(connections_pb2_grpc.ConnectionsServiceStub(channel).ListConnectionTypes(
            cp.ListConnectionTypesRequest(), timeout=3, metadata=tls_suite.md(service_token(tls_suite, "depot"))),
            grpc.StatusCode.PERMISSION_DENIED, "PEER_CERTIFICATE_MISMATCH")


# --- the whole suite over mutual TLS --------------------------------------------------------------------
async def test_the_suite_works_over_mutual_tls(tls_suite):
    """Users, systems, logon data and a reveal: depot -> connections and every service -> authz over mTLS,
    directly and through the gateway's pass-through."""
    customer = await tls_suite.new_customer()
    _, token = await tls_suite.new_user(customer, ["MAINTAIN_SYSTEM_DATA", "EDIT_MY_LOGIN_DATA"])
    system = await tls_suite.new_system(customer, token)
    gateway = grpc.aio.secure_channel(tls_suite.addr["gateway"], client_credentials(tls_suite.certs))
    async with gateway:
        for channel in (tls_suite.channels["depot"], gateway):
            depot = depot_pb2_grpc.LogonDepotServiceStub(channel)
            created = (await depot.CreateLogonData(dp.CreateLogonDataRequest(
                parent=system, secret="Tls-Secret-1!", logon_data=dp.LogonData(
                    kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT1", client="001",
                    expire_time=to_timestamp(tls_suite.clock.now() + dt.timedelta(days=3)))),
                metadata=tls_suite.md(token))).logon_data
            revealed = await depot.RevealLogonData(dp.RevealLogonDataRequest(name=created.name),
                                                   metadata=tls_suite.md(token))
            assert revealed.secret == "Tls-Secret-1!"
        verdict = await depot_pb2_grpc.LogonDepotServiceStub(gateway).VerifyLog(
            dp.VerifyLogRequest(parent=f"customers/{customer}"), metadata=tls_suite.md(token))
        assert verdict.valid


# --- the gateway's public certificate -------------------------------------------------------------------
async def test_gateway_serves_clients_with_a_separate_certificate(tls_suite):
    """RS_GATEWAY_PUBLIC_TLS_CERT/KEY: clients verify the gateway against the public CA and need no client
    certificate; behind it, the gateway still talks mutual TLS to the services."""
    tls_suite.public = {"cert": tls_suite.certs / "gateway-public.pem", "key": tls_suite.certs / "gateway-public-key.pem"}
    from gateway.server import build as gateway_build
    await tls_suite.stop_service("gateway")
    running = await tls_suite.start_service("gateway", build=gateway_build)
    try:
        public = grpc.ssl_channel_credentials(pem(tls_suite.certs / "public-ca.pem"))
        assert await health(running.address, public) == "SERVING"
        internal_only = grpc.ssl_channel_credentials(pem(tls_suite.certs / "ca.pem"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health(running.address, internal_only)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        customer = await tls_suite.new_customer()
        _, token = await tls_suite.new_user(customer, ["MAINTAIN_SYSTEM_DATA"])
        channel = grpc.aio.secure_channel(running.address, public)
        async with channel:
            response = await connections_pb2_grpc.ConnectionsServiceStub(channel).ListSystems(
                cp.ListSystemsRequest(parent=f"customers/{customer}"), metadata=tls_suite.md(token))
            assert list(response.systems) == []
            # a stolen service token passed through the gateway reaches authz over the gateway's certificate
            await expect_error(authz_pb2_grpc.AuthzServiceStub(channel).Check(
                authz_pb2.CheckRequest(subject_token=token, permission="connections.types.read"),
                metadata=tls_suite.md(service_token(tls_suite, "depot"))), grpc.StatusCode.PERMISSION_DENIED,
                "PEER_CERTIFICATE_MISMATCH")
    finally:
        tls_suite.public = {}
        await tls_suite.stop_service("gateway")
        await tls_suite.start_service("gateway", build=gateway_build)
