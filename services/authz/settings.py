"""authz's own settings (beside the kit's ServiceConfig), from RS_AUTHZ_* environment variables."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from services.authz.model import LoginLock
from services.authz.passwords import DEFAULT_LOG2_N
from services.kit.config import env_int

MIN_LOG2_N, MAX_LOG2_N = 1, 20  # scrypt needs n > 1; at 20 one hash takes 1 GiB (r = 8)


@dataclass(frozen=True)
class AuthzSettings:
    """How long a login's token lives, what a password hash costs, and when failed logins lock a user."""

    token_ttl: dt.timedelta = dt.timedelta(hours=12)
    kdf_log2_n: int = DEFAULT_LOG2_N  # scrypt's cost: n = 2**kdf_log2_n
    login_lock: LoginLock = field(default_factory=LoginLock)

    @classmethod
    def from_env(cls) -> "AuthzSettings":
        """RS_AUTHZ_TOKEN_TTL_S, RS_AUTHZ_KDF_LOG2_N, RS_AUTHZ_MAX_FAILED_LOGINS (0: never lock) and
        RS_AUTHZ_LOGIN_LOCK_S; a value that cannot work stops the service, naming it."""
        max_failed, lock_s = env_int("RS_AUTHZ_MAX_FAILED_LOGINS", 5), env_int("RS_AUTHZ_LOGIN_LOCK_S", 900)
        if max_failed < 0 or lock_s < 1:
            raise SystemExit("configuration error: RS_AUTHZ_MAX_FAILED_LOGINS must be 0 (never lock) or more, "
                             "and RS_AUTHZ_LOGIN_LOCK_S at least 1")
        ttl_s, log2_n = env_int("RS_AUTHZ_TOKEN_TTL_S", 12 * 3600), env_int("RS_AUTHZ_KDF_LOG2_N", DEFAULT_LOG2_N)
        if ttl_s < 1:
            raise SystemExit("configuration error: RS_AUTHZ_TOKEN_TTL_S must be at least 1 (seconds)")
        if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
            raise SystemExit(f"configuration error: RS_AUTHZ_KDF_LOG2_N must be {MIN_LOG2_N} to {MAX_LOG2_N} "
                             f"(scrypt's n = 2**value; {DEFAULT_LOG2_N} by default)")
        return cls(token_ttl=dt.timedelta(seconds=ttl_s), kdf_log2_n=log2_n,
                   login_lock=LoginLock(max_failed, dt.timedelta(seconds=lock_s)))
