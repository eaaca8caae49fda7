"""Customers and their users: create, read, list (a page at a time) and change them."""
from __future__ import annotations

from services.authz import model
from services.authz.kdf import KdfPool
from services.authz.store import DuplicateKey, Store
from services.authz.tables import CustomerRow, PrincipalRow
from services.kit import auth
from services.kit import permissions as P
from services.kit.clock import Clock
from services.kit.errors import AlreadyExists
from services.kit.paging import STR, PageTokens
from services.kit.principals import CUSTOMER_USER, PLATFORM_ADMIN

USER_PAGES = PageTokens(STR)  # ListUsers is ordered by user ID


async def create_customer(store: Store, clock: Clock, number: str, display_name: str) -> CustomerRow:
    model.check_customer(number, display_name)
    row = CustomerRow(number=number, display_name=display_name, created_at=clock.now())
    try:
        async with store.write() as queries:
            queries.add(row)
    except DuplicateKey:
        raise AlreadyExists(f"customer customers/{number} exists already") from None
    return row


async def create_user(store: Store, clock: Clock, *, user_id: str, kind: str, customer: str, display_name: str,
                      email: str, password: str, kdf: KdfPool) -> PrincipalRow:
    model.check_new_user(user_id=user_id, kind=kind, customer=customer, display_name=display_name, email=email,
                         password=password)
    hashed = await kdf.hash(password)
    now = clock.now()
    row = PrincipalRow(user_id=user_id, kind=kind, customer=customer or None, display_name=display_name,
                       email=email, disabled=False, password_hash=hashed, created_at=now, updated_at=now)
    try:
        async with store.write() as queries:
            if customer and await queries.customer(customer) is None:
                raise model.NoSuchCustomer(customer)
            queries.add(row)
    except DuplicateKey:
        raise AlreadyExists(f"user users/{user_id} exists already") from None
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


async def update_user(store: Store, clock: Clock, user_id: str, paths: list[str], *, display_name: str, email: str,
                      disabled: bool, new_password: str, caller_is_self_only: bool,
                      kdf: KdfPool) -> PrincipalRow:
    """Change the fields `paths` names; a new password ends a lock and every session of the user. Disabling
    the last enabled user administrator of a customer is refused (model.check_keeps_a_user_admin)."""
    model.check_user_update(paths, display_name=display_name, email=email, new_password=new_password,
                            caller_is_self_only=caller_is_self_only)
    hashed = await kdf.hash(new_password) if "password" in paths else None
    async with store.write() as queries:
        row = await queries.principal(user_id, for_update=True)
        if row is None:
            raise model.NoSuchUser(user_id)
        model.check_change_allowed(row.kind, paths, disabled)
        if "disabled" in paths and disabled and not row.disabled and row.customer:
            model.check_keeps_a_user_admin(user_id, row.customer, await queries.locked_user_admins(row.customer),
                                           "disabling it")
        if "display_name" in paths:
            row.display_name = display_name
        if "email" in paths:
            row.email = email
        if "disabled" in paths:
            row.disabled = disabled
        if hashed is not None:
            row.password_hash = hashed
            row.failed_logins, row.locked_until = 0, None  # a new password ends a lock
            await queries.revoke_tokens_of(user_id)  # ... and every session of the user
        row.updated_at = clock.now()
    return row
