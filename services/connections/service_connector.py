"""The Service Connector: issuing the signed stfk.oez file for a window, and checking one."""
from __future__ import annotations

from dataclasses import dataclass

from remotesupport.connections.v1.connections_pb2 import ConnectorTicket
from services.connections.connector_file import (
    FILE_NAME,
    MAX_FILE_BYTES,
    ConnectorInvalid,
    ConnectorSigner,
    new_ticket,
)
from services.connections.model import ACTIVE_STATES, WindowState
from services.connections.store import Store
from services.connections.systems import system_name
from services.connections.tables import WindowRow
from services.connections.windows import get_connection, state_of, window_name
from services.kit import names
from services.kit.clock import Clock, as_utc
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound


@dataclass(frozen=True)
class ConnectorFile:
    """An issued file: its name, its bytes and the ticket inside."""

    file_name: str
    content: bytes
    ticket: ConnectorTicket


@dataclass(frozen=True)
class Verdict:
    """What VerifyServiceConnector answers."""

    valid: bool
    ticket: ConnectorTicket | None = None
    currently_usable: bool = False
    problem: str = ""


async def issue_connector(store: Store, clock: Clock, signer: ConnectorSigner, customer: str, number: str,
                          window_id: str) -> ConnectorFile:
    """The connector file of an open or scheduled window; none for a closed or expired one."""
    row, system = await get_connection(store, customer, number, window_id)
    now = clock.now()
    state = state_of(row, now)
    if state not in ACTIVE_STATES:
        raise FailedPrecondition(f"connection {window_name(row)} is {state.value}; a service connector "
                                 "is issued only for an open or scheduled connection")
    ticket = new_ticket(window_name(row), system_name(system), f"connectionTypes/{row.type_code}",
                        system.saprouter_route, as_utc(row.start_time), as_utc(row.end_time), now)
    content = signer.issue(ticket)
    return ConnectorFile(FILE_NAME, content, ticket)


async def verify_connector(store: Store, clock: Clock, signer: ConnectorSigner, content: bytes) -> Verdict:
    """Whether `content` is an intact connector file of this service, and whether its window is open now.
    A file that is not (altered, foreign, garbage) is a verdict, not an error; only an empty or oversized
    request is INVALID_ARGUMENT."""
    if not content:
        raise InvalidArgument("content", "is required (the bytes of a stfk.oez file)")
    if len(content) > MAX_FILE_BYTES:
        raise InvalidArgument("content", f"is larger than {MAX_FILE_BYTES} bytes; no connector file is")
    try:
        ticket = signer.open(content)
    except ConnectorInvalid as invalid:
        return Verdict(valid=False, problem=invalid.problem)
    parts = names.parse("connection", ticket.connection, "content")
    try:
        row, _ = await get_connection(store, parts["customer"], parts["system"], parts["connection"])
    except NotFound:
        return Verdict(valid=True, ticket=ticket, problem="its connection no longer exists")
    state = state_of(row, clock.now())
    if state is WindowState.OPEN:
        return Verdict(valid=True, ticket=ticket, currently_usable=True)
    return Verdict(valid=True, ticket=ticket, problem=_not_usable(state, row))


def _not_usable(state: WindowState, row: WindowRow) -> str:
    if state is WindowState.SCHEDULED:
        return f"its connection is scheduled and opens at {as_utc(row.start_time).isoformat()}"
    if state is WindowState.CLOSED:
        return f"its connection was closed early at {as_utc(row.close_time).isoformat()}"
    return f"its connection expired at {as_utc(row.end_time).isoformat()}"
