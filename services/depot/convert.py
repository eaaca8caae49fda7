"""The depot's proto messages and domain values, both ways: entries, log events and their filters, restricted
views and ring keys."""
from __future__ import annotations

import datetime as dt
import re

from google.protobuf import timestamp_pb2

from remotesupport.common.v1 import events_pb2
from remotesupport.depot.v1 import depot_pb2
from services.depot import access, audit, chain, keyring, model, views
from services.depot.store import Entry
from services.depot.webhooks import delivery_name, types_of, webhook_name
from services.kit import names
from services.kit.clock import as_utc
from services.kit.errors import InvalidArgument
from services.kit.validate import Violations, timestamp, to_timestamp

_KINDS = {v.number: v.name.removeprefix("LOGON_DATA_KIND_")
          for v in depot_pb2.LogonDataKind.DESCRIPTOR.values if v.number}
KIND_NUMBER = {name: number for number, name in _KINDS.items()}
ACTION_NUMBER = {v.name.removeprefix("LOG_ACTION_"): v.number for v in depot_pb2.LogAction.DESCRIPTOR.values}
OUTCOME_NUMBER = {v.name.removeprefix("LOG_OUTCOME_"): v.number for v in depot_pb2.LogOutcome.DESCRIPTOR.values}
KEY_STATE_NUMBER = {v.name.removeprefix("KEY_STATE_"): v.number for v in depot_pb2.KeyState.DESCRIPTOR.values}
ACTOR_PATTERN_HINT = "must be users/{user_id} or services/depot"
_LOG_ORDERS = {"": False, "sequence": False, "sequence asc": False, "sequence desc": True}
_HASH = re.compile(r"[0-9a-f]{64}")  # a log event's hash as LogEvent.hash shows it


def kind_name(number: int) -> str:
    """The kind's name; "" when unspecified, the number as text when unknown (validation names both)."""
    return _KINDS.get(number, str(number)) if number else ""


def _time(ts: timestamp_pb2.Timestamp, field: str, v: Violations) -> dt.datetime | None:
    try:
        return timestamp(ts)
    except (ValueError, OverflowError, OSError):
        v.add(field, "is not a valid time")
        return None


def entry_fields(msg: depot_pb2.LogonData) -> model.EntryFields:
    v = Violations()
    expire_time = _time(msg.expire_time, "logon_data.expire_time", v)
    v.raise_if_any()
    return model.EntryFields(user_name=msg.user_name, client=msg.client, server=msg.server, notes=msg.notes,
                             expire_time=expire_time, connection_type=msg.connection_type,
                             restricted_incident=msg.restricted_incident, connection=msg.connection)


def logon_data_pb(row: Entry) -> depot_pb2.LogonData:
    return depot_pb2.LogonData(
        name=access.name_of(row), kind=KIND_NUMBER[row.kind], connection_type=row.connection_type,
        user_name=row.user_name, has_secret=bool(row.secret_ciphertext), client=row.client, server=row.server,
        notes=row.notes, expire_time=to_timestamp(row.expire_time),
        restricted_incident=row.restricted_incident, creator=row.creator,
        create_time=to_timestamp(row.create_time), updater=row.updater,
        update_time=to_timestamp(row.update_time), etag=row.etag, key_version=row.key_version,
        connection=row.connection, installation=row.installation,
    )


def event_pb(row) -> depot_pb2.LogEvent:
    """A stored log event (a LogEventRow) as the proto's LogEvent."""
    return depot_pb2.LogEvent(
        name=f"customers/{row.customer}/logEvents/{row.sequence}", sequence=row.sequence,
        action=ACTION_NUMBER[row.action], outcome=OUTCOME_NUMBER[row.outcome], actor=row.actor, system=row.system,
        logon_data=row.logon_data, incident=row.incident, detail=row.detail,
        event_time=to_timestamp(as_utc(row.event_time)), hash=row.hash, previous_hash=row.previous_hash,
        request_id=row.request_id,
    )


def view_pb(view: views.View) -> depot_pb2.RestrictedView:
    return depot_pb2.RestrictedView(name=view.name, logon_data=view.logon_data, updater=view.updater,
                                    update_time=to_timestamp(view.update_time))


def key_pb(status: keyring.KeyStatus) -> depot_pb2.KeyVersion:
    return depot_pb2.KeyVersion(version=status.version, state=KEY_STATE_NUMBER[status.state],
                                create_time=to_timestamp(as_utc(status.create_time)), entry_count=status.entry_count,
                                encryptions=status.encryptions)


def _same_customer(v: Violations, field: str, value: str, kind: str, customer: str) -> None:
    if not value:
        return
    try:
        parts = names.parse(kind, value, field)
    except InvalidArgument as err:
        v.add(field, err.violations[0][1])
        return
    if parts["customer"] != customer:
        v.add(field, f"must belong to customers/{customer}")


def log_filters(request: depot_pb2.ListLogEventsRequest, customer: str) -> audit.Filters:
    """ListLogEvents' filters and order, checked against the customer whose log is listed."""
    v = Violations()
    _same_customer(v, "system", request.system, "system", customer)
    _same_customer(v, "logon_data", request.logon_data, "logon_data", customer)
    if request.actor and request.actor != audit.DEPOT_ACTOR:
        try:
            names.parse("user", request.actor, "actor")
        except InvalidArgument:
            v.add("actor", ACTOR_PATTERN_HINT)
    start, end = _time(request.start_time, "start_time", v), _time(request.end_time, "end_time", v)
    if start and end and end <= start:
        v.add("end_time", "must be after start_time")
    newest_first = _LOG_ORDERS.get(" ".join(request.order_by.split()).lower())  # AIP-132
    if newest_first is None:
        v.add("order_by", 'must be "sequence" (oldest first) or "sequence desc" (newest first)')
    v.raise_if_any()
    return audit.Filters(request.system, request.logon_data, request.actor, start, end, bool(newest_first))


def kept_head(request: depot_pb2.VerifyLogRequest) -> chain.LogHead | None:
    """VerifyLog's kept head (None when not sent), checked: a positive sequence, a hash of 64 lower-case hex."""
    if not request.HasField("kept_head"):
        return None
    kept = request.kept_head
    v = Violations()
    if kept.sequence <= 0:
        v.add("kept_head.sequence", "must be positive: the sequence of the event a VerifyLog head named")
    if not _HASH.fullmatch(kept.hash):
        v.add("kept_head.hash", "must be the event's hash as the log shows it: 64 lower-case hex digits")
    v.raise_if_any()
    return chain.LogHead(kept.sequence, kept.hash)


def verdict_pb(verdict: chain.Verdict) -> depot_pb2.VerifyLogResponse:
    response = depot_pb2.VerifyLogResponse(valid=verdict.valid, events_checked=verdict.events_checked,
                                           first_broken_sequence=verdict.first_broken_sequence,
                                           problem=verdict.problem)
    if verdict.head is not None:
        response.head.CopyFrom(depot_pb2.LogHead(sequence=verdict.head.sequence, hash=verdict.head.hash))
    return response


def webhook_pb(row) -> depot_pb2.Webhook:
    return depot_pb2.Webhook(name=webhook_name(row), url=row.url, description=row.description, creator=row.creator,
                             create_time=to_timestamp(as_utc(row.create_time)), event_types=[
                                 events_pb2.EventType.Value(f"EVENT_TYPE_{t}") for t in types_of(row)])


def delivery_pb(row) -> depot_pb2.WebhookDelivery:
    out = depot_pb2.WebhookDelivery(
        name=delivery_name(row), event_id=row.event_id, attempts=row.attempts, last_error=row.last_error,
        event_type=events_pb2.EventType.Value(f"EVENT_TYPE_{row.event_type}"),
        state=depot_pb2.WebhookDeliveryState.Value(f"WEBHOOK_DELIVERY_STATE_{row.state}"),
        create_time=to_timestamp(as_utc(row.create_time)))
    for field in ("last_attempt_time", "next_attempt_time", "delivered_time"):
        value = getattr(row, field)
        if value is not None:
            getattr(out, field).CopyFrom(to_timestamp(as_utc(value)))
    return out


def delivery_state(number: int) -> str:
    """A WebhookDeliveryState filter as the stored state ("" for every state); INVALID_ARGUMENT naming `state`."""
    v = Violations()
    v.enum("state", number, depot_pb2.WebhookDeliveryState, allow_unspecified=True)
    v.raise_if_any()
    return depot_pb2.WebhookDeliveryState.Name(number).removeprefix("WEBHOOK_DELIVERY_STATE_") if number else ""
