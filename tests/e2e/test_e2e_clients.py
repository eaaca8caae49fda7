"""Clients of the suite as users run them: the README's grpcurl and rsctl walk-throughs, copied from the
README and run as written against the four real processes; and a Node.js client loading protos/."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.authz.v1 import authz_pb2_grpc
from tests.e2e.readme import run_readme

NODE_DIR = Path(__file__).parent / "node"


def test_readme_grpcurl_walkthrough_runs_as_written(e2e, tmp_path):
    result = run_readme(e2e, "grpcurl", tmp_path)
    out = result.stdout
    for service in ("remotesupport.authz.v1.AuthzService", "remotesupport.depot.v1.LogonDepotService",
                    "remotesupport.connections.v1.ConnectionsService", "remotesupport.gateway.v1.RemoteSupportService",
                    "grpc.health.v1.Health"):
        assert service in out
    assert '"status": "SERVING"' in out
    assert '"allowed": true' in out
    assert '"secret": "Sup3r-Secret!"' in out          # the reveal the README shows
    assert '"valid": true' in out                        # VerifyLog and the connector check
    assert "rpc RevealLogonData" in out                   # describe
    errors = result.stderr
    assert "Code: PermissionDenied" in errors and "EDIT_ALL_LOGIN_DATA or EDIT_MY_LOGIN_DATA" in errors
    assert "Code: InvalidArgument" in errors and '"field":"system.system_id"' in errors.replace(" ", "")


def test_readme_rsctl_walkthrough_runs_as_written(e2e, tmp_path):
    result = run_readme(e2e, "rsctl", tmp_path)
    assert "Rsctl-Secret-1" in result.stdout
    assert "rsctl exited with 4" in result.stdout
    assert "rsctl: PERMISSION_DENIED: depot.log.read needs the authorization" in result.stderr
    assert "Subject: Remote Support: users/eng.jones took your incident" in result.stdout  # the event mails
    assert "Subject: Remote Support: your logon data was revealed by users/eng.jones" in result.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_client_calls_the_gateway_from_the_protos(e2e):
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True, timeout=300)
    authz = authz_pb2_grpc.AuthzServiceStub(e2e.channel)
    md = (("authorization", f"Bearer {e2e.admin_token}"),)
    authz.CreateCustomer(az.CreateCustomerRequest(customer=az.Customer(customer_number="777", display_name="Node")),
                         metadata=md)
    result = subprocess.run(["node", "client.js", e2e.gateway, "777", e2e.admin_token], cwd=NODE_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["types"][0] == ["R3_SUPPORT", "R/3 Support", "812732"]
    assert len(answer["types"]) == 4
    assert answer["unauthenticated_code"] == 16  # UNAUTHENTICATED, as the gateway forwarded it
