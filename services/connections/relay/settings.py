"""The relay's own settings (beyond the kit's ServiceConfig), from the environment."""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

from services.kit.config import ServiceConfig, env, env_float


def _positive(name: str, default: float) -> float:
    value = env_float(name, default)
    if value <= 0:
        raise SystemExit(f"configuration error: {name} must be positive")
    return value


@dataclass(frozen=True)
class RelaySettings:
    relay_id: str                  # this replica, new at every start
    check_interval_s: float        # how often live sessions and attachments are checked (cut within 2 s)
    replica_ttl: dt.timedelta      # a replica (and its attachments) not seen for this long is gone
    dial_timeout_s: float          # how long a connector has to answer a dial
    signing_key_file: Path         # the connections service's connector signing key (the same file)

    @classmethod
    def from_env(cls, config: ServiceConfig) -> "RelaySettings":
        interval = _positive("RS_RELAY_CHECK_INTERVAL_S", 0.5)
        if interval > 1.0:
            raise SystemExit("configuration error: RS_RELAY_CHECK_INTERVAL_S must be at most 1 (a window's end, "
                             "a revocation or a termination must cut live tunnels within 2 s)")
        ttl = _positive("RS_RELAY_REPLICA_TTL_S", 5.0)
        if ttl <= 2 * interval:
            raise SystemExit("configuration error: RS_RELAY_REPLICA_TTL_S must exceed twice "
                             "RS_RELAY_CHECK_INTERVAL_S (a replica renews itself at every check)")
        key_file = env("RS_CONNECTIONS_SIGNING_KEY_FILE", str(config.var_dir / "secrets" / "connections-signing.key"))
        return cls(secrets.token_hex(8), interval, dt.timedelta(seconds=ttl),
                   _positive("RS_RELAY_DIAL_TIMEOUT_S", 10.0), Path(key_file))
