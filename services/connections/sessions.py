"""Relay sessions as the customer and the engineers read them: a system's sessions, one session, and asking for
a live one to be terminated. The relay (services/connections/relay) writes the rows; nothing here creates one.

Authz has allowed `connections.sessions.read` (any customer user of the customer, any support engineer) or
`connections.sessions.terminate` (OPEN_REMOTE_CONNECTIONS) before any of this runs. Then:

- a customer user sees every session of its customer's systems; a system or a session that does not exist is
  NOT_FOUND;
- any other principal (a support engineer) sees only the sessions it opened itself (principal = the caller),
  filtered in the query, and never learns whether anything else exists: GetSession of another principal's
  session and of a session that does not exist are the same PERMISSION_DENIED, and ListSessions gives it the
  page of its own sessions of the system - empty where it has none, whether the system exists or not.
"""
from __future__ import annotations

import enum
import logging

from services.connections.model import Actor
from services.connections.store import Store
from services.connections.systems import find_system
from services.connections.tables import SessionRow
from services.kit import names
from services.kit.errors import FailedPrecondition, NotFound, PermissionDenied
from services.kit.logs import log
from services.kit.paging import STR, TIME, PageTokens
from services.kit.principals import CUSTOMER_USER

logger = logging.getLogger(__name__)
_PAGE_TOKENS = PageTokens(TIME, STR)  # ListSessions pages by (start_time, id), newest first


class SessionState(str, enum.Enum):
    """relay_sessions.state, as the relay writes it."""

    ACTIVE = "ACTIVE"
    ENDED = "ENDED"
    REFUSED = "REFUSED"


def session_name(row: SessionRow) -> str:
    return f"{names.system(row.customer, row.system_number)}/sessions/{row.id}"


def _own_only(actor: Actor) -> str | None:
    """The principal whose sessions alone `actor` may see, or None when it sees all of the system's."""
    return None if actor.kind == CUSTOMER_USER else actor.user


def not_yours(name: str) -> PermissionDenied:
    """The one answer to an engineer asking for a session that is not its own (or does not exist)."""
    return PermissionDenied(f"a support engineer reads only the sessions it opened itself; {name} is not one of "
                            "them")


def check_terminable(row: SessionRow) -> None:
    """Raise unless the session is ACTIVE and nobody has asked for its termination yet."""
    name = session_name(row)
    if row.state != SessionState.ACTIVE.value:
        why = row.end_reason or row.refusal_reason
        raise FailedPrecondition(f"session {name} is {row.state}{f' ({why})' if why else ''}; only an ACTIVE "
                                 "session can be terminated", metadata={"state": row.state})
    if row.terminated_by:
        raise FailedPrecondition(f"termination of session {name} already requested by {row.terminated_by}; the "
                                 "relay carrying it cuts it within 2 s", metadata={"terminated_by": row.terminated_by})


async def list_sessions(store: Store, actor: Actor, customer: str, number: str, state: SessionState | None,
                        window_id: str | None, size: int, token: str) -> tuple[list[SessionRow], str]:
    """One page of the system's sessions the actor may see, newest start first, optionally only those in
    `state` and through window `window_id`."""
    principal = _own_only(actor)
    scope = {"parent": names.system(customer, number), "state": state.value if state else "",
             "connection": window_id or "", "principal": principal or "", "order": "start_time desc, id desc"}
    after = _PAGE_TOKENS.read(token, scope)
    async with store.read() as uow:
        if principal is None:
            await find_system(uow, customer, number)
        rows, more = await uow.sessions_page(customer, number, state.value if state else None, window_id, principal,
                                             tuple(after) if after else None, size)
    return rows, _PAGE_TOKENS.issue([rows[-1].start_time, rows[-1].id], scope) if more else ""


async def get_session(store: Store, actor: Actor, customer: str, number: str, session_id: str) -> SessionRow:
    """The session, if the actor may see it (see the module docstring for who learns what)."""
    principal = _own_only(actor)
    name = f"{names.system(customer, number)}/sessions/{session_id}"
    async with store.read() as uow:
        if principal is None:
            await find_system(uow, customer, number)
        row = await uow.session(customer, number, session_id)
    if principal is not None and (row is None or row.principal != principal):
        raise not_yours(name)
    if row is None:
        raise NotFound(f"session {name} does not exist")
    return row


async def terminate_session(store: Store, actor: Actor, customer: str, number: str, session_id: str) -> SessionRow:
    """Ask for a live session to be cut: record the actor in `terminated_by`, checked and written in one unit of
    work with the session's row locked; the relay carrying it cuts it within 2 s and records the end."""
    async with store.write() as uow:
        await find_system(uow, customer, number)
        row = await uow.session(customer, number, session_id, lock=True)
        if row is None:
            raise NotFound(f"session {names.system(customer, number)}/sessions/{session_id} does not exist")
        check_terminable(row)
        if not await uow.request_termination(row, actor.user, SessionState.ACTIVE.value):
            raise FailedPrecondition(f"session {session_name(row)} changed while it was being terminated; read it "
                                     "again")
    log(logger, logging.INFO, "session termination requested", session=session_name(row), by=actor.user)
    return row
