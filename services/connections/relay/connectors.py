"""Attaching the customer's Service Connector: the file checked (signature, attach key, window), one connector
instance per window across every replica, and what detaching it does to the sessions through it."""
from __future__ import annotations

import logging

from remotesupport.connections.v1 import relay_pb2
from services.connections.connector_file import ConnectorInvalid, ConnectorSigner, attach_key_hash
from services.connections.model import WindowState
from services.connections.relay import windows
from services.connections.relay.model import (
    INSTANCE_ID,
    ConnectorAlreadyAttached,
    ConnectorFileExpired,
    ConnectorFileInvalid,
    ConnectorFileNotYetValid,
    EndReason,
    WindowNotOpen,
)
from services.connections.relay.registry import Attachment, Registry
from services.connections.relay.settings import RelaySettings
from services.connections.relay.store import RelayStore
from services.kit import metrics, names
from services.kit.clock import Clock
from services.kit.errors import InvalidArgument
from services.kit.logs import log

logger = logging.getLogger(__name__)
MAX_FILE_BYTES = 16 * 1024


async def attach(hello: relay_pb2.ConnectorHello, registry: Registry, store: RelayStore, signer: ConnectorSigner,
                 clock: Clock, settings: RelaySettings) -> tuple[Attachment, relay_pb2.ConnectorAttached]:
    """Check the file and attach its connector to this replica (refusals say which check failed)."""
    if not INSTANCE_ID.fullmatch(hello.instance_id):
        raise InvalidArgument("hello.instance_id", "must be 16 to 64 characters of [A-Za-z0-9_-]")
    if not hello.connector_file or len(hello.connector_file) > MAX_FILE_BYTES:
        raise InvalidArgument("hello.connector_file", "must be the bytes of a stfk.oez file")
    try:
        ticket = signer.open(hello.connector_file)
    except ConnectorInvalid as invalid:
        raise ConnectorFileInvalid(f"the connector file is not valid: {invalid.problem}") from None
    parts = names.parse("connection", ticket.connection, "hello.connector_file")
    row = await store.window(parts["connection"])
    if row is None or (row.customer, row.system_number) != (parts["customer"], parts["system"]):
        raise ConnectorFileInvalid(f"the connector file's connection {ticket.connection} no longer exists")
    if not await store.key_issued(attach_key_hash(ticket.attach_key), row.id):
        raise ConnectorFileInvalid("the connector file's attach key was not issued for its connection")
    now = clock.now()
    closed = windows.not_open(row, now)
    if closed is not None:
        state, why = closed
        error = {WindowState.SCHEDULED: ConnectorFileNotYetValid, WindowState.EXPIRED: ConnectorFileExpired}.get(
            state, WindowNotOpen)
        raise error(why)
    current = registry.attached(row.id)
    if current is not None and current.instance_id != hello.instance_id:
        raise ConnectorAlreadyAttached("another connector is attached for this window (a copy of the connector "
                                       "file?); only one connector may serve a window at a time")
    await store.attach(row.id, settings.relay_id, hello.instance_id, now, now - settings.replica_ttl)
    if current is not None:  # the same connector again (it lost its stream): the new stream replaces the old
        detach(registry, current, "CONNECTOR_ALREADY_ATTACHED", "replaced by a new stream of the same connector",
               final=False)
    attachment = Attachment(row.id, ticket.connection, hello.instance_id)
    registry.attachments[row.id] = attachment
    metrics.RELAY_CONNECTORS.set(len(registry.attachments))
    log(logger, logging.INFO, "connector attached", connection=ticket.connection, relay=settings.relay_id)
    return attachment, relay_pb2.ConnectorAttached(connection=ticket.connection, relay=settings.relay_id,
                                                   not_after=ticket.not_after)


def detach(registry: Registry, attachment: Attachment, reason: str, message: str, *, final: bool) -> None:
    """Detach a connector: its stream ends with `detached`, and every session through it is cut."""
    attachment.detach(reason, message, final)
    if registry.attachments.get(attachment.window_id) is attachment:
        del registry.attachments[attachment.window_id]
    metrics.RELAY_CONNECTORS.set(len(registry.attachments))
    for live in registry.sessions_of(attachment):
        live.cut(EndReason.CONNECTOR_DETACHED, f"the customer's connector was detached: {message}")


async def forget(registry: Registry, store: RelayStore, attachment: Attachment, settings: RelaySettings) -> None:
    """The attach stream is over (the connector went, or was detached): nothing reaches it any more."""
    replaced = registry.attachments.get(attachment.window_id) not in (None, attachment)
    detach(registry, attachment, "CONNECTOR_NOT_ATTACHED", "the connector's stream ended", final=False)
    if not replaced:  # a newer stream of the same connector keeps its row
        await store.detach(attachment.window_id, settings.relay_id, attachment.instance_id)
    log(logger, logging.INFO, "connector detached", connection=attachment.connection, relay=settings.relay_id)
