"""One-time codes: the only way a user's password is set. CreateUser (enrollment) and ResetPassword issue a code
to the user's own address; SetPassword takes it once. A code is 100 random bits, stored only as its SHA-256, one
live code per user, void after model.CODE_ATTEMPTS wrong tries or at its expiry."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets

from services.authz import identity_log, model
from services.authz.kdf import KdfPool
from services.authz.store import Queries, Store
from services.authz.tables import CodeRow
from services.authz.throttle import LoginThrottle
from services.kit.clock import Clock, as_utc


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().upper().replace("-", "").encode()).hexdigest()


def new_code() -> str:
    """20 base32 characters in groups of five: XXXXX-XXXXX-XXXXX-XXXXX."""
    raw = base64.b32encode(secrets.token_bytes(15)).decode().rstrip("=")[:20]
    return "-".join(raw[i:i + 5] for i in range(0, 20, 5))


async def issue(queries: Queries, user_id: str, purpose: str, now: dt.datetime, ttl: dt.timedelta) -> str:
    """A new code for `user_id` in the caller's unit of work, replacing any earlier one; the plain code, to mail."""
    code = new_code()
    await queries.delete_code(user_id)
    await queries.flush()
    queries.add(CodeRow(user_id=user_id, code_hash=_digest(code), purpose=purpose, expires_at=now + ttl,
                        attempts_left=model.CODE_ATTEMPTS, created_at=now))
    return code


async def set_password(store: Store, clock: Clock, kdf: KdfPool, throttle: LoginThrottle, user_id: str, code: str,
                       new_password: str, peer: str) -> None:
    """The user's new password, with its code: the code is used up, every session of the user ends, a login lock
    ends. A wrong, used or expired code (or an unknown user) is the same CodeRefused; a wrong code counts
    against the code. Rate-limited and shed like Login (the same throttle and hashing places)."""
    model.check_set_password(user_id, code, new_password)
    throttle.count(user_id, peer)
    with kdf.place():
        now = clock.now()
        async with store.write() as queries:
            row = await queries.code(user_id, for_update=True)
            if row is None or as_utc(row.expires_at) <= now:
                raise model.CodeRefused()
            if not hmac.compare_digest(row.code_hash, _digest(code)):
                row.attempts_left -= 1
                if row.attempts_left <= 0:
                    await queries.delete_code(user_id)
                    user = await queries.principal(user_id)
                    await identity_log.append(queries, user.customer if user else None, now,
                                              identity_log.ANONYMOUS, identity_log.CODE_VOIDED, f"users/{user_id}",
                                              f"{model.CODE_ATTEMPTS} wrong tries by unauthenticated callers")
                # committed: the wrong try counts even though the call fails
                failed = True
            else:
                failed = False
        if failed:
            raise model.CodeRefused()
        hashed = await kdf.hash(new_password)
        async with store.write() as queries:
            row = await queries.code(user_id, for_update=True)
            user = await queries.principal(user_id, for_update=True)
            if row is None or user is None or row.code_hash != _digest(code):
                raise model.CodeRefused()  # used by a concurrent call meanwhile
            await queries.delete_code(user_id)
            user.password_hash = hashed
            user.failed_logins, user.locked_until = 0, None
            user.updated_at = now
            await queries.revoke_tokens_of(user_id)
            await identity_log.append(queries, user.customer, now, f"users/{user_id}", identity_log.PASSWORD_SET,
                                      f"users/{user_id}", "with a one-time code ("
                                      + ("enrollment" if row.purpose == model.ENROLL else "after a reset") + ")")
