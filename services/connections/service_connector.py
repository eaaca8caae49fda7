"""The Service Connector: issuing the signed stfk.oez file for a window, and checking one."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from remotesupport.connections.v1.connections_pb2 import ConnectorTicket
from services.connections.connector_file import (
    FILE_NAME,
    MAX_FILE_BYTES,
    ConnectorInvalid,
    ConnectorSigner,
    attach_key_hash,
    new_ticket,
)
from services.connections.connection_types import ConnectionTypes
from services.connections.model import ACTIVE_STATES, WindowState
from services.connections.store import Store
from services.connections.systems import find_system, system_name
from services.connections.tables import ConnectorKeyRow, WindowRow
from services.connections.targets import target_of
from services.connections.windows import get_connection, state_of, window_name
from services.kit import names
from services.kit.clock import Clock, as_utc
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound


@dataclass(frozen=True)
class ConnectorFile:
    """An issued file: its name, its bytes, the ticket inside (without its attach key) and the signing key's
    public half (PEM)."""

    file_name: str
    content: bytes
    ticket: ConnectorTicket
    public_key_pem: str


@dataclass(frozen=True)
class Verdict:
    """What VerifyServiceConnector answers."""

    valid: bool
    ticket: ConnectorTicket | None = None
    currently_usable: bool = False
    problem: str = ""


async def issue_connector(store: Store, clock: Clock, signer: ConnectorSigner, connection_types: ConnectionTypes,
                          relay_addresses: tuple[str, ...], customer: str, number: str,
                          window_id: str) -> ConnectorFile:
    """The connector file of an open or scheduled window; none for a closed or expired one. Each file carries
    its own attach key (stored here only as its SHA-256), the relays to dial and the set-up's target."""
    attach_key = secrets.token_urlsafe(32)
    async with store.write() as uow:
        system = await find_system(uow, customer, number)
        row = await uow.window(system, window_id)
        if row is None:
            raise NotFound(f"connection {system_name(system)}/connections/{window_id} does not exist")
        now = clock.now()
        state = state_of(row, now)
        if state not in ACTIVE_STATES:
            raise FailedPrecondition(f"connection {window_name(row)} is {state.value}; a service connector "
                                     "is issued only for an open or scheduled connection")
        setup = await uow.setup(system, row.type_code)
        spec = connection_types.find(row.type_code)
        target = target_of(spec, json.loads(setup.parameters)) if setup is not None and spec is not None else ""
        uow.add(ConnectorKeyRow(key_hash=attach_key_hash(attach_key), window_id=row.id, issue_time=now))
    ticket = new_ticket(window_name(row), system_name(system), f"connectionTypes/{row.type_code}",
                        system.saprouter_route, as_utc(row.start_time), as_utc(row.end_time), now)
    ticket.relay_addresses.extend(relay_addresses)
    ticket.attach_key = attach_key
    ticket.target = target
    content = signer.issue(ticket)
    shown = ConnectorTicket()
    shown.CopyFrom(ticket)
    shown.ClearField("attach_key")
    return ConnectorFile(FILE_NAME, content, shown, signer.public_key_pem)


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
    ticket.ClearField("attach_key")  # the caller holds the file; the key is not echoed
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
