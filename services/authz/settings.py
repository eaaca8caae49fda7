"""authz's own settings (beside the kit's ServiceConfig), from RS_AUTHZ_* environment variables."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from services.authz.model import LoginLock, LoginRate
from services.authz.passwords import DEFAULT_LOG2_N
from services.kit.config import env, env_int

MIN_LOG2_N, MAX_LOG2_N = 1, 20  # scrypt needs n > 1; at 20 one hash takes 1 GiB (r = 8)
MAX_KDF_WORKERS = 64


@dataclass(frozen=True)
class AuthzSettings:
    """How long a login's token lives, what a password hash costs, when failed logins lock a user, and how
    many login attempts are checked at once and admitted per user ID and per peer address."""

    token_ttl: dt.timedelta = dt.timedelta(hours=12)
    kdf_log2_n: int = DEFAULT_LOG2_N  # scrypt's cost: n = 2**kdf_log2_n
    login_lock: LoginLock = field(default_factory=LoginLock)
    kdf_workers: int = 1  # threads hashing passwords (leave the event loop a core)
    kdf_queue: int = 8  # login attempts waiting for one of them; one more is shed at once
    user_logins: LoginRate = LoginRate(per_min=10, burst=20)
    peer_logins: LoginRate = LoginRate(per_min=1200, burst=200)
    enroll_code_ttl: dt.timedelta = dt.timedelta(days=3)  # a new user's code
    reset_code_ttl: dt.timedelta = dt.timedelta(hours=1)  # a reset's code
    admin_email: str = "admin@localhost"  # the platform admin's own address, set at first start

    @classmethod
    def from_env(cls) -> "AuthzSettings":
        """RS_AUTHZ_TOKEN_TTL_S, RS_AUTHZ_KDF_LOG2_N, RS_AUTHZ_MAX_FAILED_LOGINS (0: never lock),
        RS_AUTHZ_LOGIN_LOCK_S, RS_AUTHZ_KDF_WORKERS, RS_AUTHZ_KDF_QUEUE, RS_AUTHZ_USER_LOGINS_PER_MIN and
        RS_AUTHZ_USER_LOGIN_BURST, RS_AUTHZ_PEER_LOGINS_PER_MIN and RS_AUTHZ_PEER_LOGIN_BURST (a rate of 0:
        no limit), RS_AUTHZ_ENROLL_CODE_TTL_S and RS_AUTHZ_RESET_CODE_TTL_S (one-time codes), RS_AUTHZ_ADMIN_EMAIL;
        a value that cannot work stops the service, naming it."""
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
        workers, queue = env_int("RS_AUTHZ_KDF_WORKERS", cls.kdf_workers), env_int("RS_AUTHZ_KDF_QUEUE", cls.kdf_queue)
        if not 1 <= workers <= MAX_KDF_WORKERS:
            raise SystemExit(f"configuration error: RS_AUTHZ_KDF_WORKERS must be 1 to {MAX_KDF_WORKERS} "
                             "(threads hashing passwords)")
        if queue < 0:
            raise SystemExit("configuration error: RS_AUTHZ_KDF_QUEUE must be 0 or more (login attempts waiting "
                             "for a hashing thread)")
        enroll_s = env_int("RS_AUTHZ_ENROLL_CODE_TTL_S", int(cls.enroll_code_ttl.total_seconds()))
        reset_s = env_int("RS_AUTHZ_RESET_CODE_TTL_S", int(cls.reset_code_ttl.total_seconds()))
        if enroll_s < 60 or reset_s < 60:
            raise SystemExit("configuration error: RS_AUTHZ_ENROLL_CODE_TTL_S and RS_AUTHZ_RESET_CODE_TTL_S must be "
                             "at least 60 (seconds)")
        return cls(token_ttl=dt.timedelta(seconds=ttl_s), kdf_log2_n=log2_n,
                   enroll_code_ttl=dt.timedelta(seconds=enroll_s), reset_code_ttl=dt.timedelta(seconds=reset_s),
                   admin_email=env("RS_AUTHZ_ADMIN_EMAIL", cls.admin_email),
                   login_lock=LoginLock(max_failed, dt.timedelta(seconds=lock_s)), kdf_workers=workers,
                   kdf_queue=queue, user_logins=_rate("USER", cls.user_logins),
                   peer_logins=_rate("PEER", cls.peer_logins))


def _rate(who: str, default: LoginRate) -> LoginRate:
    """RS_AUTHZ_<who>_LOGINS_PER_MIN (0: no limit) and RS_AUTHZ_<who>_LOGIN_BURST (at least 1)."""
    per_min = env_int(f"RS_AUTHZ_{who}_LOGINS_PER_MIN", default.per_min)
    burst = env_int(f"RS_AUTHZ_{who}_LOGIN_BURST", default.burst)
    if per_min < 0 or burst < 1:
        raise SystemExit(f"configuration error: RS_AUTHZ_{who}_LOGINS_PER_MIN must be 0 (no limit) or more, and "
                         f"RS_AUTHZ_{who}_LOGIN_BURST at least 1")
    return LoginRate(per_min, burst)
