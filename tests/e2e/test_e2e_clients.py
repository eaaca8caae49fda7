"""Clients of the suite as users run them: the README's grpcurl and rsctl walk-throughs, copied from the
README and run as written against the four real processes; and a Node.js client loading protos/."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.authz.v1 import authz_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NODE_DIR = Path(__file__).parent / "node"


def readme_script(name: str) -> str:
    """The shell blocks of the README section marked <!-- readme-test: name --> ... <!-- /readme-test -->."""
    text = README.read_text()
    section = re.search(rf"<!-- readme-test: {name} -->(.*?)<!-- /readme-test -->", text, re.S)
    assert section, f"README has no readme-test section {name!r}"
    blocks = re.findall(r"```sh\n(.*?)```", section.group(1), re.S)
    assert blocks, f"README section {name!r} has no sh blocks"
    return "\n".join(blocks)


def run_readme(e2e, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a README section as a user would in the project folder after `make run`: `var/` is the suite's."""
    work = tmp_path / name
    work.mkdir()
    (work / "var").symlink_to(e2e.var)
    script = readme_script(name)
    for service in ("gateway", "authz", "depot", "connections"):
        default = {"gateway": 50051, "authz": 50052, "depot": 50053, "connections": 50054}[service]
        script = script.replace(f"127.0.0.1:{default}", e2e.supervisor.address(service))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["RSCTL_CONFIG_DIR"] = str(work / "rsctl-config")
    env["RSCTL_ADDRESS"] = e2e.gateway
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, f"README {name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return result


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
