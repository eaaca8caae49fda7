"""Sessions: Login and Logout, the failed-login lock, and the bearer tokens of users and service accounts."""
from __future__ import annotations

import datetime as dt
import logging

from services.authz import identity_log, model
from services.authz.kdf import KdfPool
from services.authz.passwords import new_token, token_hash
from services.authz.settings import AuthzSettings
from services.authz.store import Queries, Store
from services.authz.tables import PrincipalRow, TokenRow
from services.authz.throttle import LoginThrottle
from services.kit.clock import Clock, as_utc
from services.kit.errors import NotFound
from services.kit.principals import SERVICE_ACCOUNT

logger = logging.getLogger(__name__)


def _add_token(queries: Queries, user_id: str, now: dt.datetime, ttl: dt.timedelta) -> str:
    token = new_token()
    queries.add(TokenRow(token_hash=token_hash(token), user_id=user_id, expires_at=now + ttl, revoked=False,
                         created_at=now))
    return token


async def login(store: Store, clock: Clock, settings: AuthzSettings, kdf: KdfPool, throttle: LoginThrottle,
                user_id: str, password: str, peer: str) -> tuple[str, dt.datetime, PrincipalRow]:
    """A new token for the right password of an enabled, unlocked user.

    Before anything is read: an attempt beyond the rate of its user ID or of its peer (`peer`, the caller's
    context.peer()), or one that finds no free place for the password check (kdf.KdfPool), is refused at once
    with RESOURCE_EXHAUSTED, the same whether or not the user exists, and counts no failure. An admitted
    attempt with a wrong password counts against the user; at login_lock.max_failures in a row the user is
    locked for login_lock.duration. Every admitted refusal is the same UNAUTHENTICATED and costs one KDF run,
    so neither the answer nor its time tells which check failed."""
    model.check_login(user_id, password)
    throttle.count(user_id, peer)
    with kdf.place():
        return await _checked_login(store, clock, settings, kdf, user_id, password)


async def _checked_login(store: Store, clock: Clock, settings: AuthzSettings, kdf: KdfPool, user_id: str,
                         password: str) -> tuple[str, dt.datetime, PrincipalRow]:
    row = None
    if not model.CONTROL.search(user_id):  # no user ID has one: an unknown user, found without asking the database
        async with store.read() as queries:
            row = await queries.principal(user_id)
    now = clock.now()
    locked = row is not None and model.lock_end(row.locked_until, now) is not None
    # a locked user's password is checked as any other (same cost) and the answer ignored; an unknown user's
    # costs one KDF run at the service's own cost
    right = await kdf.verify(password, row.password_hash if row else None)
    ok = right and not locked
    if row is not None and not locked and not ok:
        await _failed_login(store, row.user_id, now, settings.login_lock)
    if not ok or row is None or row.disabled:
        raise model.LoginRefused()
    async with store.write() as queries:
        token = _add_token(queries, row.user_id, now, settings.token_ttl)
        if row.failed_logins or row.locked_until is not None:  # a login ends the count and any past lock
            await queries.set_login_lock(row.user_id, None)
            row.failed_logins, row.locked_until = 0, None
    return token, now + settings.token_ttl, row


async def _failed_login(store: Store, user_id: str, now: dt.datetime, lock: model.LoginLock) -> None:
    """Count a wrong password (concurrent attempts all count); the last one allowed locks."""
    if lock.max_failures <= 0:
        return
    async with store.write() as queries:
        failures = await queries.count_failed_login(user_id)
        if failures >= lock.max_failures:
            until = now + lock.duration
            await queries.set_login_lock(user_id, until)
            logger.warning("users/%s locked until %s after %d failed logins in a row", user_id,
                           until.isoformat(timespec="seconds"), failures)


async def logout(store: Store, token: str) -> None:
    async with store.write() as queries:
        await queries.revoke_token(token_hash(token))


async def mint_token(store: Store, clock: Clock, user_id: str, ttl: dt.timedelta) -> tuple[str, dt.datetime]:
    """A new token of `user_id` and when it expires."""
    now = clock.now()
    async with store.write() as queries:
        token = _add_token(queries, user_id, now, ttl)
    return token, now + ttl


async def create_service_token(store: Store, clock: Clock, actor: str, user_id: str,
                               ttl: dt.timedelta) -> tuple[str, dt.datetime]:
    """A new token of a service account, recorded in the vendor side's identity log (by `actor`)."""
    now = clock.now()
    async with store.write() as queries:
        row = await queries.principal(user_id)
        if row is None or row.kind != SERVICE_ACCOUNT:
            raise NotFound(f"service account users/{user_id} does not exist")
        token = _add_token(queries, user_id, now, ttl)
        await identity_log.append(queries, identity_log.VENDOR, now, actor, identity_log.SERVICE_TOKEN_CREATED,
                                  f"users/{user_id}", f"valid until {(now + ttl).isoformat(timespec='seconds')}")
    return token, now + ttl


async def token_valid_beyond(store: Store, token: str, instant: dt.datetime) -> bool:
    """Whether `token` is known, not revoked and still valid at `instant`."""
    async with store.read() as queries:
        row = await queries.token(token_hash(token))
    return row is not None and not row.revoked and as_utc(row.expires_at) > instant
