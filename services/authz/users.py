"""Customers and their users: create, read, list (a page at a time), change them and reset their passwords.
Every change is an event of the identity log, in the change's unit of work; a user's password is only ever set
by the user, with a one-time code mailed to its own address (services.authz.codes)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.authz import codes, identity_log, mails, model
from services.authz.store import DuplicateKey, Store
from services.authz.tables import CustomerRow, IdentityHeadRow, PrincipalRow
from services.kit import auth
from services.kit import permissions as P
from services.kit.clock import Clock
from services.kit.errors import AlreadyExists, DependencyUnavailable
from services.kit.mail import Mailer
from services.kit.paging import STR, PageTokens
from services.kit.principals import CUSTOMER_USER, PLATFORM_ADMIN

USER_PAGES = PageTokens(STR)  # ListUsers is ordered by user ID


@dataclass(frozen=True)
class Actor:
    """Who makes an identity change: its user ID and kind."""

    user_id: str
    kind: str

    @property
    def name(self) -> str:
        return f"users/{self.user_id}"

    @classmethod
    def current(cls) -> "Actor":
        subject = auth.current().subject
        return cls(subject.user.removeprefix("users/"), subject.kind)


async def create_customer(store: Store, clock: Clock, actor: Actor, number: str, display_name: str) -> CustomerRow:
    model.check_customer(number, display_name)
    now = clock.now()
    row = CustomerRow(number=number, display_name=display_name, created_at=now)
    try:
        async with store.write() as queries:
            queries.add(row)
            queries.add(IdentityHeadRow(customer=number, sequence=0, hash=identity_log.GENESIS))
            await queries.flush()
            await identity_log.append(queries, identity_log.VENDOR, now, actor.name, identity_log.CUSTOMER_CREATED,
                                      f"customers/{number}")
    except DuplicateKey:
        raise AlreadyExists(f"customer customers/{number} exists already") from None
    return row


async def create_user(store: Store, clock: Clock, mailer: Mailer, code_ttl: dt.timedelta, actor: Actor, *,
                      user_id: str, kind: str, customer: str, display_name: str, email: str,
                      initial_password: str) -> PrincipalRow:
    """A new user without a password, and its enrollment code mailed to its own address. The platform admin
    creates only a customer's first user administrator (no enabled one yet). If the mail server does not take
    the code, the user is removed again and the call fails (UNAVAILABLE)."""
    model.check_new_user(user_id=user_id, kind=kind, customer=customer, display_name=display_name, email=email,
                         initial_password=initial_password)
    now = clock.now()
    row = PrincipalRow(user_id=user_id, kind=kind, customer=customer or None, display_name=display_name,
                       email=email, email_key=model.email_key(email), disabled=False, password_hash=None,
                       created_at=now, updated_at=now)
    try:
        async with store.write() as queries:
            if customer:
                if await queries.customer(customer) is None:
                    raise model.NoSuchCustomer(customer)
                if actor.kind == PLATFORM_ADMIN and await queries.locked_user_admins(customer):
                    raise model.AdminCreatesOnlyFirstUserAdmin(customer)
            if await queries.principal(user_id) is not None:
                raise DuplicateKey()
            if await queries.email_taken(row.email_key):
                raise model.EmailTaken()
            queries.add(row)
            await queries.flush()
            code = await codes.issue(queries, user_id, model.ENROLL, now, code_ttl)
            await identity_log.append(queries, customer, now, actor.name, identity_log.USER_CREATED,
                                      f"users/{user_id}", f"{kind} with address {email}; enrollment code mailed")
    except DuplicateKey:
        raise AlreadyExists(f"user users/{user_id} exists already") from None
    try:
        await mailer.send(mails.code_mail(email, user_id, code, model.ENROLL, now + code_ttl))
    except DependencyUnavailable as err:
        async with store.write() as queries:
            await queries.delete_principal(user_id)
            await identity_log.append(queries, customer, clock.now(), actor.name, identity_log.USER_REMOVED,
                                      f"users/{user_id}", "the enrollment code could not be mailed")
        raise DependencyUnavailable(f"{err.message}; users/{user_id} was not created") from None
    return row


async def get_user(store: Store, user_id: str) -> PrincipalRow:
    async with store.read() as queries:
        row = await queries.principal(user_id)
    if row is None:
        raise model.NoSuchUser(user_id)
    return row


async def list_users(store: Store, customer: str, page_size: int, page_token: str) -> tuple[list[PrincipalRow], str]:
    """One page of the customer's users (all users with `customer` empty) and the next page's token ("" on the
    last page); a token is valid only with the customer it was issued for."""
    scope = {"customer": customer, "order_by": "user_id"}
    after = USER_PAGES.read(page_token, scope)
    async with store.read() as queries:
        rows = await queries.principals(customer, after[0] if after else None, page_size + 1)
    if len(rows) <= page_size:
        return rows, ""
    return rows[:page_size], USER_PAGES.issue([rows[page_size - 1].user_id], scope)


async def acting_on_self_only(caller: auth.AuthContext, target: str) -> bool:
    """True when the caller changes its own user (`target`) without being a user administrator of it."""
    if caller.subject.user != target or caller.subject.kind == PLATFORM_ADMIN:
        return False
    if caller.subject.kind != CUSTOMER_USER:
        return True
    return not (await caller.check(P.USERS_LIST, auth.Resource(customer=caller.subject.customer))).allowed


async def update_user(store: Store, clock: Clock, actor: Actor, user_id: str, paths: list[str], *,
                      display_name: str, email: str, disabled: bool, new_password: str, caller_is_self_only: bool,
                      kdf) -> PrincipalRow:
    """Change the fields `paths` names; the password and the address only of the caller's own user. A new
    password ends a lock and every session of the user. Disabling the last enabled user administrator of a
    customer is refused (model.check_keeps_a_user_admin)."""
    model.check_user_update(paths, display_name=display_name, email=email, new_password=new_password,
                            caller_is_self_only=caller_is_self_only)
    model.check_own_fields(paths, actor.user_id, user_id)
    hashed = await kdf.hash(new_password) if "password" in paths else None
    now = clock.now()
    async with store.write() as queries:
        row = await queries.principal(user_id, for_update=True)
        if row is None:
            raise model.NoSuchUser(user_id)
        model.check_change_allowed(row.kind, paths, disabled)
        if "disabled" in paths and disabled and not row.disabled and row.customer:
            model.check_keeps_a_user_admin(user_id, row.customer, await queries.locked_user_admins(row.customer),
                                           "disabling it")
        changed = []
        if "display_name" in paths and row.display_name != display_name:
            row.display_name = display_name
            changed.append("display name")
        if "email" in paths and row.email != email:
            key = model.email_key(email)
            if await queries.email_taken(key, other_than=user_id):
                raise model.EmailTaken()
            row.email, row.email_key = email, key
            changed.append(f"address to {email}")
        if hashed is not None:
            row.password_hash = hashed
            row.failed_logins, row.locked_until = 0, None  # a new password ends a lock
            await queries.revoke_tokens_of(user_id)  # ... and every session of the user
            await identity_log.append(queries, row.customer, now, actor.name, identity_log.PASSWORD_CHANGED,
                                      f"users/{user_id}", "by the user")
        if changed:
            await identity_log.append(queries, row.customer, now, actor.name, identity_log.USER_UPDATED,
                                      f"users/{user_id}", ", ".join(changed))
        if "disabled" in paths and row.disabled != disabled:
            row.disabled = disabled
            await identity_log.append(queries, row.customer, now, actor.name,
                                      identity_log.USER_DISABLED if disabled else identity_log.USER_ENABLED,
                                      f"users/{user_id}")
        row.updated_at = now
    return row


async def reset_password(store: Store, clock: Clock, mailer: Mailer, code_ttl: dt.timedelta, actor: Actor,
                         user_id: str) -> tuple[PrincipalRow, dt.datetime]:
    """End the user's password and sessions and mail a one-time code to its own address; the caller learns no
    credential. If the mail server does not take the code, the reset stands and the call fails, saying so."""
    now = clock.now()
    async with store.write() as queries:
        row = await queries.principal(user_id, for_update=True)
        if row is None:
            raise model.NoSuchUser(user_id)
        model.check_resettable(row.kind, row.email)
        row.password_hash = None
        row.failed_logins, row.locked_until = 0, None
        row.updated_at = now
        await queries.revoke_tokens_of(user_id)
        code = await codes.issue(queries, user_id, model.RESET, now, code_ttl)
        await identity_log.append(queries, row.customer, now, actor.name, identity_log.PASSWORD_RESET,
                                  f"users/{user_id}", f"sessions ended; one-time code mailed to {row.email}")
    try:
        await mailer.send(mails.code_mail(row.email, user_id, code, model.RESET, now + code_ttl))
    except DependencyUnavailable as err:
        raise DependencyUnavailable(f"{err.message}: the password of users/{user_id} was reset but its code was "
                                    "not mailed; call ResetPassword again") from None
    return row, now + code_ttl
