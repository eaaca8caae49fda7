"""Configuration from environment variables, with defaults that run on a laptop and nothing secret in them."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("gateway", "authz", "depot", "connections")
DEFAULT_PORTS = {"gateway": 50051, "authz": 50052, "depot": 50053, "connections": 50054}


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"configuration error: {name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"configuration error: {name} must be a number, got {raw!r}") from exc


def var_dir() -> Path:
    return Path(env("RS_VAR_DIR", "var")).resolve()


def _addr(service: str) -> str:
    return env(f"RS_{service.upper()}_ADDR", f"127.0.0.1:{DEFAULT_PORTS[service]}")


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
    call_deadline_s: float = 10.0
    grace_s: float = 5.0
    max_message_bytes: int = 4 * 1024 * 1024
    profile: str = "dev"

    @classmethod
    def from_env(cls, service: str) -> "ServiceConfig":
        up = service.upper()
        vd = var_dir()
        return cls(
            service=service,
            host=env(f"RS_{up}_HOST", env("RS_HOST", "127.0.0.1")),
            port=env_int(f"RS_{up}_PORT", DEFAULT_PORTS[service]),
            database_url=env(f"RS_{up}_DATABASE_URL", f"sqlite:///{vd / (service + '.db')}"),
            var_dir=vd,
            authz_addr=_addr("authz"),
            depot_addr=_addr("depot"),
            connections_addr=_addr("connections"),
            service_token_file=Path(env(f"RS_{up}_TOKEN_FILE", str(vd / "secrets" / f"{service}.token"))),
            authz_deadline_s=env_float("RS_AUTHZ_DEADLINE_S", 2.0),
            call_deadline_s=env_float("RS_CALL_DEADLINE_S", 10.0),
            grace_s=env_float("RS_GRACE_S", 5.0),
            max_message_bytes=env_int("RS_MAX_MESSAGE_BYTES", 4 * 1024 * 1024),
            profile=env("RS_PROFILE", "dev"),
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
