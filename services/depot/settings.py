"""The depot's own configuration (beside the kit's ServiceConfig), from RS_DEPOT_* environment variables."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from services.depot import barrier
from services.depot.masterkeyfile import PROFILE_DEV, PROFILE_PRODUCTION
from services.kit.config import ServiceConfig, env, env_float, env_int


@dataclass
class DepotSettings:
    """How the depot keeps keys, bounds expiry and runs its background work."""

    master_key_file: Path
    profile: str = PROFILE_DEV
    max_expiry: dt.timedelta = dt.timedelta(days=90)
    sweep_interval_s: float = 60.0
    rewrap_batch: int = 200
    key_usage_limit: int = barrier.DEFAULT_USAGE_LIMIT
    # reveals refused to one caller outside a customer that are logged one by one per hour; past it they are
    # counted, and the count is logged (LOG_ACTION_REVEAL_DENIALS_COUNTED)
    foreign_denials_per_hour: int = 20
    background: bool = True  # run the expiry sweep and key re-wrapping on their own (tests drive them by hand)
    # how long before an entry's expiration it is warned of (an EXPIRY_WARNING log event each), longest first
    expiry_warnings: tuple[dt.timedelta, ...] = (dt.timedelta(days=7), dt.timedelta(days=1))

    @classmethod
    def from_env(cls, config: ServiceConfig) -> "DepotSettings":
        settings = cls(
            master_key_file=Path(env("RS_DEPOT_MASTER_KEY_FILE",
                                     str(config.var_dir / "secrets" / "depot-master.key"))),
            profile=config.profile,
            max_expiry=dt.timedelta(days=env_int("RS_DEPOT_MAX_EXPIRY_DAYS", 90)),
            sweep_interval_s=env_float("RS_DEPOT_SWEEP_INTERVAL_S", 60.0),
            rewrap_batch=env_int("RS_DEPOT_REWRAP_BATCH", 200),
            key_usage_limit=env_int("RS_DEPOT_KEY_USAGE_LIMIT", barrier.DEFAULT_USAGE_LIMIT),
            foreign_denials_per_hour=env_int("RS_DEPOT_FOREIGN_DENIALS_PER_HOUR", 20),
            expiry_warnings=parse_leads("RS_DEPOT_EXPIRY_WARNINGS", env("RS_DEPOT_EXPIRY_WARNINGS", "7d,1d")),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse nonsense at start, with the variable to fix."""
        if self.profile not in (PROFILE_DEV, PROFILE_PRODUCTION):
            raise SystemExit(f"configuration error: RS_PROFILE must be 'dev' or 'production', got {self.profile!r}")
        if self.max_expiry < dt.timedelta(days=1):
            raise SystemExit("configuration error: RS_DEPOT_MAX_EXPIRY_DAYS must be at least 1")
        if self.sweep_interval_s <= 0:
            raise SystemExit("configuration error: RS_DEPOT_SWEEP_INTERVAL_S must be positive")
        if self.rewrap_batch < 1:
            raise SystemExit("configuration error: RS_DEPOT_REWRAP_BATCH must be at least 1")
        if not 1 <= self.key_usage_limit <= barrier.USAGE_BOUND:
            raise SystemExit(f"configuration error: RS_DEPOT_KEY_USAGE_LIMIT must be in 1..{barrier.USAGE_BOUND}")
        if self.foreign_denials_per_hour < 1:
            raise SystemExit("configuration error: RS_DEPOT_FOREIGN_DENIALS_PER_HOUR must be at least 1")
        if any(lead <= dt.timedelta(0) or lead >= self.max_expiry for lead in self.expiry_warnings):
            raise SystemExit("configuration error: every RS_DEPOT_EXPIRY_WARNINGS lead must be positive and "
                             "shorter than RS_DEPOT_MAX_EXPIRY_DAYS")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_leads(variable: str, text: str) -> tuple[dt.timedelta, ...]:
    """"7d,1d" (units s, m, h, d; "" for none) as durations, longest first; SystemExit naming `variable`."""
    leads = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        number, unit = part[:-1], part[-1:]
        if unit not in _UNITS or not number.isdigit():
            raise SystemExit(f"configuration error: {variable} must be a comma list like 7d,1d (units s, m, h, d), "
                             f"not {text!r}")
        leads.append(dt.timedelta(seconds=int(number) * _UNITS[unit]))
    return tuple(sorted(set(leads), reverse=True))
