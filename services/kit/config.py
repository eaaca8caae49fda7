"""Configuration from environment variables, with defaults that run on a laptop and nothing secret in them."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("gateway", "authz", "depot", "connections")
DEFAULT_PORTS = {"gateway": 50051, "authz": 50052, "depot": 50053, "connections": 50054, "relay": 50055}
# A process that belongs to another service: its database, service account (token) and TLS identity are that
# service's. The relay is the connections service's data plane.
PART_OF = {"relay": "connections"}
# The processes clients outside the suite reach (operators and tools; customers' connectors and engineers'
# tunnels): they may serve those clients with a public certificate instead of the suite's mutual TLS.
PUBLIC_FACING = ("gateway", "relay")


def identity_of(process: str) -> str:
    """The service whose account and certificate a process uses ("connections" for the relay)."""
    return PART_OF.get(process, process)


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_number(name: str, default, parse, what: str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise SystemExit(f"configuration error: {name} must be {what}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"configuration error: {name} must be 1 or 0 (true/false), got {raw!r}")


def env_path(name: str) -> Path | None:
    raw = os.environ.get(name)
    return Path(raw) if raw else None


def database_url(service: str, default: str) -> str:
    """RS_<SVC>_DATABASE_URL, with the password taken from RS_<SVC>_DATABASE_PASSWORD_FILE when that is set
    (a mounted secret), so that no password has to stand in an environment variable."""
    up = service.upper()
    url = env(f"RS_{up}_DATABASE_URL", default)
    password_file = os.environ.get(f"RS_{up}_DATABASE_PASSWORD_FILE")
    if not password_file:
        return url
    try:
        password = Path(password_file).read_text().strip()
    except OSError as exc:
        raise SystemExit(f"configuration error: RS_{up}_DATABASE_PASSWORD_FILE={password_file} cannot be read "
                         f"({exc.strerror})") from None
    from sqlalchemy.engine import make_url  # the kit's database layer already depends on it

    return make_url(url).set(password=password).render_as_string(hide_password=False)


def var_dir() -> Path:
    return Path(env("RS_VAR_DIR", "var")).resolve()


def _addr(service: str) -> str:
    return env(f"RS_{service.upper()}_ADDR", f"127.0.0.1:{DEFAULT_PORTS[service]}")


def _coalesce_us() -> float:
    value = env_float("RS_AUTHZ_COALESCE_US", 0.0)
    if not 0 <= value <= 10_000:
        raise SystemExit("configuration error: RS_AUTHZ_COALESCE_US must be between 0 and 10000 (microseconds)")
    return value


@dataclass
class ServiceConfig:
    """What every service reads: where to listen, its database, where the others are, how long to wait."""

    service: str
    host: str = "127.0.0.1"
    port: int = 0
    database_url: str = ""
    var_dir: Path = field(default_factory=var_dir)
    authz_addr: str = ""
    depot_addr: str = ""
    connections_addr: str = ""
    service_token_file: Path | None = None
    authz_deadline_s: float = 2.0
    authz_coalesce_us: float = 0.0  # the longest a check waits to travel with others' (0: each on its own)
    call_deadline_s: float = 10.0
    grace_s: float = 5.0
    events_heartbeat_s: float = 15.0  # an event feed with nothing new sends its cursor this often
    events_max_watches: int = 200  # event feeds open in this process at most ...
    events_max_watches_per_user: int = 8  # ... and of one principal
    max_message_bytes: int = 4 * 1024 * 1024
    profile: str = "dev"
    # Mutual TLS between the services (off by default; `make certs` writes a development CA and certificates).
    tls: bool = False
    tls_dir: Path | None = None  # ca.pem, <service>.pem, <service>-key.pem; None: <var_dir>/certs
    public_tls_cert: Path | None = None  # gateway, relay: the certificate clients see (no client certificate asked)
    public_tls_key: Path | None = None
    # Prometheus metrics over HTTP: 0 = off.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, service: str) -> "ServiceConfig":
        up = service.upper()
        vd = var_dir()
        owner = identity_of(service)  # the relay uses the connections service's database and account
        return cls(
            service=service,
            host=env(f"RS_{up}_HOST", env("RS_HOST", "127.0.0.1")),
            port=env_int(f"RS_{up}_PORT", DEFAULT_PORTS[service]),
            database_url=database_url(owner, f"sqlite:///{vd / (owner + '.db')}"),
            var_dir=vd,
            authz_addr=_addr("authz"),
            depot_addr=_addr("depot"),
            connections_addr=_addr("connections"),
            service_token_file=Path(env(f"RS_{owner.upper()}_TOKEN_FILE", str(vd / "secrets" / f"{owner}.token"))),
            authz_deadline_s=env_float("RS_AUTHZ_DEADLINE_S", 2.0),
            authz_coalesce_us=_coalesce_us(),
            call_deadline_s=env_float("RS_CALL_DEADLINE_S", 10.0),
            grace_s=env_float("RS_GRACE_S", 5.0),
            events_heartbeat_s=env_float("RS_EVENTS_HEARTBEAT_S", 15.0),
            events_max_watches=env_int("RS_EVENTS_MAX_WATCHES", 200),
            events_max_watches_per_user=env_int("RS_EVENTS_MAX_WATCHES_PER_USER", 8),
            max_message_bytes=env_int("RS_MAX_MESSAGE_BYTES", 4 * 1024 * 1024),
            profile=env("RS_PROFILE", "dev"),
            tls=env_bool("RS_TLS", False),
            tls_dir=Path(env("RS_TLS_DIR", str(vd / "certs"))),
            public_tls_cert=env_path(f"RS_{up}_PUBLIC_TLS_CERT") if service in PUBLIC_FACING else None,
            public_tls_key=env_path(f"RS_{up}_PUBLIC_TLS_KEY") if service in PUBLIC_FACING else None,
            metrics_port=env_int(f"RS_{up}_METRICS_PORT", 0),
            metrics_host=env("RS_METRICS_HOST", "127.0.0.1"),
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def certs_dir(self) -> Path:
        return self.tls_dir if self.tls_dir is not None else self.var_dir / "certs"


# Every variable the kit reads, for `--help` and the production guide: (name, default, meaning).
KIT_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("RS_{SVC}_HOST / RS_HOST", "127.0.0.1", "address to listen on (0.0.0.0 in a container)"),
    ("RS_{SVC}_PORT", "gateway 50051, authz 50052, depot 50053, connections 50054, relay 50055", "gRPC port"),
    ("RS_{SVC}_DATABASE_URL", "sqlite:///$RS_VAR_DIR/<svc>.db", "this service's own database "
                                                              "(postgresql+psycopg://user:pw@host/db)"),
    ("RS_{SVC}_DATABASE_PASSWORD_FILE", "(unset)", "a file holding the database password (a mounted secret); "
                                                  "keeps the password out of the URL"),
    ("RS_AUTHZ_ADDR / RS_DEPOT_ADDR / RS_CONNECTIONS_ADDR", "127.0.0.1:<default port>",
     "where the other services are"),
    ("RS_VAR_DIR", "var", "local state: SQLite files, token files, development keys"),
    ("RS_{SVC}_TOKEN_FILE", "$RS_VAR_DIR/secrets/<svc>.token", "this service's own token (0600)"),
    ("RS_AUTHZ_DEADLINE_S", "2.0", "deadline of each authorization check (fails closed)"),
    ("RS_AUTHZ_COALESCE_US", "0", "the longest a call's authz checks wait to travel with other calls' in one "
                                    "CheckBulk (0: each call consults on its own; a call alone never waits)"),
    ("RS_CALL_DEADLINE_S", "10.0", "default deadline of calls to other services"),
    ("RS_GRACE_S", "5.0", "shutdown grace for in-flight calls"),
    ("RS_MAX_MESSAGE_BYTES", "4194304", "largest gRPC message"),
    ("RS_PROFILE", "dev", "dev or production (production refuses development keys)"),
    ("RS_TLS", "0", "1: mutual TLS between the services (client certificates from the suite's CA required)"),
    ("RS_TLS_DIR", "$RS_VAR_DIR/certs", "ca.pem, <svc>.pem, <svc>-key.pem (make certs writes development ones)"),
    ("RS_GATEWAY_PUBLIC_TLS_CERT / RS_GATEWAY_PUBLIC_TLS_KEY", "(unset)",
     "gateway only: serve clients over TLS with this certificate (no client certificate asked)"),
    ("RS_RELAY_PUBLIC_TLS_CERT / RS_RELAY_PUBLIC_TLS_KEY", "(unset)",
     "relay only: serve connectors and tunnels over TLS with this certificate (no client certificate asked)"),
    ("RS_{SVC}_METRICS_PORT", "0 (off)", "Prometheus metrics on http://RS_METRICS_HOST:port/metrics"),
    ("RS_METRICS_HOST", "127.0.0.1", "address of the metrics endpoint"),
    ("RS_EVENTS_HEARTBEAT_S", "15", "an event feed (WatchEvents) with nothing new sends its cursor this often"),
    ("RS_EVENTS_MAX_WATCHES / RS_EVENTS_MAX_WATCHES_PER_USER", "200 / 8",
     "event feeds a process serves at once, and of one principal (more: RESOURCE_EXHAUSTED)"),
    ("RS_SIEM_ADDRESS", "(unset: no export)", "depot, connections: send their events to a SIEM at host:port (TCP)"),
    ("RS_SIEM_FORMAT", "rfc5424", "rfc5424 (syslog, octet-counted frames) or jsonl (one JSON object a line)"),
    ("RS_SIEM_TLS / RS_SIEM_CA_FILE", "0 / (system CAs)", "1: TLS to the SIEM, its certificate checked against "
                                                        "the CA file (required by the production profile)"),
    ("RS_SIEM_ENTERPRISE_ID", "32473", "the enterprise number of the syslog structured data's SD-ID "
                                       "(event@<number>); 32473 is IANA's number for documentation"),
    ("RS_SIEM_INTERVAL_S / RS_SIEM_BATCH", "1.0 / 500", "how often the export looks for new events, and how "
                                                        "many it sends at a time"),
    ("RS_EVENT_MAILS", "0 (make run: 1)", "depot, connections: 1 mails the events that concern one user to it "
                                          "(at most one replica each: two would mail everything twice)"),
    ("RS_EVENT_MAILS_INTERVAL_S / RS_EVENT_MAILS_BATCH", "1.0 / 200", "how often the event mails look for new "
                                                                     "events, and how many they read at a time"),
    ("RS_WEBHOOK_RETRY_FOR_S", "86400", "depot: how long a webhook delivery is retried before it is parked as "
                                        "failed (redeliver it then)"),
    ("RS_WEBHOOK_TIMEOUT_S", "10", "depot: one webhook try's whole time (connect and answer)"),
    ("RS_WEBHOOK_BACKOFF_S / RS_WEBHOOK_BACKOFF_MAX_S", "10 / 3600", "depot: the first retry's mean delay and the "
                                                                     "longest (exponential, with jitter)"),
    ("RS_WEBHOOK_INTERVAL_S / RS_WEBHOOK_BATCH", "1.0 / 50", "depot: how often the worker looks for due "
                                                            "deliveries, and how many it sends per pass"),
    ("RS_LOG_LEVEL", "INFO", "log level of the JSON-lines log on stderr"),
    ("RS_EVENT_LOOP", "uvloop", "the process's event loop: uvloop, or asyncio for the standard library's"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "(unset: tracing off)",
     "OpenTelemetry collector for traces, OTLP over gRPC (e.g. http://127.0.0.1:4317); setting it turns tracing on"),
    ("OTEL_TRACES_EXPORTER", "otlp", "otlp, console or none; the other standard OTEL_* variables apply "
                                     "(OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER[_ARG], OTEL_SDK_DISABLED, OTEL_BSP_*)"),
    ("OTEL_SERVICE_NAME", "remotesupport-<svc>", "the service name on this process's spans"),
)
