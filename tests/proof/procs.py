"""The suite as four real processes (services.kit.supervisor, as `make run` starts it) on free ports, a
temporary var/ and fresh databases, with every process's stdout and stderr captured in logs/<service>.log, and
the supervisor's mail sink (a fifth process) writing every message authz sends to var/mail/.
Rows that kill, stop, starve or restart a process, or read what processes print, use it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2_grpc
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.kit.clock import SystemClock
from services.kit.supervisor import MODULES, ORDER, Supervisor, wait_serving
from tests.e2e.conftest import free_ports
from tests.harness import Databases
from tests.proof.live import CHANNEL_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
STUBS = {
    "authz": authz_pb2_grpc.AuthzServiceStub,
    "connections": connections_pb2_grpc.ConnectionsServiceStub,
    "depot": depot_pb2_grpc.LogonDepotServiceStub,
    "gateway": gateway_pb2_grpc.RemoteSupportServiceStub,
}
AUTHZ_DEADLINE_S = 1.0
CALL_DEADLINE_S = 2.0


class Processes:
    """authz, connections, depot and the gateway as processes."""

    def __init__(self, backend: str, tmp: Path, **env: str) -> None:
        self.backend = backend
        self.tmp = tmp
        self.var = tmp / "var"
        self.log_dir = tmp / "logs"
        self.databases = Databases(backend, tmp)
        self.master_key = self.var / "secrets" / "depot-master.key"
        # the supervisor's own mail sink, never a mail server of the environment: the rows read the codes from it
        base = {k: v for k, v in os.environ.items() if k not in ("RS_SMTP_HOST", "RS_SMTP_PORT")}
        base.update({
            "RS_VAR_DIR": str(self.var), "PYTHONPATH": str(ROOT), "RS_AUTHZ_KDF_LOG2_N": "10",
            "RS_LOG_LEVEL": "DEBUG", "RS_AUTHZ_DEADLINE_S": str(AUTHZ_DEADLINE_S),
            "RS_CALL_DEADLINE_S": str(CALL_DEADLINE_S), "RS_DEPOT_SWEEP_INTERVAL_S": "3600",
            "RS_CONNECTIONS_SWEEP_INTERVAL_S": "3600", "RS_CONNECTIONS_ASSIGNMENT_GRACE_S": "5",
            "RS_DEPOT_MASTER_KEY_FILE": str(self.master_key), "PYTHONUNBUFFERED": "1",
        })
        base.update(env)
        for service in ("authz", "connections", "depot"):
            base[f"RS_{service.upper()}_DATABASE_URL"] = self.databases.new(service)
        self.supervisor = Supervisor(env=base, ports=dict(zip(ORDER, free_ports(len(ORDER)))), log_dir=self.log_dir)
        self._channels: dict[str, grpc.Channel] = {}
        self.clock = SystemClock()
        self.customer_admins: dict = {}  # customer number -> its user administrators (tests.proof.world.Actors)

    def start(self) -> "Processes":
        self.supervisor.start(timeout=120)
        return self

    @property
    def env(self) -> dict[str, str]:
        return self.supervisor.environment()

    @property
    def mail_dir(self) -> Path:
        """Where the supervisor's mail sink writes every message authz sends (the one-time codes among them)."""
        return self.supervisor.mail_dir

    def database_url(self, service: str) -> str:
        return self.supervisor.env[f"RS_{service.upper()}_DATABASE_URL"]

    def address(self, service: str) -> str:
        return self.supervisor.address(service)

    def channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            self._channels[service] = grpc.insecure_channel(self.address(service), options=CHANNEL_OPTIONS)
        return self._channels[service]

    def stub(self, service: str, via: str | None = "gateway"):
        """A blocking stub of `service`, by default through the gateway."""
        return STUBS[service](self.channel(via or service))

    @property
    def admin_token(self) -> str:
        return (self.var / "admin.token").read_text().strip()

    def service_token(self, service: str) -> str:
        return (self.var / "secrets" / f"{service}.token").read_text().strip()

    # --- process control -----------------------------------------------------------------------------------
    def process(self, service: str) -> subprocess.Popen:
        return self.supervisor.processes[service]

    def running(self, service: str) -> bool:
        process = self.supervisor.processes.get(service)
        return process is not None and process.poll() is None

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        process = self.supervisor.processes.pop(service)
        process.send_signal(sig)
        process.wait(30)

    def signal(self, service: str, sig: int) -> None:
        self.supervisor.processes[service].send_signal(sig)

    def restart(self, service: str, timeout: float = 120) -> None:
        """Start `service` again (it must not be running) and wait until it reports SERVING."""
        if self.running(service):
            self.supervisor.stop(service)
        self.supervisor.processes.pop(service, None)
        self.supervisor.start((service,), timeout=timeout)

    def attempt(self, service: str, env: dict[str, str], timeout: float = 60) -> tuple[int | None, str, bool]:
        """Start `service` with `env` changes (while its usual process is stopped): (exit code or None if it
        kept running, its output, whether it ever reported SERVING). A process still running is stopped."""
        environ = self.env
        environ[f"RS_{service.upper()}_PORT"] = str(self.supervisor.ports[service])
        environ.update(env)
        out_path = self.log_dir / f"{service}-attempt-{time.monotonic_ns()}.log"
        with open(out_path, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", MODULES[service]], env=environ, stdout=out,
                                       stderr=subprocess.STDOUT)
            serving = False
            try:
                wait_serving(self.address(service), timeout, process)
                serving = True
            except (RuntimeError, TimeoutError):
                pass
            code = process.poll()
            if code is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        return code, out_path.read_text(errors="replace"), serving

    # --- what the processes printed ---------------------------------------------------------------------------
    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_files())

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for service in list(self.supervisor.processes):
            if self.supervisor.processes[service].poll() is None:
                try:
                    os.kill(self.supervisor.processes[service].pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        self.supervisor.stop()
        self.databases.drop_all()
