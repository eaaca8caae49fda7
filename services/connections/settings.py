"""The connections service's own settings (beyond the kit's ServiceConfig), from the environment."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from services.kit.config import ServiceConfig, env, env_float

_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}")


@dataclass(frozen=True)
class ConnectionsSettings:
    sweep_interval_s: float
    signing_key_file: Path
    assignment_grace: dt.timedelta
    relay_addresses: tuple[str, ...]  # the relay replicas a connector file tells the connector to dial
    closing_warning: dt.timedelta = dt.timedelta(minutes=15)  # WINDOW_CLOSING this long before a window's end

    @classmethod
    def from_env(cls, config: ServiceConfig) -> "ConnectionsSettings":
        interval = env_float("RS_CONNECTIONS_SWEEP_INTERVAL_S", 30.0)
        if interval <= 0:
            raise SystemExit("configuration error: RS_CONNECTIONS_SWEEP_INTERVAL_S must be positive")
        grace = env_float("RS_CONNECTIONS_ASSIGNMENT_GRACE_S", 60.0)
        if grace < config.authz_deadline_s:
            raise SystemExit("configuration error: RS_CONNECTIONS_ASSIGNMENT_GRACE_S must be at least "
                             "RS_AUTHZ_DEADLINE_S (a reconciliation must not overtake a status change in flight)")
        key_file = env("RS_CONNECTIONS_SIGNING_KEY_FILE", str(config.var_dir / "secrets" / "connections-signing.key"))
        relays = tuple(a.strip() for a in env("RS_RELAY_ADDRESSES", "127.0.0.1:50055").split(",") if a.strip())
        if not relays or not all(_HOST_PORT.fullmatch(a) for a in relays):
            raise SystemExit("configuration error: RS_RELAY_ADDRESSES must be a comma-separated list of host:port "
                             "(the relay replicas' addresses as the customer's connector reaches them)")
        closing = env_float("RS_CONNECTIONS_CLOSING_WARNING_S", 900.0)
        if closing < 0:
            raise SystemExit("configuration error: RS_CONNECTIONS_CLOSING_WARNING_S must be 0 (off) or positive")
        return cls(interval, Path(key_file), dt.timedelta(seconds=grace), relays, dt.timedelta(seconds=closing))
