"""The four real processes with mutual TLS on (RS_TLS=1, certificates from `python -m services.kit.certs`) and
the gateway serving clients with its separate public certificate: the supervisor's and the container health
checks reach every service over TLS, plaintext is refused, and a user's flow through the gateway works: the
platform admin makes a customer and its first user administrator, who makes the user; each sets its password
with the one-time code the supervisor's mail sink received."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from remotesupport.authz.v1 import authz_pb2 as apb
from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.depot.v1 import depot_pb2_grpc
from services.kit import certs, healthcheck
from services.kit.clock import UTC
from services.kit.mailsink import read_messages
from services.kit.supervisor import ORDER, Supervisor
from services.kit.validate import to_timestamp
from tests.conftest import BACKENDS, require_backend
from tests.e2e.conftest import free_ports
from tests.harness import TEST_PASSWORD, Databases, code_in, email_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=BACKENDS)
def suite(request, tmp_path_factory):
    require_backend(request.param)
    tmp = tmp_path_factory.mktemp(f"tls-processes-{request.param}")
    certs_dir = tmp / "certs"
    certs.generate(certs_dir)
    databases = Databases(request.param, tmp)
    env = dict(os.environ)
    env.update({"RS_VAR_DIR": str(tmp / "var"), "RS_AUTHZ_KDF_LOG2_N": "12", "PYTHONPATH": str(ROOT),
                "RS_TLS": "1", "RS_TLS_DIR": str(certs_dir), "RS_AUTHZ_DEADLINE_S": "10",
                "RS_GATEWAY_PUBLIC_TLS_CERT": str(certs_dir / "gateway-public.pem"),
                "RS_GATEWAY_PUBLIC_TLS_KEY": str(certs_dir / "gateway-public-key.pem")})
    for service in ("authz", "connections", "depot"):
        env[f"RS_{service.upper()}_DATABASE_URL"] = databases.new(service)
    supervisor = Supervisor(env=env, ports=dict(zip(ORDER, free_ports(len(ORDER)))), log_dir=tmp / "logs")
    try:
        supervisor.start(timeout=90, parallel=True)
        yield supervisor, tmp
    finally:
        supervisor.stop()
        databases.drop_all()


def public_channel(supervisor: Supervisor, tmp: Path) -> grpc.Channel:
    ca = (tmp / "certs" / "public-ca.pem").read_bytes()
    return grpc.secure_channel(supervisor.address("gateway"), grpc.ssl_channel_credentials(ca))


@pytest.mark.parametrize("service", ORDER)
def test_the_container_health_check_reaches_each_service_over_tls(suite, service):
    supervisor, _ = suite
    result = subprocess.run([sys.executable, "-m", "services.kit.healthcheck", "--service", service,
                             supervisor.address(service)], env=supervisor.environment(), capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout


def test_plaintext_and_foreign_clients_are_refused(suite):
    supervisor, tmp = suite
    for service in ("authz", "depot", "connections"):
        with pytest.raises(grpc.RpcError) as err:
            healthcheck.check(supervisor.address(service), None, timeout=3)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        only_ca = grpc.ssl_channel_credentials((tmp / "certs" / "ca.pem").read_bytes())
        with pytest.raises(grpc.RpcError) as err:
            healthcheck.check(supervisor.address(service), only_ca, timeout=3)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        healthcheck.check(supervisor.address("gateway"), None, timeout=3)


def test_a_users_flow_through_the_gateway_over_tls(suite):
    supervisor, tmp = suite
    admin = (tmp / "var" / "admin.token").read_text().strip()

    def md(token: str):
        return (("authorization", f"Bearer {token}"),)

    codes = []

    def enroll(authz, user_id: str) -> str:
        """Set the user's password with the code mailed to it; log in: its token."""
        codes.append(code_in(read_messages(supervisor.mail_dir, email_of(user_id))))
        authz.SetPassword(apb.SetPasswordRequest(user_id=user_id, code=codes[-1], new_password=TEST_PASSWORD),
                          timeout=30)
        return authz.Login(apb.LoginRequest(user_id=user_id, password=TEST_PASSWORD), timeout=30).access_token

    def create_user(authz, user_id: str, by: str) -> None:
        authz.CreateUser(apb.CreateUserRequest(user=apb.User(
            user_id=user_id, kind=apb.PRINCIPAL_KIND_CUSTOMER_USER, customer="customers/7100001",
            display_name=f"TLS user {user_id}", email=email_of(user_id))), metadata=md(by), timeout=30)

    with public_channel(supervisor, tmp) as channel:
        authz = authz_pb2_grpc.AuthzServiceStub(channel)
        authz.CreateCustomer(apb.CreateCustomerRequest(customer=apb.Customer(
            customer_number="7100001", display_name="TLS customer")), metadata=md(admin), timeout=30)
        create_user(authz, "S7100000009", admin)  # the customer's first user administrator
        authz.GrantAuthorization(apb.GrantAuthorizationRequest(
            user="users/S7100000009", authorization=apb.AUTHORIZATION_USER_ADMIN), metadata=md(admin), timeout=30)
        user_admin = enroll(authz, "S7100000009")
        create_user(authz, "S7100000001", user_admin)
        for grant in (apb.AUTHORIZATION_MAINTAIN_SYSTEM_DATA, apb.AUTHORIZATION_EDIT_MY_LOGIN_DATA):
            authz.GrantAuthorization(apb.GrantAuthorizationRequest(user="users/S7100000001", authorization=grant),
                                     metadata=md(user_admin), timeout=30)
        token = enroll(authz, "S7100000001")
        system = connections_pb2_grpc.ConnectionsServiceStub(channel).CreateSystem(cpb.CreateSystemRequest(
            parent="customers/7100001", system=cpb.System(installation_number="20012345", system_id="TLS",
                                                          system_number="710", description="over TLS")),
            metadata=md(token), timeout=30).system.name
        depot = depot_pb2_grpc.LogonDepotServiceStub(channel)
        entry = depot.CreateLogonData(dpb.CreateLogonDataRequest(parent=system, secret="Over-TLS-1!", logon_data=dpb.LogonData(
            kind=dpb.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT1", client="001",
            expire_time=to_timestamp(dt.datetime.now(UTC) + dt.timedelta(days=2)))), metadata=md(token),
            timeout=30).logon_data
        assert depot.RevealLogonData(dpb.RevealLogonDataRequest(name=entry.name), metadata=md(token),
                                     timeout=30).secret == "Over-TLS-1!"
        assert depot.VerifyLog(dpb.VerifyLogRequest(parent="customers/7100001"), metadata=md(token),
                               timeout=30).valid
    logs = "".join(p.read_text() for p in (tmp / "logs").glob("*.log"))
    for service in ("authz", "depot", "connections", "gateway"):
        assert f"{service} serving on" in logs
    assert logs.count("(mutual TLS)") == len(ORDER)  # every process, the relay among them
    assert "Over-TLS-1!" not in logs and token not in logs and admin not in logs and user_admin not in logs
    assert len(codes) == 2 and not any(code in logs or code.replace("-", "") in logs for code in codes)
