"""authz logic: customers, users, passwords, tokens, grants and support assignments."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from services.authz import policy
from services.authz.passwords import MAX_PASSWORD, MIN_PASSWORD, hash_password, new_token, token_hash, \
    verify_password
from services.authz.tables import AssignmentRow, CustomerRow, GrantRow, PrincipalRow, TokenRow
from services.kit.clock import as_utc
from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unauthenticated
from services.kit.validate import Violations

logger = logging.getLogger(__name__)

S_USER = re.compile(r"^S[0-9]{10}$")
LOGIN = re.compile(r"^[a-z][a-z0-9._-]{1,62}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
INSTALLATION = re.compile(r"^[0-9]{1,10}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never part of a name or an address (and PostgreSQL text cannot hold NUL)


def check_password_policy(field: str, password: str, violations: Violations) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        violations.add(field, f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")


LOGIN_REFUSED = "invalid user ID or password, or the user is disabled or locked"


@dataclass(frozen=True)
class LoginLock:
    """After `max_failures` failed logins in a row a user is locked for `duration` (0 failures: never)."""

    max_failures: int = 5
    duration: dt.timedelta = dt.timedelta(minutes=15)


def lock_end(row: PrincipalRow, now: dt.datetime) -> dt.datetime | None:
    """When the user's login lock ends, or None when it is not locked at `now`."""
    until = as_utc(row.locked_until) if row.locked_until is not None else None
    return until if until is not None and until > now else None


async def login(db, clock, user_id: str, password: str, ttl: dt.timedelta, kdf_log2_n: int,
                lock: LoginLock = LoginLock()) -> tuple[str, dt.datetime, PrincipalRow]:
    """A new token for the right password of an enabled, unlocked user. A wrong password counts against the
    user; at lock.max_failures in a row the user is locked for lock.duration. Every refusal is the same
    UNAUTHENTICATED and costs one KDF run, so neither the answer nor its time tells which check failed."""
    v = Violations()
    v.required("user_id", user_id)
    v.required("password", password)
    v.max_len("user_id", user_id, 64)
    v.max_len("password", password, MAX_PASSWORD)
    v.raise_if_any()
    row = None
    if not CONTROL.search(user_id):  # no user ID has one: an unknown user, found without asking the database
        async with db.sessions() as session:
            row = await session.get(PrincipalRow, user_id)
    now = clock.now()
    locked = row is not None and lock_end(row, now) is not None
    # a locked user's password is checked as any other (same cost) and the answer ignored; an unknown user's
    # costs one KDF run at the service's own cost
    right = await asyncio.to_thread(verify_password, password, row.password_hash if row else None, kdf_log2_n)
    ok = right and not locked
    if row is not None and not locked and not ok:
        await _failed_login(db, row.user_id, now, lock)
    if not ok or row is None or row.disabled:
        raise Unauthenticated(LOGIN_REFUSED)
    token = new_token()
    async with db.unit_of_work() as session:
        session.add(TokenRow(token_hash=token_hash(token), user_id=row.user_id, expires_at=now + ttl,
                             revoked=False, created_at=now))
        if row.failed_logins or row.locked_until is not None:  # a login ends the count and any past lock
            await session.execute(update(PrincipalRow).where(PrincipalRow.user_id == row.user_id)
                                  .values(failed_logins=0, locked_until=None))
            row.failed_logins, row.locked_until = 0, None
    return token, now + ttl, row


async def _failed_login(db, user_id: str, now: dt.datetime, lock: LoginLock) -> None:
    """Count a wrong password (atomically: concurrent attempts all count); the last one allowed locks."""
    if lock.max_failures <= 0:
        return
    async with db.unit_of_work() as session:
        failures = (await session.execute(
            update(PrincipalRow).where(PrincipalRow.user_id == user_id)
            .values(failed_logins=PrincipalRow.failed_logins + 1)
            .returning(PrincipalRow.failed_logins))).scalar_one()
        if failures >= lock.max_failures:
            until = now + lock.duration
            await session.execute(update(PrincipalRow).where(PrincipalRow.user_id == user_id)
                                  .values(failed_logins=0, locked_until=until))
            logger.warning("users/%s locked until %s after %d failed logins in a row", user_id,
                           until.isoformat(timespec="seconds"), failures)


async def logout(db, token: str) -> None:
    async with db.unit_of_work() as session:
        await session.execute(update(TokenRow).where(TokenRow.token_hash == token_hash(token)).values(revoked=True))


async def mint_token(db, clock, user_id: str, ttl: dt.timedelta) -> tuple[str, dt.datetime]:
    token = new_token()
    now = clock.now()
    async with db.unit_of_work() as session:
        session.add(TokenRow(token_hash=token_hash(token), user_id=user_id, expires_at=now + ttl, revoked=False,
                             created_at=now))
    return token, now + ttl


async def create_service_token(db, clock, user_id: str, ttl: dt.timedelta) -> tuple[str, dt.datetime]:
    async with db.sessions() as session:
        row = await session.get(PrincipalRow, user_id)
    if row is None or row.kind != policy.SERVICE_ACCOUNT:
        raise NotFound(f"service account users/{user_id} does not exist")
    return await mint_token(db, clock, user_id, ttl)


async def create_customer(db, clock, number: str, display_name: str) -> CustomerRow:
    v = Violations()
    v.required("customer.customer_number", number)
    v.pattern("customer.customer_number", number, r"[0-9]{1,10}", "must be 1 to 10 digits")
    v.required("customer.display_name", display_name)
    v.max_len("customer.display_name", display_name, 200)
    no_control(v, "customer.display_name", display_name)
    v.raise_if_any()
    row = CustomerRow(number=number, display_name=display_name, created_at=clock.now())
    try:
        async with db.unit_of_work() as session:
            session.add(row)
    except IntegrityError:
        raise AlreadyExists(f"customer customers/{number} exists already") from None
    return row


def validate_user_fields(v: Violations, *, user_id: str | None, kind: str | None, display_name: str,
                         email: str) -> None:
    if user_id is not None:
        if v.required("user.user_id", user_id):
            if kind == policy.CUSTOMER_USER and not S_USER.match(user_id):
                v.add("user.user_id", "customer users have S-user IDs: 'S' and 10 digits, e.g. S0001234567")
            elif kind != policy.CUSTOMER_USER and not LOGIN.match(user_id):
                v.add("user.user_id", "must be 2 to 63 lower-case letters, digits, '.', '_' or '-', "
                                      "starting with a letter")
    v.required("user.display_name", display_name)
    v.max_len("user.display_name", display_name, 200)
    no_control(v, "user.display_name", display_name)
    if email and (not EMAIL.match(email) or CONTROL.search(email)):
        v.add("user.email", "is not an email address")
    v.max_len("user.email", email, 254)


def no_control(v: Violations, field: str, value: str) -> None:
    if CONTROL.search(value):
        v.add(field, "must not contain control characters")


async def create_user(db, clock, *, user_id: str, kind: str, customer: str, display_name: str, email: str,
                      password: str, kdf_log2_n: int) -> PrincipalRow:
    v = Violations()
    if kind not in (policy.CUSTOMER_USER, policy.SUPPORT_ENGINEER):
        v.add("user.kind", "must be PRINCIPAL_KIND_CUSTOMER_USER or PRINCIPAL_KIND_SUPPORT_ENGINEER "
                           "(service accounts and the platform admin are created at first start)")
    validate_user_fields(v, user_id=user_id, kind=kind, display_name=display_name, email=email)
    if kind == policy.CUSTOMER_USER and not customer:
        v.add("user.customer", "is required for customer users")
    if kind == policy.SUPPORT_ENGINEER and customer:
        v.add("user.customer", "must be empty for support engineers (they belong to the vendor)")
    check_password_policy("initial_password", password, v)
    v.raise_if_any()
    hashed = await asyncio.to_thread(hash_password, password, kdf_log2_n)
    now = clock.now()
    row = PrincipalRow(user_id=user_id, kind=kind, customer=customer or None, display_name=display_name,
                       email=email, disabled=False, password_hash=hashed, created_at=now, updated_at=now)
    try:
        async with db.unit_of_work() as session:
            if customer and await session.get(CustomerRow, customer) is None:
                raise NotFound(f"customer customers/{customer} does not exist")
            session.add(row)
    except IntegrityError:
        raise AlreadyExists(f"user users/{user_id} exists already") from None
    return row


async def get_user(db, user_id: str) -> PrincipalRow:
    async with db.sessions() as session:
        row = await session.get(PrincipalRow, user_id)
    if row is None:
        raise NotFound(f"user users/{user_id} does not exist")
    return row


async def list_users(db, customer: str, offset_id: str, limit: int) -> list[PrincipalRow]:
    async with db.sessions() as session:
        query = select(PrincipalRow).where(PrincipalRow.user_id > offset_id).order_by(PrincipalRow.user_id)
        if customer:
            query = query.where(PrincipalRow.customer == customer)
        return list((await session.execute(query.limit(limit + 1))).scalars())


async def update_user(db, clock, user_id: str, paths: list[str], *, display_name: str, email: str,
                      disabled: bool, new_password: str, caller_is_self_only: bool,
                      kdf_log2_n: int) -> PrincipalRow:
    v = Violations()
    if "display_name" in paths:
        validate_user_fields(v, user_id=None, kind=None, display_name=display_name, email="")
    if "email" in paths and email:
        validate_user_fields(v, user_id=None, kind=None, display_name="x", email=email)
    if "password" in paths:
        check_password_policy("new_password", new_password, v)
    if caller_is_self_only and "disabled" in paths:
        v.add("update_mask", "you cannot change 'disabled' on your own user; ask your user administrator")
    v.raise_if_any()
    hashed = await asyncio.to_thread(hash_password, new_password, kdf_log2_n) if "password" in paths else None
    async with db.unit_of_work() as session:
        row = await session.get(PrincipalRow, user_id, with_for_update=True)
        if row is None:
            raise NotFound(f"user users/{user_id} does not exist")
        if row.kind in (policy.SERVICE_ACCOUNT,) and "password" in paths:
            raise FailedPrecondition("service accounts have no password; use CreateServiceToken")
        if "display_name" in paths:
            row.display_name = display_name
        if "email" in paths:
            row.email = email
        if "disabled" in paths:
            if row.kind == policy.PLATFORM_ADMIN and disabled:
                raise FailedPrecondition("the platform admin cannot be disabled")
            row.disabled = disabled
        if hashed is not None:
            row.password_hash = hashed
            row.failed_logins, row.locked_until = 0, None  # a new password ends a lock
            # a new password ends every session of the user
            await session.execute(update(TokenRow).where(TokenRow.user_id == user_id).values(revoked=True))
        row.updated_at = clock.now()
    return row


def validate_installations(installations: list[str]) -> list[str]:
    v = Violations()
    for i, value in enumerate(installations):
        if not INSTALLATION.match(value):
            v.add(f"installations[{i}]", "must be an installation number of 1 to 10 digits")
    if len(installations) > 100:
        v.add("installations", "may list at most 100 installation numbers")
    v.raise_if_any()
    return sorted(set(installations))


async def grant(db, clock, user_id: str, authorization: str, installations: list[str], granted_by: str) -> GrantRow:
    installations = validate_installations(installations)
    return await retry_on_conflict(lambda: _grant(db, clock, user_id, authorization, installations, granted_by))


async def retry_on_conflict(write):
    """Run an upsert; if a concurrent writer inserted the same row first, run it once more (now an update)."""
    try:
        return await write()
    except IntegrityError:
        return await write()


async def _grant(db, clock, user_id: str, authorization: str, installations: list[str], granted_by: str) -> GrantRow:
    async with db.unit_of_work() as session:
        user = await session.get(PrincipalRow, user_id)
        if user is None:
            raise NotFound(f"user users/{user_id} does not exist")
        if user.kind != policy.CUSTOMER_USER or not user.customer:
            raise FailedPrecondition("authorizations are granted to customer users only")
        row = await session.get(GrantRow, (user_id, authorization))
        if row is None:
            row = GrantRow(user_id=user_id, authorization=authorization, customer=user.customer,
                           installations="", granted_by=granted_by, granted_at=clock.now())
            session.add(row)
        row.installations = ",".join(installations)
        row.granted_by = granted_by
        row.granted_at = clock.now()
    return row


async def revoke(db, user_id: str, authorization: str) -> None:
    async with db.unit_of_work() as session:
        result = await session.execute(
            delete(GrantRow).where(GrantRow.user_id == user_id, GrantRow.authorization == authorization))
        if result.rowcount == 0:
            if await session.get(PrincipalRow, user_id) is None:
                raise NotFound(f"user users/{user_id} does not exist")
            raise NotFound(f"users/{user_id} does not hold {authorization}")


async def grants_of(db, user_id: str) -> list[GrantRow]:
    async with db.sessions() as session:
        if await session.get(PrincipalRow, user_id) is None:
            raise NotFound(f"user users/{user_id} does not exist")
        return list((await session.execute(
            select(GrantRow).where(GrantRow.user_id == user_id).order_by(GrantRow.authorization))).scalars())


async def set_assignment(db, clock, incident: str, engineer: str, system: str, customer: str) -> AssignmentRow:
    return await retry_on_conflict(lambda: _set_assignment(db, clock, incident, engineer, system, customer))


async def _set_assignment(db, clock, incident: str, engineer: str, system: str, customer: str) -> AssignmentRow:
    async with db.unit_of_work() as session:
        user = await session.get(PrincipalRow, engineer)
        if user is None or user.kind != policy.SUPPORT_ENGINEER:
            raise InvalidArgument("assignment.engineer", f"users/{engineer} is not a support engineer")
        if user.disabled:
            raise FailedPrecondition(f"support engineer users/{engineer} is disabled")
        row = await session.get(AssignmentRow, incident, with_for_update=True)
        if row is None:
            row = AssignmentRow(incident=incident, engineer=engineer, system=system, customer=customer,
                                created_at=clock.now())
            session.add(row)
        else:
            row.engineer, row.system, row.customer = engineer, system, customer
    return row


async def delete_assignment(db, incident: str) -> None:
    async with db.unit_of_work() as session:
        await session.execute(delete(AssignmentRow).where(AssignmentRow.incident == incident))
