"""What a relay replica holds in memory: the connectors attached to it (one per window) and its live sessions,
with the queues that carry a session's bytes between the engineer's stream and the connector's."""
from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from remotesupport.connections.v1 import relay_pb2
from services.connections.relay.model import EndReason
from services.kit.auth import Resource

CLOSE_WRITE = object()  # on a queue: the sending side will send nothing more
QUEUE_DEPTH = 8         # chunks in flight per direction (backpressure beyond that)


@dataclass(eq=False)
class Attachment:
    """A connector attached to this replica for one window; `outbox` carries what the relay sends it."""

    window_id: str
    connection: str
    instance_id: str
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    detached: bool = False

    def dial(self, session: str, target: str, dial_key: str) -> None:
        self.outbox.put_nowait(relay_pb2.DialRequest(session=session, target=target, dial_key=dial_key))

    def detach(self, reason: str, message: str, final: bool) -> None:
        """Ask the attach stream to send `detached` and end (once)."""
        if not self.detached:
            self.detached = True
            self.outbox.put_nowait(relay_pb2.ConnectorDetached(reason=reason, message=message, final=final))


@dataclass(eq=False)
class Live:
    """An admitted session on this replica. The engineer's stream owns it (and records its end); the
    connector's AcceptTunnel stream joins it with the dial key."""

    id: str
    name: str
    window_id: str
    token: str                 # the engineer's bearer token, kept in memory only, for the re-checks
    resource: Resource         # what the re-checks ask authz about (the incident that admitted an engineer)
    target: str
    dial_key: str
    attachment: Attachment
    start: dt.datetime
    up: int = 0                # bytes to the target
    down: int = 0              # bytes from the target
    to_connector: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_DEPTH))
    to_engineer: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_DEPTH))
    accepted: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    engineer_closed: bool = False
    target_closed: bool = False
    first_closed: EndReason | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cut_event: asyncio.Event = field(default_factory=asyncio.Event)
    cut_reason: EndReason | None = None
    cut_detail: str = ""

    def count_up(self, size: int) -> None:
        self.up += size

    def count_down(self, size: int) -> None:
        self.down += size

    def closed(self, side: EndReason) -> None:
        """One direction is over (CLIENT_CLOSED: the engineer's, TARGET_CLOSED: the system's)."""
        if side is EndReason.CLIENT_CLOSED:
            self.engineer_closed = True
        else:
            self.target_closed = True
        self.first_closed = self.first_closed or side
        if self.engineer_closed and self.target_closed:
            self.finished.set()

    def cut(self, reason: EndReason, detail: str) -> None:
        """End the session now (the first reason wins): both streams stop and no byte passes after this."""
        if self.cut_reason is None and not self.finished.is_set():
            self.cut_reason, self.cut_detail = reason, detail
            self.cut_event.set()
            if not self.accepted.done():
                self.accepted.set_result(detail)


class Registry:
    """The replica's attachments (by window id) and live sessions (by name)."""

    def __init__(self) -> None:
        self.attachments: dict[str, Attachment] = {}
        self.sessions: dict[str, Live] = {}

    def attached(self, window_id: str) -> Attachment | None:
        attachment = self.attachments.get(window_id)
        return attachment if attachment is not None and not attachment.detached else None

    def sessions_of(self, attachment: Attachment) -> list[Live]:
        return [live for live in self.sessions.values() if live.attachment is attachment]
