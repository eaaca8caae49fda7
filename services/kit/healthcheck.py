"""A container health check over the standard gRPC health service:
`python -m services.kit.healthcheck --service depot 127.0.0.1:50053` exits 0 when the server answers SERVING.

It uses the same environment as the service: under mutual TLS (RS_TLS=1) it presents the service's own
certificate from RS_TLS_DIR (the relay: the connections service's); for a public TLS port (the gateway's or the
relay's, RS_<SVC>_PUBLIC_TLS_CERT) it verifies the server against RS_<SVC>_PUBLIC_TLS_CA (default: public-ca.pem
in RS_TLS_DIR, else the system's roots)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import tls
from services.kit.config import identity_of

TRUE = ("1", "true", "yes", "on")


def certs_dir(env: Mapping[str, str]) -> Path:
    if env.get("RS_TLS_DIR"):
        return Path(env["RS_TLS_DIR"])
    return Path(env.get("RS_VAR_DIR") or "var") / "certs"


def credentials_from_env(env: Mapping[str, str], service: str) -> grpc.ChannelCredentials | None:
    """How a local client (health check, supervisor) reaches `service` configured by `env`; None: plaintext."""
    directory = certs_dir(env)
    up = service.upper()
    if env.get(f"RS_{up}_PUBLIC_TLS_CERT"):  # the gateway or the relay serving clients with a public certificate
        ca_file = env.get(f"RS_{up}_PUBLIC_TLS_CA") or (
            str(directory / "public-ca.pem") if (directory / "public-ca.pem").exists() else "")
        return grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes() if ca_file else None)
    if env.get("RS_TLS", "").strip().lower() in TRUE:
        return tls.Identity.load(directory, identity_of(service)).channel_credentials()
    return None


def check(address: str, credentials: grpc.ChannelCredentials | None, timeout: float = 3.0,
          service_name: str = "") -> str:
    """The status name the server reports (SERVING, NOT_SERVING, ...); raises grpc.RpcError if it does not answer."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service_name), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.kit.healthcheck",
                                     description="Exit 0 when the gRPC server at ADDRESS reports SERVING.")
    parser.add_argument("address", help="host:port, e.g. 127.0.0.1:50053")
    parser.add_argument("--service", default=os.environ.get("RS_SERVICE", ""),
                        help="whose certificate to present under RS_TLS=1 (authz, depot, connections, gateway)")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        credentials = credentials_from_env(os.environ, args.service)
    except SystemExit as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1
    try:
        status = check(args.address, credentials, args.timeout)
    except grpc.RpcError as err:
        print(f"unhealthy: {args.address} did not answer ({err.code().name})", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"unhealthy: {args.address} reports {status}", file=sys.stderr)
        return 1
    print(f"{args.address} SERVING")
    return 0


if __name__ == "__main__":
    sys.exit(main())
