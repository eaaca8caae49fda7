"""The gateway's own settings (beyond the kit's ServiceConfig), from the environment."""
from __future__ import annotations

from dataclasses import dataclass

from services.kit.config import ServiceConfig, env_float


@dataclass(frozen=True)
class GatewaySettings:
    call_deadline_s: float  # a step's deadline when the caller sent none (the kit's RS_CALL_DEADLINE_S)
    undo_timeout_s: float   # each compensating call's own deadline, whatever is left of the caller's

    @classmethod
    def from_env(cls, config: ServiceConfig) -> "GatewaySettings":
        undo = env_float("RS_GATEWAY_UNDO_TIMEOUT_S", 5.0)
        if undo <= 0:
            raise SystemExit("configuration error: RS_GATEWAY_UNDO_TIMEOUT_S must be positive")
        return cls(call_deadline_s=config.call_deadline_s, undo_timeout_s=undo)
