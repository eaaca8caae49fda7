"""RevealLogonData: the one way a secret leaves the depot. Logged before it leaves; every refusal logged too.

The method's policy only authenticates the caller; this module makes both decisions itself (may the caller
see this system's logon data, may it reveal this entry) so that a refused reveal of an existing entry is in
the customer's log whoever asked - a colleague, an engineer outside the restricted view, another customer's
user, the platform admin. Those outside the customer are logged one by one up to a bound per hour, then counted
(denials.py); a caller outside the customer gets the same refusal whether or not the entry exists."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Callable

from services.depot import access, audit, denials, model
from services.depot.deps import Depot
from services.depot.keyring import SecretUnreadable
from services.depot.store import DatabaseRefused, Entry, Tx
from services.kit import auth
from services.kit import permissions as P
from services.kit.clock import as_utc
from services.kit.errors import AuditUnavailable, DataLoss, InvalidArgument, NotFound

UNLOGGED = "the reveal could not be logged, so nothing was revealed"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revealed:
    row: Entry
    secret: str
    log_event: str  # "customers/{c}/logEvents/{sequence}"


async def reveal(depot: Depot, parts: dict[str, str], reason: str) -> Revealed:
    """The entry's secret, for its creator (EDIT_MY), EDIT_ALL and engineers assigned to the system within the
    restricted view. Permission is decided before existence, both permissions in the call's one round trip to
    authz (the method's policy is `handler_decides`). The REVEAL event is written in the transaction that
    decrypts: if it cannot be committed, nothing is returned. A refusal is logged (REVEAL_DENIED) before it is
    sent (one to a caller outside the customer: logged, or past the hourly bound counted, denials.py); a
    ciphertext that fails authentication is logged (DECRYPT_FAILED) and is DATA_LOSS. Any database error while
    logging or decrypting is AUDIT_UNAVAILABLE: nothing was revealed (but see denials.py for outsiders)."""
    ctx = auth.current()
    found = await access.find(depot, parts)
    target = access.resource(found) if found else await access.system_resource(depot, parts)
    may_read, may_reveal = await ctx.decide_bulk([(P.LOGON_READ, target), (P.LOGON_REVEAL, target)])
    if problem := model.reason_problem(reason):  # after authentication, before anything is logged
        raise InvalidArgument("reason", problem)
    who = access.Caller(ctx.subject.user, ctx.subject.kind, may_read.incidents)
    if not may_read.allowed and found is not None:
        if denials.is_member(ctx.subject, found.customer):
            await _log(depot, found, who, "", audit.REVEAL_DENIED, audit.DENIED, may_read.reason)
        else:  # outside the customer: bounded per hour, and the same refusal as for a missing entry
            await denials.refused(depot, found.customer,
                                  _event(found, who, "", audit.REVEAL_DENIED, audit.DENIED, may_read.reason))
    may_read.raise_unless_allowed()
    row = await access.readable(depot, parts, found)
    incident = ""
    if who.is_engineer:
        incident = await access.engineer_incident(depot, who, row)
        if incident is None:
            error = access.hidden(row)
            await _log(depot, row, who, "", audit.REVEAL_DENIED, audit.DENIED, error.message)
            raise error
    if not may_reveal.allowed:
        await _log(depot, row, who, incident, audit.REVEAL_DENIED, audit.DENIED, may_reveal.reason)
    may_reveal.raise_unless_allowed()
    now = depot.clock.now()

    def event(current: Entry) -> audit.Event:
        return _event(current, who, incident, audit.REVEAL, audit.SUCCESS, _reason(reason))

    try:
        return await depot.store.write(
            lambda tx: logged_secret(tx, depot, row.pk, now, event, lambda: access.not_found(parts)), local=True)
    except SecretUnreadable:
        await _log(depot, row, who, incident, audit.DECRYPT_FAILED, audit.FAILED,
                   "the stored secret failed authentication (altered or moved ciphertext); nothing was revealed")
        raise DataLoss(f"the stored secret of {access.name_of(row)} failed authentication and was not revealed; "
                       "overwrite it with a new secret") from None
    except DatabaseRefused as err:
        raise _unlogged(err) from None


async def logged_secret(tx: Tx, depot: Depot, pk: int, now: dt.datetime, event: Callable[[Entry], audit.Event],
                        missing: Callable[[], NotFound]) -> Revealed:
    """In the caller's transaction: the entry again (`missing()` if it went or expired meanwhile), its event
    appended to the customer's chain, its secret decrypted; the secret is returned only if the transaction
    commits."""
    current = await tx.entry(pk)
    if current is None or model.is_expired(as_utc(current.expire_time), now):
        raise missing()
    logged = await audit.append(tx, depot.sealer, current.customer, event(current), now)
    secret = await depot.keys.open(tx, current)
    return Revealed(current, secret, f"customers/{current.customer}/logEvents/{logged.sequence}")


def _reason(reason: str) -> str:
    return f"reason: {reason}" if reason else ""


def _event(row: Entry, who: access.Caller, incident: str, action: str, outcome: str, detail: str) -> audit.Event:
    return audit.Event(action, who.user, outcome, system=access.system_name(row), logon_data=access.name_of(row),
                       incident=incident, detail=detail)


async def _log(depot: Depot, row: Entry, who: access.Caller, incident: str, action: str, outcome: str,
               detail: str) -> None:
    try:
        await audit.record(depot.store, depot.sealer, row.customer,
                           _event(row, who, incident, action, outcome, detail), depot.clock.now())
    except DatabaseRefused as err:
        raise _unlogged(err) from None


def _unlogged(err: DatabaseRefused) -> AuditUnavailable:
    """A database error met while logging a reveal or its refusal (never its text: it quotes the statement and
    its parameters)."""
    logger.error("the depot's database failed a reveal's transaction or the logging of a refused one (%s); "
                 "nothing was revealed", type(err.orig or err).__name__)
    return AuditUnavailable(UNLOGGED)
