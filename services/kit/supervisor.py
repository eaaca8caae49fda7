"""`make run`: start authz, connections, the relay, depot and the gateway as five processes, wait until each
reports SERVING, print the addresses, and stop all five cleanly on Ctrl-C. Unless RS_SMTP_HOST names a mail
server, a sixth process is the local mail sink (services.kit.mailsink) that authz, the depot and connections mail
to (RS_EVENT_MAILS=1 on the first replica of each: services.kit.notices): every message (the
users' one-time codes among them) lands in var/mail/.

Also used by tests to start extra replicas of a service (`replica_ports`) against the same databases, and
to run the suite with mutual TLS (RS_TLS=1 in `env`: the health checks then present the service's own
certificate)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import tracing
from services.kit.config import DEFAULT_PORTS, PART_OF, env_int
from services.kit.healthcheck import credentials_from_env
from services.kit.mail import DEFAULT_SMTP_PORT
from services.kit.mailsink import free_port

ORDER = ("authz", "connections", "relay", "depot", "gateway")
MODULES = {"authz": "services.authz.server", "connections": "services.connections.server",
           "relay": "services.connections.relay", "depot": "services.depot.server", "gateway": "gateway.server"}


def wait_serving(address: str, timeout: float = 30.0, process: subprocess.Popen | None = None,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
    """Poll the standard health service until it answers SERVING."""
    deadline = time.monotonic() + timeout
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the process for {address} exited with code {process.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{address} did not report SERVING within {timeout:.0f}s")


@dataclass
class Supervisor:
    """The five processes of the suite; used by `make run` and by the end-to-end tests."""

    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    log_dir: Path | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Extra replicas: service -> the ports of replicas 1, 2, ... (replica 0 is `ports[service]`). Replica i
    # is named "<service>#<i>" in `processes`, logs to <service>#<i>.log, and calls replica i (modulo their
    # count) of the other services, so that every replica is exercised.
    replica_ports: dict[str, list[int]] = field(default_factory=dict)
    # The local mail sink's port (0: a free one, chosen at start); unused when env sets RS_SMTP_HOST.
    mail_port: int = 0

    @property
    def own_mail(self) -> bool:
        """Whether the suite mails to its own sink (no RS_SMTP_HOST configured)."""
        return not self.env.get("RS_SMTP_HOST")

    @property
    def mail_dir(self) -> Path:
        """Where the sink writes the messages: <RS_VAR_DIR>/mail."""
        return Path(self.env.get("RS_VAR_DIR", "var")).resolve() / "mail"

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def replica_count(self, service: str) -> int:
        return 1 + len(self.replica_ports.get(service, ()))

    def replica_address(self, service: str, index: int) -> str:
        ports = [self.ports[service], *self.replica_ports.get(service, ())]
        return f"127.0.0.1:{ports[index % len(ports)]}"

    def environment(self, replica: int = 0) -> dict[str, str]:
        env = dict(self.env)
        for service, port in self.ports.items():
            env[f"RS_{service.upper()}_PORT"] = str(port)
            env[f"RS_{service.upper()}_ADDR"] = self.replica_address(service, replica) if replica else \
                self.address(service)
        if self.own_mail and self.mail_port:
            env["RS_SMTP_HOST"], env["RS_SMTP_PORT"] = "127.0.0.1", str(self.mail_port)
            if not replica:  # event mails from the first replica of each service (two would mail everything twice)
                env.setdefault("RS_EVENT_MAILS", "1")
        if "relay" in self.ports and "RS_RELAY_ADDRESSES" not in self.env:  # what connector files tell connectors
            env["RS_RELAY_ADDRESSES"] = ",".join(self.replica_address("relay", i)
                                                 for i in range(self.replica_count("relay")))
        return env

    def start_mail(self, timeout: float = 15.0) -> None:
        """Start the local mail sink (once) and wait until it accepts connections."""
        if not self.own_mail or "mail" in self.processes:
            return
        self.mail_port = self.mail_port or free_port()
        env = dict(self.env, RS_SMTP_PORT=str(self.mail_port))
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / "mail.log", "ab")
        self.processes["mail"] = process = subprocess.Popen(
            [sys.executable, "-m", "services.kit.mailsink"], env=env, stdout=out, stderr=out if out else None)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the mail sink exited with code {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.mail_port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the mail sink did not listen on {self.mail_port} within {timeout:.0f}s")
                time.sleep(0.05)

    def start(self, services=ORDER, timeout: float = 60.0, *, parallel: bool = False) -> None:
        """Start `services` one after another (each SERVING before the next), then their extra replicas.
        parallel=True starts replica 0 of every service at once (the relay just after, on the connections
        database), then every extra replica at once: faster, and still never two first starts on one database
        (migrations, authz's bootstrap). The mail sink
        first, when authz is among them."""
        if "authz" in services:
            self.start_mail()
        waves = [[(service, index) for service in services] for index in range(1 + max(
            (len(self.replica_ports.get(s, ())) for s in services), default=0))]
        # a process of another service (the relay) shares its database: its first start waits for the owner's
        waves = [[item for item in wave if item[0] not in PART_OF or item[1] > 0] for wave in waves[:1]] + \
            [[item for item in waves[0] if item[0] in PART_OF]] + waves[1:]
        if not parallel:
            waves = [[(service, index)] for service in services
                     for index in range(1 + len(self.replica_ports.get(service, ())))]
        for wave in waves:
            started = [self._spawn(service, index) for service, index in wave
                       if index < 1 + len(self.replica_ports.get(service, ()))]
            for name, address, credentials in started:
                wait_serving(address, timeout, self.processes[name], credentials)

    def _spawn(self, service: str, index: int) -> tuple[str, str, grpc.ChannelCredentials | None]:
        name = service if index == 0 else f"{service}#{index}"
        env = self.environment(index)
        address = self.replica_address(service, index)
        env[f"RS_{service.upper()}_PORT"] = address.rsplit(":", 1)[1]
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", MODULES[service]], env=env, stdout=out, stderr=out if out else None)
        return name, address, credentials_from_env(env, service)

    def stop(self, service: str | None = None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        targets = [service] if service else list(self.processes)[::-1]
        for name in targets:
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def configured_ports() -> dict[str, int]:
    """The default ports, or RS_<SVC>_PORT where set (so `make run` can live beside another suite)."""
    return {service: env_int(f"RS_{service.upper()}_PORT", port) for service, port in DEFAULT_PORTS.items()}


def main() -> None:
    supervisor = Supervisor(ports=configured_ports(), mail_port=env_int("RS_SMTP_PORT", DEFAULT_SMTP_PORT))
    stop = False

    def request_stop(_signum, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        supervisor.start()
    except (RuntimeError, TimeoutError) as err:
        print(f"make run: {err}", file=sys.stderr)
        supervisor.stop()
        sys.exit(1)
    var = Path(os.environ.get("RS_VAR_DIR", "var")).resolve()
    print("\nRemote Support Suite is SERVING:")
    for service in ORDER:
        print(f"  {service:<12} {supervisor.address(service)}")
    print(f"\nPlatform admin token: {var / 'admin.token'} (mode 0600)")
    if supervisor.own_mail:
        print(f"Mail (one-time codes for new users): {supervisor.mail_dir}/ (SMTP sink on 127.0.0.1:"
              f"{supervisor.mail_port}; set RS_SMTP_HOST to use a real mail server)")
    if tracing.wanted():
        print(f"Tracing on: every service's spans go to {tracing.destination()}")
    else:
        print("Tracing off; to send every service's spans to your OpenTelemetry collector: "
              "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 make run (docs/PRODUCTION.md, Tracing)")
    print("Try: grpcurl -plaintext 127.0.0.1:50051 list        Stop with Ctrl-C.\n", flush=True)
    while not stop:
        for service, process in list(supervisor.processes.items()):
            if process.poll() is not None:
                print(f"make run: {service} exited with code {process.returncode}; stopping", file=sys.stderr)
                stop = True
        time.sleep(0.2)
    print("stopping the suite...", flush=True)
    supervisor.stop()
    print("stopped.")


if __name__ == "__main__":
    main()
