"""Grants: the authorizations of DESIGN §5 held by customer users; grant, revoke, list (a page at a time)."""
from __future__ import annotations

from services.authz import model
from services.authz.policy import USER_ADMIN
from services.authz.store import Queries, Store
from services.authz.tables import GrantRow
from services.kit.clock import Clock
from services.kit.errors import NotFound
from services.kit.paging import STR, PageTokens

GRANT_PAGES = PageTokens(STR)  # ListAuthorizations is ordered by authorization name


async def grant(store: Store, clock: Clock, user_id: str, authorization: str, installations: list[str],
                granted_by: str) -> GrantRow:
    """Grant `authorization` to a customer user; granting it again replaces its installations (but USER_ADMIN
    of the customer's last enabled user administrator is not narrowed to installations: it would end its
    administration of the customer's users)."""
    installations = model.check_installations(installations)

    async def write(queries: Queries) -> GrantRow:
        user = await queries.principal(user_id)
        if user is None:
            raise model.NoSuchUser(user_id)
        model.check_grantee(user.kind, user.customer)
        if authorization == USER_ADMIN and installations:
            model.check_keeps_a_user_admin(user_id, user.customer, await queries.locked_user_admins(user.customer),
                                           "narrowing its USER_ADMIN to installations")
        row = await queries.grant(user_id, authorization)
        if row is None:
            row = GrantRow(user_id=user_id, authorization=authorization, customer=user.customer,
                           installations="", granted_by=granted_by, granted_at=clock.now())
            queries.add(row)
        row.installations = ",".join(installations)
        row.granted_by = granted_by
        row.granted_at = clock.now()
        return row

    return await store.upsert(write)


async def revoke(store: Store, user_id: str, authorization: str) -> None:
    """Revoke a grant; USER_ADMIN of the customer's last enabled user administrator is refused
    (model.check_keeps_a_user_admin)."""
    async with store.write() as queries:
        if authorization == USER_ADMIN:
            user = await queries.principal(user_id)
            if user is not None and user.customer:
                admins = await queries.locked_user_admins(user.customer)
                model.check_keeps_a_user_admin(user_id, user.customer, admins, "revoking its USER_ADMIN")
        if not await queries.delete_grant(user_id, authorization):
            if await queries.principal(user_id) is None:
                raise model.NoSuchUser(user_id)
            raise NotFound(f"users/{user_id} does not hold {authorization}")


async def list_grants(store: Store, user_id: str, page_size: int, page_token: str) -> tuple[list[GrantRow], str]:
    """One page of the user's grants and the next page's token ("" on the last page); a token is valid only
    with the user it was issued for."""
    scope = {"user": user_id, "order_by": "authorization"}
    after = GRANT_PAGES.read(page_token, scope)
    async with store.read() as queries:
        if await queries.principal(user_id) is None:
            raise model.NoSuchUser(user_id)
        rows = await queries.grants(user_id, after[0] if after else None, page_size + 1)
    if len(rows) <= page_size:
        return rows, ""
    return rows[:page_size], GRANT_PAGES.issue([rows[page_size - 1].authorization], scope)
