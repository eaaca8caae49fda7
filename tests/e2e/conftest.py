"""End-to-end fixtures: the four real processes (authz, connections, depot, gateway), started by the
same supervisor as `make run`, on free ports, a temporary var/ and fresh databases (SQLite or PostgreSQL); the
supervisor's mail sink (a fifth process) writes the one-time codes authz mails to var/mail/."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import grpc
import pytest

from services.kit.mailsink import read_messages
from services.kit.supervisor import ORDER, Supervisor
from tests.conftest import BACKENDS, require_backend
from tests.harness import Databases, code_in

ROOT = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


class E2E:
    """The running suite as a user sees it: one gateway address, the admin token file, the mail folder, process
    logs."""

    def __init__(self, backend: str, tmp: Path, extra_env: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.tmp = tmp
        self.var = tmp / "var"
        self.databases = Databases(backend, tmp)
        env = dict(os.environ)
        env.update({"RS_VAR_DIR": str(self.var), "RS_AUTHZ_KDF_LOG2_N": "12", "PYTHONPATH": str(ROOT),
                    "RS_DEPOT_SWEEP_INTERVAL_S": "1", "RS_CONNECTIONS_SWEEP_INTERVAL_S": "1"})
        for service in ("authz", "connections", "depot"):
            env[f"RS_{service.upper()}_DATABASE_URL"] = self.databases.new(service)
        env.update(extra_env or {})
        self.supervisor = Supervisor(env=env, ports=dict(zip(ORDER, free_ports(len(ORDER)))),
                                     log_dir=tmp / "logs")
        self.channel: grpc.Channel | None = None

    @property
    def gateway(self) -> str:
        return self.supervisor.address("gateway")

    def start(self) -> "E2E":
        self.supervisor.start()
        self.channel = grpc.insecure_channel(self.gateway)
        return self

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.supervisor.stop()
        self.databases.drop_all()

    @property
    def admin_token(self) -> str:
        return (self.var / "admin.token").read_text().strip()

    @property
    def mail_dir(self) -> Path:
        return self.supervisor.mail_dir

    def code_for(self, address: str) -> str:
        """The newest one-time code mailed to `address` (as its owner reads it from var/mail/)."""
        return code_in(read_messages(self.mail_dir, address))

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted((self.tmp / "logs").glob("*.log")))


@pytest.fixture(scope="module", params=BACKENDS)
def e2e(request, tmp_path_factory):
    require_backend(request.param)
    suite = E2E(request.param, tmp_path_factory.mktemp(f"e2e-{request.param}"))
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()
