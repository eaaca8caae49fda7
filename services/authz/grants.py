"""Grants: the authorizations of DESIGN §5 held by customer users; grant (or request, under four eyes), approve,
revoke, list (a page at a time). Nobody grants to itself; the platform admin grants only a customer's first
USER_ADMIN; EDIT_ALL_LOGIN_DATA and USER_ADMIN wait for a second user administrator where the customer has one
(model.needs_approval), and otherwise take effect with a notice to the customer's user administrators. Every
change is an event of the customer's identity log, in its unit of work."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from services.authz import identity_log, mails, model
from services.authz.policy import USER_ADMIN
from services.authz.store import Queries, Store
from services.authz.tables import GrantRequestRow, GrantRow
from services.authz.users import Actor
from services.kit.clock import Clock
from services.kit.errors import DependencyUnavailable, NotFound
from services.kit.mail import Mail, Mailer
from services.kit.paging import STR, PageTokens
from services.kit.principals import PLATFORM_ADMIN

logger = logging.getLogger(__name__)
GRANT_PAGES = PageTokens(STR, STR)  # ListAuthorizations is ordered by authorization name, then state
ACTIVE, PENDING = "ACTIVE", "PENDING_APPROVAL"


@dataclass(frozen=True)
class GrantView:
    """A grant as ListAuthorizations shows it: in effect (ACTIVE) or waiting for approval (PENDING_APPROVAL)."""

    user_id: str
    authorization: str
    customer: str
    installations: str
    granted_by: str
    granted_at: dt.datetime
    state: str = ACTIVE
    approved_by: str = ""

    @classmethod
    def of(cls, row: GrantRow | GrantRequestRow) -> "GrantView":
        if isinstance(row, GrantRequestRow):
            return cls(row.user_id, row.authorization, row.customer, row.installations, row.requested_by,
                       row.requested_at, PENDING)
        return cls(row.user_id, row.authorization, row.customer, row.installations, row.granted_by, row.granted_at,
                   ACTIVE, row.approved_by or "")


async def _notify(mailer: Mailer, messages: list[Mail]) -> None:
    """Notices after the change committed: a mail server that does not take one is logged, the change stands."""
    for message in messages:
        try:
            await mailer.send(message)
        except DependencyUnavailable as err:
            logger.warning("an identity notice was not mailed: %s", err.message)


async def _admins_to_notify(queries: Queries, customer: str, but: set[str]) -> list[str]:
    return [r.email for r in await queries.user_admin_rows(customer) if r.email and r.user_id not in but]


async def _grant_notice_recipients(queries: Queries, customer: str, grantee) -> list[str]:
    """A grant that took effect without four eyes: every enabled user administrator of the customer (the actor
    too: a receipt in its own mailbox shows a grant made with its stolen session) and the grantee."""
    to = await _admins_to_notify(queries, customer, set())
    return to + ([grantee.email] if grantee.email and grantee.email not in to else [])


def _scope(installations: list[str]) -> str:
    return f" for installations {', '.join(installations)}" if installations else ""


async def grant(store: Store, clock: Clock, mailer: Mailer, actor: Actor, user_id: str, authorization: str,
                installations: list[str]) -> GrantView:
    """Grant `authorization` to a customer user (granting again replaces its installations), or request it when
    it needs a second user administrator's approval. USER_ADMIN of the customer's last enabled user
    administrator is not narrowed to installations (it would end its administration of the customer's users)."""
    installations = model.check_installations(installations)
    now = clock.now()
    async with store.write() as queries:
        user = await queries.principal(user_id)
        if user is None:
            raise model.NoSuchUser(user_id)
        model.check_grantee(user.kind, user.customer)
        admins = await queries.locked_user_admins(user.customer)
        model.check_grant_request(caller=actor.user_id, caller_kind=actor.kind, grantee=user_id,
                                  authorization=authorization, customer=user.customer, user_admins=admins)
        if authorization == USER_ADMIN and installations:
            model.check_keeps_a_user_admin(user_id, user.customer, admins, "narrowing its USER_ADMIN to installations")
        what = f"{authorization}{_scope(installations)} for users/{user_id}"
        if model.needs_approval(authorization, actor.user_id, user_id, admins):
            request = await queries.grant_request(user_id, authorization)
            if request is None:
                request = GrantRequestRow(user_id=user_id, authorization=authorization, customer=user.customer)
                queries.add(request)
            request.installations = ",".join(installations)
            request.requested_by, request.requested_at = actor.name, now
            await identity_log.append(queries, user.customer, now, actor.name, identity_log.GRANT_REQUESTED,
                                      f"users/{user_id}", f"{authorization}{_scope(installations)}; waits for "
                                      "another user administrator's approval")
            notify = [mails.notice(to, f"approve {what}?", (
                f"{actor.name} asks to grant {what}. It takes effect only when another user administrator "
                f"approves it:\n    rsctl users approve {user_id} {authorization}\nor withdraw it:\n"
                f"    rsctl users revoke {user_id} {authorization}\n"))
                for to in await _admins_to_notify(queries, user.customer, {actor.user_id, user_id})]
            view = GrantView.of(request)
        else:
            row = await queries.grant(user_id, authorization)
            if row is None:
                row = GrantRow(user_id=user_id, authorization=authorization, customer=user.customer, installations="")
                queries.add(row)
            row.installations = ",".join(installations)
            row.granted_by, row.granted_at, row.approved_by = actor.name, now, None
            await queries.delete_grant_request(user_id, authorization)
            alone = authorization in model.FOUR_EYES
            await identity_log.append(queries, user.customer, now, actor.name, identity_log.GRANTED,
                                      f"users/{user_id}", f"{authorization}{_scope(installations)}" + (
                                          "; no second user administrator to approve it" if alone else ""))
            notify = [mails.notice(to, f"{what} was granted", (
                f"{actor.name} granted {what} without a second user administrator's approval: the customer has "
                "none besides the two users concerned."))
                for to in await _grant_notice_recipients(queries, user.customer, user)] if alone else []
            view = GrantView.of(row)
    await _notify(mailer, notify)
    return view


async def approve(store: Store, clock: Clock, mailer: Mailer, actor: Actor, user_id: str,
                  authorization: str) -> GrantView:
    """Put a pending grant into effect: by an enabled user administrator of the customer who is neither its
    requester nor its grantee."""
    now = clock.now()
    async with store.write() as queries:
        user = await queries.principal(user_id)
        if user is None:
            raise model.NoSuchUser(user_id)
        request = await queries.grant_request(user_id, authorization)
        if request is None:
            raise model.NoPendingGrant(user_id, authorization)
        model.check_approver(actor.name, request.requested_by, f"users/{user_id}")
        if actor.kind == PLATFORM_ADMIN or actor.user_id not in await queries.locked_user_admins(user.customer):
            raise model.NotTheCustomersUserAdmin("the platform admin" if actor.kind == PLATFORM_ADMIN else
                                                 actor.name)
        row = await queries.grant(user_id, authorization)
        if row is None:
            row = GrantRow(user_id=user_id, authorization=authorization, customer=user.customer, installations="")
            queries.add(row)
        row.installations, row.granted_by, row.granted_at = request.installations, request.requested_by, now
        row.approved_by = actor.name
        await queries.delete_grant_request(user_id, authorization)
        await identity_log.append(queries, user.customer, now, actor.name, identity_log.GRANT_APPROVED,
                                  f"users/{user_id}", f"{authorization} requested by {request.requested_by}")
        notify = [mails.notice(to, f"{authorization} for users/{user_id} was approved",
                               f"{actor.name} approved {authorization} for users/{user_id}, requested by "
                               f"{request.requested_by}.")
                  for to in await _admins_to_notify(queries, user.customer, {actor.user_id})]
        view = GrantView.of(row)
    await _notify(mailer, notify)
    return view


async def revoke(store: Store, clock: Clock, actor: Actor, user_id: str, authorization: str) -> None:
    """Revoke a grant and withdraw a pending request of it; USER_ADMIN of the customer's last enabled user
    administrator is refused (model.check_keeps_a_user_admin)."""
    now = clock.now()
    async with store.write() as queries:
        user = await queries.principal(user_id)
        if authorization == USER_ADMIN and user is not None and user.customer:
            admins = await queries.locked_user_admins(user.customer)
            model.check_keeps_a_user_admin(user_id, user.customer, admins, "revoking its USER_ADMIN")
        withdrawn = await queries.delete_grant_request(user_id, authorization)
        revoked = await queries.delete_grant(user_id, authorization)
        if not (revoked or withdrawn):
            if user is None:
                raise model.NoSuchUser(user_id)
            raise NotFound(f"users/{user_id} does not hold {authorization}")
        if revoked:
            await identity_log.append(queries, user.customer, now, actor.name, identity_log.REVOKED,
                                      f"users/{user_id}", authorization)
        if withdrawn:
            await identity_log.append(queries, user.customer, now, actor.name, identity_log.GRANT_WITHDRAWN,
                                      f"users/{user_id}", f"the pending request of {authorization}")


async def list_grants(store: Store, user_id: str, page_size: int, page_token: str) -> tuple[list[GrantView], str]:
    """One page of the user's grants, pending requests beside them, and the next page's token ("" on the last
    page); a token is valid only with the user it was issued for."""
    scope = {"user": user_id, "order_by": "authorization,state"}
    after = GRANT_PAGES.read(page_token, scope)
    async with store.read() as queries:
        if await queries.principal(user_id) is None:
            raise model.NoSuchUser(user_id)
        views = [GrantView.of(r) for r in await queries.grants(user_id, None, 1000)]
        views += [GrantView.of(r) for r in await queries.grant_requests(user_id)]
    views.sort(key=lambda v: (v.authorization, v.state))
    if after:
        views = [v for v in views if (v.authorization, v.state) > (after[0], after[1])]
    if len(views) <= page_size:
        return views, ""
    last = views[page_size - 1]
    return views[:page_size], GRANT_PAGES.issue([last.authorization, last.state], scope)
