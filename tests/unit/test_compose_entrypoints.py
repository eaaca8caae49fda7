"""The image's entrypoints start with --help (usage, the environment variables, exit 0, nothing started);
the health-check module and the secret generator behave as docker-compose.yml expects."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.kit import certs, evidence, healthcheck
from services.kit.supervisor import MODULES

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import make_secrets  # noqa: E402


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("service", ["authz", "depot", "connections", "gateway"])
def test_entrypoint_help_lists_the_environment_and_exits_0(service, tmp_path):
    result = run("-m", MODULES[service], "--help", env={"RS_VAR_DIR": str(tmp_path / "var")})
    assert result.returncode == 0, result.stderr
    up = service.upper()
    assert result.stdout.startswith(f"usage: python -m {MODULES[service]}")
    for name in (f"RS_{up}_PORT", f"RS_{up}_DATABASE_URL", "RS_TLS", f"RS_{up}_METRICS_PORT", "RS_PROFILE"):
        assert name in result.stdout
    assert not (tmp_path / "var").exists(), "--help must not start anything"


def test_depot_help_names_its_master_key_variable():
    assert "RS_DEPOT_MASTER_KEY_FILE" in run("-m", MODULES["depot"], "--help").stdout


def test_unknown_argument_is_refused():
    result = run("-m", MODULES["authz"], "--bogus")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_healthcheck_reports_an_unreachable_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("-m", "services.kit.healthcheck", "--service", "authz", "--timeout", "0.5", f"127.0.0.1:{port}",
                 env={"RS_TLS": "0"})
    assert result.returncode == 1 and "unhealthy" in result.stderr


def test_healthcheck_needs_the_services_certificate_under_tls(tmp_path):
    result = run("-m", "services.kit.healthcheck", "--service", "depot", "127.0.0.1:1",
                 env={"RS_TLS": "1", "RS_TLS_DIR": str(tmp_path)})
    assert result.returncode == 1 and "make certs" in result.stderr
    certs.generate(tmp_path)
    assert healthcheck.credentials_from_env({"RS_TLS": "1", "RS_TLS_DIR": str(tmp_path)}, "depot") is not None
    assert healthcheck.credentials_from_env({"RS_TLS": "0"}, "depot") is None
    public = {"RS_GATEWAY_PUBLIC_TLS_CERT": str(tmp_path / "gateway-public.pem"), "RS_TLS_DIR": str(tmp_path)}
    assert healthcheck.credentials_from_env(public, "gateway") is not None


def test_certs_cli_writes_private_keys_0600_and_keeps_an_existing_ca(tmp_path):
    out = tmp_path / "certs"
    assert run("-m", "services.kit.certs", "--out", str(out)).returncode == 0
    for stem in ("ca", "authz", "depot", "connections", "gateway", "client", "public-ca", "gateway-public"):
        assert (out / f"{stem}.pem").exists()
        assert (out / f"{stem}-key.pem").stat().st_mode & 0o777 == 0o600
    before = (out / "ca.pem").read_bytes()
    assert "keeping" in run("-m", "services.kit.certs", "--out", str(out)).stdout
    assert (out / "ca.pem").read_bytes() == before


def test_make_secrets_writes_usable_secrets_once(tmp_path):
    from services.connections.connector_file import load_or_create_signing_key
    from services.depot import masterkeyfile

    out = tmp_path / "secrets"
    made = make_secrets.generate(out)
    assert set(made) == {*make_secrets.PASSWORDS, "depot_master_key", "connections_signing_key",
                         "gateway_evidence_key"}
    key = masterkeyfile.load_master_key(out / "depot_master_key", profile="production", create_if_missing=False)
    assert not key.is_dev
    load_or_create_signing_key(out / "connections_signing_key")
    evidence.load_or_create_signing_key(out / "gateway_evidence_key")  # a key the gateway takes as it is
    passwords = {(out / name).read_text() for name in make_secrets.PASSWORDS}
    assert len(passwords) == 4
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    before = (out / "depot_master_key").read_bytes()
    assert make_secrets.generate(out) == []
    assert (out / "depot_master_key").read_bytes() == before
