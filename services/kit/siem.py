"""SIEM export: a service's events (its outbox, the same the feed reads) to a SIEM over TCP, at least once.

Each service that writes events runs one `Exporter` when `RS_SIEM_ADDRESS` is set. A pass finds the customers
whose events go past what was exported (`Outbox.behind`), sends their next events in order, and records the
exported position only once the bytes were written to the connection (`Outbox.exported`), in the service's own
database. So a crash or a refused connection sends the unrecorded events again, never skips one: the SIEM
may see an event twice (its `id` is unique: deduplicate on it), and never misses one the service committed,
up to the SIEM's socket (syslog over TCP has no acknowledgement: what a receiver read and then lost in a crash
of its own is not sent again).
Depot events carry the log's sequence and chain hash, so the SIEM can check the chain's continuity.

Formats (`RS_SIEM_FORMAT`): `rfc5424` (default), RFC 5424 syslog messages framed by octet counting (RFC 6587
3.4.1, "LEN SP MSG"), formatted by the rfc5424-logging-handler package; `jsonl`, one JSON object a line (the
feed's Event in its proto JSON mapping). `RS_SIEM_TLS=1` connects with TLS (the server's certificate checked
against `RS_SIEM_CA_FILE`, else the system's CAs); the production profile requires it."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from google.protobuf import json_format
from sqlalchemy import case, func, select
from rfc5424logging import Rfc5424SysLogHandler

from services.kit import feed
from services.kit.clock import as_utc
from services.kit.config import env, env_bool, env_float, env_int, env_path
from services.kit.db import upsert
from services.kit.outbox import OutboxReader

FORMATS = ("rfc5424", "jsonl")
DOCUMENTATION_PEN = "32473"  # IANA's enterprise number for documentation (RFC 5612); set your own
_WARNING_TYPES = {"LOGON_DATA_REVEAL_REFUSED", "SESSION_REFUSED"}
LOG_AUTHPRIV = 10


@dataclass(frozen=True)
class SiemSettings:
    address: str = ""  # host:port; "" = no export
    format: str = "rfc5424"
    tls: bool = False
    ca_file: Path | None = None
    enterprise_id: str = DOCUMENTATION_PEN
    interval_s: float = 1.0  # how often a pass looks for events not yet exported
    batch: int = 500
    connect_timeout_s: float = 5.0

    @classmethod
    def from_env(cls) -> "SiemSettings":
        return cls(address=env("RS_SIEM_ADDRESS", ""), format=env("RS_SIEM_FORMAT", "rfc5424"),
                   tls=env_bool("RS_SIEM_TLS", False), ca_file=env_path("RS_SIEM_CA_FILE"),
                   enterprise_id=env("RS_SIEM_ENTERPRISE_ID", DOCUMENTATION_PEN),
                   interval_s=env_float("RS_SIEM_INTERVAL_S", 1.0), batch=env_int("RS_SIEM_BATCH", 500))

    def check(self, profile: str) -> None:
        """A configuration error stops the service at start, naming the variable."""
        if not self.address:
            return
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SystemExit(f"configuration error: RS_SIEM_ADDRESS must be host:port, not {self.address!r}")
        if self.format not in FORMATS:
            raise SystemExit(f"configuration error: RS_SIEM_FORMAT must be one of {', '.join(FORMATS)}")
        if profile == "production" and not self.tls:
            raise SystemExit("configuration error: the production profile exports to a SIEM only over TLS "
                             "(RS_SIEM_TLS=1)")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise SystemExit(f"configuration error: RS_SIEM_CA_FILE {self.ca_file} is not a file")


class Outbox(Protocol):
    """A service's events as the exporter reads them, and what it exported (in the service's database)."""

    async def behind(self, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` customers whose events go past their exported position, with that position."""

    async def events_after(self, customer: str, position: int, limit: int) -> Sequence[feed.FeedEvent]: ...

    async def exported(self, customer: str, position: int) -> None:
        """Record that the customer's events up to `position` were sent."""


def behind_statement(heads, head_position, cursors, limit: int):
    """The query of `Outbox.behind` over a service's per-customer event heads (`heads`, its column
    `head_position`) and its `siem_cursors` table (customer, position): (customer, exported position) rows."""
    exported = func.coalesce(cursors.c.position, 0)
    return (select(heads.c.customer, exported)
            .select_from(heads.outerjoin(cursors, cursors.c.customer == heads.c.customer))
            .where(head_position > exported).order_by(heads.c.customer).limit(limit))


def exported_statement(session, cursors, customer: str, position: int):
    """The statement of `Outbox.exported`: the customer's mark moved forward to `position` (never back: another
    replica's export may have gone further meanwhile)."""
    forward = case((cursors.c.position < position, position), else_=cursors.c.position)
    return upsert(session, cursors, {"customer": customer}, {"position": position}, on_conflict={"position": forward})


class Formatter:
    """One event as the bytes of one framed message of the configured format."""

    def __init__(self, source: str, settings: SiemSettings) -> None:
        self.source = source
        self.jsonl = settings.format == "jsonl"
        self._syslog = Rfc5424SysLogHandler(
            facility=LOG_AUTHPRIV, hostname=socket.gethostname(), appname=f"remotesupport-{source}",
            procid=str(os.getpid()), enterprise_id=settings.enterprise_id, utc_timestamp=True,
            stream=io.BytesIO())  # used for build_msg only: it never emits; the exporter sends

    def frame(self, customer: str, event: feed.FeedEvent) -> bytes:
        message = feed.to_proto(self.source, customer, event)
        if self.jsonl:
            body = json_format.MessageToDict(message, preserving_proto_field_name=True)
            return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        record = logging.LogRecord(f"remotesupport-{self.source}", logging.WARNING if event.type in _WARNING_TYPES
                                   else logging.INFO, "", 0, event.detail, None, None)
        record.created = as_utc(event.time).timestamp()
        record.msgid = event.type
        record.structured_data = {"event": {
            "id": message.id, "customer": message.customer, "position": message.position, "system": message.system,
            "actor": message.actor, "resource": message.resource, "incident": message.incident,
            **({"logSequence": message.log_sequence, "chainHash": message.chain_hash} if message.log_sequence
               else {})}}
        text = self._syslog.build_msg(record)
        return b"%d %s" % (len(text), text)


class Exporter(OutboxReader):
    """Sends a service's events to the SIEM, one pass every `interval_s` (or sooner when woken)."""

    transient = (OSError, asyncio.TimeoutError, ssl.SSLError)

    def __init__(self, source: str, outbox: Outbox, settings: SiemSettings, notifier: feed.Notifier) -> None:
        super().__init__(outbox, notifier, settings.interval_s, settings.batch)
        self.settings = settings
        self.what = f"SIEM export to {settings.address}"
        self.formatter = Formatter(source, settings)
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def outage(self, error: BaseException) -> str:
        await self._close()
        return type(error).__name__

    async def export_once(self) -> int:
        """Send every event not yet exported; returns how many were sent."""
        return await self.pass_once()

    async def handle(self, customer: str, events: Sequence[feed.FeedEvent]) -> int:
        writer = await self._connection()
        writer.write(b"".join(self.formatter.frame(customer, e) for e in events))
        # with no write buffer of its own (set at connect), drain returns once the kernel took every
        # byte; a SIEM that stops reading is given up on after the connect timeout, and sent again
        await asyncio.wait_for(writer.drain(), self.settings.connect_timeout_s)
        await self.outbox.exported(customer, events[-1].position)
        return len(events)

    async def _connection(self) -> asyncio.StreamWriter:
        """The open connection, or a new one. A connection the SIEM closed (its end read: EOF) is not written to:
        bytes written after the peer went would be lost yet look sent."""
        if self._stream is not None:
            reader, writer = self._stream
            if not writer.is_closing() and not reader.at_eof():
                return writer
            await self._close()
        host, _, port = self.settings.address.rpartition(":")
        context = None
        if self.settings.tls:
            context = ssl.create_default_context(cafile=str(self.settings.ca_file) if self.settings.ca_file else None)
        self._stream = await asyncio.wait_for(asyncio.open_connection(host, int(port), ssl=context),
                                              self.settings.connect_timeout_s)
        self._stream[1].transport.set_write_buffer_limits(high=0)  # nothing counts as sent while still in here
        return self._stream[1]

    async def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream[1].close()
            try:
                await stream[1].wait_closed()
            except (OSError, ssl.SSLError):
                pass

    async def stop(self) -> None:
        await self._close()
