"""The gateway's own settings (beyond the kit's ServiceConfig), from the environment."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.kit.config import ServiceConfig, env, env_float


@dataclass(frozen=True)
class GatewaySettings:
    call_deadline_s: float  # a step's deadline when the caller sent none (the kit's RS_CALL_DEADLINE_S)
    undo_timeout_s: float   # each compensating call's own deadline, whatever is left of the caller's
    evidence_key_file: Path  # the Ed25519 key evidence documents are signed with (PKCS#8 PEM, mode 0600)

    @classmethod
    def from_env(cls, config: ServiceConfig) -> "GatewaySettings":
        undo = env_float("RS_GATEWAY_UNDO_TIMEOUT_S", 5.0)
        if undo <= 0:
            raise SystemExit("configuration error: RS_GATEWAY_UNDO_TIMEOUT_S must be positive")
        default_key = str(config.var_dir / "secrets" / "gateway-evidence.key")
        key_file = env("RS_GATEWAY_EVIDENCE_KEY_FILE", default_key) or default_key
        return cls(call_deadline_s=config.call_deadline_s, undo_timeout_s=undo, evidence_key_file=Path(key_file))
