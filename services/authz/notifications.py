"""Which event mails a user receives (every kind unless muted; its own business only), and, for the depot and the
connections service that send them, where each goes: the user's own address, or nowhere (muted, disabled, no
address, no such user). Addresses leave authz only this way, and only to those two services."""
from __future__ import annotations

import logging

from remotesupport.authz.v1 import authz_pb2
from services.authz import model
from services.authz.store import Store
from services.kit.clock import Clock
from services.kit.errors import InvalidArgument
from services.kit.logs import log
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER
from services.kit.validate import Violations

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 500
KINDS = tuple(n.removeprefix("NOTIFICATION_KIND_") for n in authz_pb2.NotificationKind.keys()
              if n != "NOTIFICATION_KIND_UNSPECIFIED")
_MAILED = frozenset({CUSTOMER_USER, SUPPORT_ENGINEER})  # the principals with an address of their own
# a mail is a read of its event: the kinds of the depot's log go only to whom may still read the log (as its feed),
# a failing webhook's only to the customer's user administrators (as the webhook); the rest to members
_NEEDS = {"LOGON_DATA_REVEALED": {"EDIT_MY_LOGIN_DATA", "EDIT_ALL_LOGIN_DATA"},
          "LOGON_DATA_EXPIRING": {"EDIT_MY_LOGIN_DATA", "EDIT_ALL_LOGIN_DATA"}, "WEBHOOK_FAILING": {"USER_ADMIN"}}


def muted_of(stored: str) -> list[str]:
    return [k for k in stored.split(",") if k]


def parse_muted(values, field: str) -> list[str]:
    """The muted kinds of a request (enum numbers), in the enum's order; INVALID_ARGUMENT naming the field for an
    unknown, unspecified or repeated kind."""
    v = Violations()
    seen = set(v.enum_names(field, values, authz_pb2.NotificationKind))
    v.raise_if_any()
    return [k for k in KINDS if k in seen]


async def get_muted(store: Store, user_id: str) -> list[str]:
    async with store.read() as queries:
        row = await queries.principal(user_id)
    if row is None:
        raise model.NoSuchUser(user_id)
    return muted_of(row.muted_notifications)


async def set_muted(store: Store, clock: Clock, user_id: str, muted: list[str]) -> list[str]:
    async with store.write() as queries:
        row = await queries.principal(user_id, for_update=True)
        if row is None:
            raise model.NoSuchUser(user_id)
        row.muted_notifications = ",".join(muted)
        row.updated_at = clock.now()
    log(logger, logging.INFO, "notification settings changed", user=f"users/{user_id}", muted=",".join(muted) or "-")
    return muted


async def resolve(store: Store, recipients) -> list[authz_pb2.ResolvedRecipient]:
    """Each NotificationRecipient's address, or "" for no mail; in the request's order."""
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidArgument("recipients", f"holds {len(recipients)}; at most {MAX_RECIPIENTS} at a time")
    v = Violations()
    wanted: list[tuple[str, str, int]] = []
    for i, r in enumerate(recipients):
        v.enum(f"recipients[{i}].kind", r.kind, authz_pb2.NotificationKind)
        user = r.user.removeprefix("users/")
        if not r.user.startswith("users/") or not user:
            v.add(f"recipients[{i}].user", "must be users/{user_id}")
        wanted.append((user, authz_pb2.NotificationKind.Name(r.kind).removeprefix("NOTIFICATION_KIND_")
                       if r.kind in authz_pb2.NotificationKind.values() else "", r.kind))
    v.raise_if_any()
    users = list(dict.fromkeys(u for u, _, _ in wanted))
    async with store.read() as queries:
        rows = {u: await queries.principal(u) for u in users}
        held = await queries.authorizations_of(users)
    out = []
    for user, kind, number in wanted:
        row = rows[user]
        mailed = (row is not None and row.kind in _MAILED and not row.disabled and row.email
                  and kind not in muted_of(row.muted_notifications)
                  and (kind not in _NEEDS or bool(_NEEDS[kind] & held.get(user, set()))))
        out.append(authz_pb2.ResolvedRecipient(user=f"users/{user}", kind=number, email=row.email if mailed else ""))
    return out
