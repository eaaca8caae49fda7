"""ExportIncidentEvidence: one signed document (services/kit/evidence.py, docs/EVIDENCE.md) holding everything
about one incident, read from the services as the caller (so each service still decides each read): the
incident; its windows (those opened for it, and any that carried a tunnel session it admitted); their tunnel
sessions and the sessions it admitted; every event of its system's depot log from the incident's creation to
the export, with their chain positions; and the depot's verdict on the customer's whole log, read after the
events, so its head covers them. None of these messages carries a secret (no connector file, attach key or
logon secret is read). GetEvidenceKey: the public key the documents verify with."""
from __future__ import annotations

import asyncio
import datetime as dt
import time

from google.protobuf import json_format

from gateway.backends import LIST_PAGE_SIZE, Backends
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from services.kit import auth, names, tracing
from services.kit.errors import FailedPrecondition
from services.kit.evidence import FORMAT, EvidenceSigner
from services.kit.validate import timestamp, to_timestamp

LIMIT = 10_000  # windows of the system, sessions since the incident began, log events: each, at most
ENVELOPE_BYTES = 1024  # what the response adds to the document (key id, framing)


def to_dict(message) -> dict:
    """A message in the protobuf JSON mapping, proto field names, fields without presence always present."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def too_much(what: str) -> FailedPrecondition:
    return FailedPrecondition(f"the incident's evidence would have to read more than {LIMIT} {what}; an evidence "
                              f"document is made of at most {LIMIT} of each")


def _moment(ts) -> tuple[int, int]:
    """A Timestamp, comparable."""
    return ts.seconds, ts.nanos


class EvidenceExport:
    """The two RPCs, with the gateway's signing key."""

    def __init__(self, b: Backends, signer: EvidenceSigner, max_message_bytes: int) -> None:
        self.b = b
        self.signer = signer
        self.max_document_bytes = max_message_bytes - ENVELOPE_BYTES

    def key(self) -> gpb.GetEvidenceKeyResponse:
        return gpb.GetEvidenceKeyResponse(public_key_pem=self.signer.public_key_pem, key_id=self.signer.key_id)

    async def export(self, request: gpb.ExportIncidentEvidenceRequest,
                     exported_by: str) -> gpb.ExportIncidentEvidenceResponse:
        customer = names.customer(names.parse("incident", request.incident, "incident")["customer"])
        now = self.b.clock.now()
        exported_at = to_timestamp(now)
        one_deadline = auth.deadline_var.set(time.monotonic() + auth.remaining(self.b.call_deadline_s))
        try:
            incident = (await self.b.call("connections", self.b.connections.GetIncident,
                                          cpb.GetIncidentRequest(name=request.incident))).incident
            scope = dpb.ListLogEventsRequest(parent=customer, system=incident.system, start_time=incident.create_time,
                                             end_time=_log_end(incident, now))
            windows, sessions, events = await asyncio.gather(
                self._bounded("windows of its system", "connections", self.b.connections.ListConnections,
                              cpb.ListConnectionsRequest(parent=incident.system), "connections"),
                self._sessions_since(incident),
                self._bounded("log events of its system", "depot", self.b.depot.ListLogEvents, scope, "events"))
            verdict = await self.b.call("depot", self.b.depot.VerifyLog, dpb.VerifyLogRequest(parent=customer))
        finally:
            auth.deadline_var.reset(one_deadline)
        windows, sessions = _of_incident(incident.name, windows, sessions)
        evidence = {
            "format": FORMAT,
            "exported_at": exported_at.ToJsonString(),
            "exported_by": exported_by,
            "incident": to_dict(incident),
            "windows": [to_dict(w) for w in windows],
            "sessions": [to_dict(s) for s in sessions],
            "log_scope": {"parent": customer, "system": incident.system,
                          "start_time": scope.start_time.ToJsonString(), "end_time": scope.end_time.ToJsonString()},
            "log_events": [to_dict(e) for e in events],
            "log_verification": to_dict(verdict),
        }
        with tracing.span("gateway evidence sign", {"remotesupport.evidence.windows": len(windows),
                                                    "remotesupport.evidence.sessions": len(sessions),
                                                    "remotesupport.evidence.log_events": len(events)}):
            document = self.signer.sign(evidence)
        if len(document) > self.max_document_bytes:
            raise FailedPrecondition(f"the incident's evidence document would be {len(document)} bytes, more than "
                                     f"the {self.max_document_bytes} one answer may carry (RS_MAX_MESSAGE_BYTES)")
        return gpb.ExportIncidentEvidenceResponse(document=document, key_id=self.signer.key_id)

    async def _bounded(self, what: str, service: str, method, request, items_field: str) -> list:
        items = await self.b.collect(service, method, request, items_field, LIMIT + 1)
        if len(items) > LIMIT:
            raise too_much(what)
        return items

    async def _sessions_since(self, incident: cpb.Incident) -> list[cpb.Session]:
        """The system's sessions that started at or after the incident's creation (the list is newest first, so
        paging stops at the first older one): none before it can be of the incident or of its windows."""
        since = _moment(incident.create_time)
        request = cpb.ListSessionsRequest(parent=incident.system, page_size=LIST_PAGE_SIZE)
        out: list[cpb.Session] = []
        while True:
            page = await self.b.call("connections", self.b.connections.ListSessions, request)
            recent = [s for s in page.sessions if _moment(s.start_time) >= since]
            out.extend(recent)
            if len(out) > LIMIT:
                raise too_much("tunnel sessions of its system")
            if len(recent) < len(page.sessions) or not page.next_page_token:
                return out
            request.page_token = page.next_page_token


def _log_end(incident: cpb.Incident, now: dt.datetime):
    """The end of the log's range (exclusive, as ListLogEvents takes it): just after the export's instant, so
    that an event of that very instant is in it; at least just after the incident's creation (a gateway clock
    behind the connections service's)."""
    created = timestamp(incident.create_time)
    return to_timestamp(max(now, created or now) + dt.timedelta(microseconds=1))


def _of_incident(incident: str, windows: list[cpb.Connection],
                 sessions: list[cpb.Session]) -> tuple[list[cpb.Connection], list[cpb.Session]]:
    """The incident's windows and sessions, oldest first: the windows opened for it, their sessions, the
    sessions it admitted (through any window of the system), and the windows those went through."""
    opened_for = {w.name for w in windows if w.incident == incident}
    kept_sessions = [s for s in sessions if s.incident == incident or s.connection in opened_for]
    carried = opened_for | {s.connection for s in kept_sessions}
    kept_windows = [w for w in windows if w.name in carried]
    return (sorted(kept_windows, key=lambda w: (_moment(w.start_time), w.name)),
            sorted(kept_sessions, key=lambda s: (_moment(s.start_time), s.name)))
