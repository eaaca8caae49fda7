"""LogonDepotService: proto <-> domain, and the authorization policy of each method.

Policies check the coarse permission (may the caller see this system's logon data at all) before anything
else, so a caller without it gets PERMISSION_DENIED whether or not an entry exists; the handlers then make
the decisive check on the entry itself (its owner, the engineer's incident). RevealLogonData's policy only
authenticates (`handler_decides`): its handler makes both decisions in one round trip to authz, so that it can
log every refused reveal before refusing."""
from __future__ import annotations

import datetime as dt
from typing import Callable

from google.protobuf import timestamp_pb2

from remotesupport.depot.v1 import depot_pb2, depot_pb2_grpc
from services.depot import access, audit, entries, keyring, model, reveal, views
from services.depot.context import Depot
from services.depot.tables import EntryRow, LogEventRow
from services.kit import names
from services.kit import permissions as P
from services.kit.auth import MethodPolicy, Resource, no_resource
from services.kit.clock import as_utc
from services.kit.errors import InvalidArgument
from services.kit.validate import Violations, decode_page_token, encode_page_token, mask_paths, page_size, \
    timestamp, to_timestamp

SERVICE = depot_pb2.DESCRIPTOR.services_by_name["LogonDepotService"].full_name
_KINDS = {v.number: v.name.removeprefix("LOGON_DATA_KIND_")
          for v in depot_pb2.LogonDataKind.DESCRIPTOR.values if v.number}
KIND_NUMBER = {name: number for number, name in _KINDS.items()}
ACTION_NUMBER = {v.name.removeprefix("LOG_ACTION_"): v.number for v in depot_pb2.LogAction.DESCRIPTOR.values}
OUTCOME_NUMBER = {v.name.removeprefix("LOG_OUTCOME_"): v.number for v in depot_pb2.LogOutcome.DESCRIPTOR.values}
KEY_STATE_NUMBER = {v.name.removeprefix("KEY_STATE_"): v.number for v in depot_pb2.KeyState.DESCRIPTOR.values}
ACTOR_PATTERN_HINT = "must be users/{user_id} or services/depot"


def kind_name(number: int) -> str:
    """The kind's name; "" when unspecified, the number as text when unknown (validation names both)."""
    return _KINDS.get(number, str(number)) if number else ""


# --- proto <-> domain ---------------------------------------------------------------------------------------
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


def logon_data_pb(row: EntryRow) -> depot_pb2.LogonData:
    return depot_pb2.LogonData(
        name=access.name_of(row), kind=KIND_NUMBER[row.kind], connection_type=row.connection_type,
        user_name=row.user_name, has_secret=bool(row.secret_ciphertext), client=row.client, server=row.server,
        notes=row.notes, expire_time=to_timestamp(as_utc(row.expire_time)),
        restricted_incident=row.restricted_incident, creator=row.creator,
        create_time=to_timestamp(as_utc(row.create_time)), updater=row.updater,
        update_time=to_timestamp(as_utc(row.update_time)), etag=row.etag, key_version=row.key_version,
        connection=row.connection, installation=row.installation,
    )


def event_pb(row: LogEventRow) -> depot_pb2.LogEvent:
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


def _cursor(token: str, expected: dict) -> int:
    """The position after which a page starts; the token must come from the same request."""
    cursor = decode_page_token(token)
    if cursor is None:
        return 0
    after = cursor.get("after")
    scope = {k: v for k, v in cursor.items() if k != "after"}
    if not isinstance(after, int) or after < 0 or scope != expected:
        raise InvalidArgument("page_token", "does not belong to this request (parent and filters must not change)")
    return after


def _token(after: int, scope: dict) -> str:
    return encode_page_token({"after": after, **scope}) if after else ""


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
    newest_first = _log_order(v, request.order_by)
    v.raise_if_any()
    return audit.Filters(request.system, request.logon_data, request.actor, start, end, newest_first)


_LOG_ORDERS = {"": False, "sequence": False, "sequence asc": False, "sequence desc": True}


def _log_order(v: Violations, order_by: str) -> bool:
    """ListLogEvents' order_by (AIP-132): True for newest first."""
    newest_first = _LOG_ORDERS.get(" ".join(order_by.split()).lower())
    if newest_first is None:
        v.add("order_by", 'must be "sequence" (oldest first) or "sequence desc" (newest first)')
        return False
    return newest_first


# --- authorization policies ---------------------------------------------------------------------------------
def policies(depot: Depot) -> dict[str, MethodPolicy]:
    async def create(request: depot_pb2.CreateLogonDataRequest) -> Resource:
        parts = names.parse("system", request.parent, "parent")
        confirmed = await depot.connections.system(request.parent)  # permission and existence: connections
        return Resource(customer=names.customer(parts["customer"]), system=request.parent,
                        installation=confirmed.installation)

    async def parent(request) -> Resource:
        return await access.system_resource(depot, names.parse("system", request.parent, "parent"))

    def entry(field: str, name_of: Callable[[object], str]):
        async def resolve(request) -> Resource:
            parts = names.parse("logon_data", name_of(request), field)
            async with depot.store.read() as session:
                row = await access.find(session, parts)
            if row is None:
                return await access.system_resource(depot, parts)
            return access.resource(row)
        return resolve

    def view(field: str, name_of: Callable[[object], str]):
        async def resolve(request) -> Resource:
            parts = names.parse("restricted_view", name_of(request), field)
            incident = model.incident_name(parts["customer"], parts["incident"])
            return await access.system_resource(depot, parts, incident=incident)
        return resolve

    async def customer(request) -> Resource:
        names.parse("customer", request.parent, "parent")
        return Resource(customer=request.parent)

    by_name = entry("name", lambda r: r.name)
    m = lambda method: f"/{SERVICE}/{method}"  # noqa: E731
    return {
        m("CreateLogonData"): MethodPolicy(P.LOGON_CREATE, create),
        m("GetLogonData"): MethodPolicy(P.LOGON_READ, by_name),
        m("ListLogonData"): MethodPolicy(P.LOGON_READ, parent),
        m("UpdateLogonData"): MethodPolicy(P.LOGON_READ, entry("logon_data.name", lambda r: r.logon_data.name)),
        m("DeleteLogonData"): MethodPolicy(P.LOGON_READ, by_name),
        m("RevealLogonData"): MethodPolicy(P.SESSION, handler_decides=True),
        m("SetRestrictedView"): MethodPolicy(P.VIEWS_WRITE, view("restricted_view.name",
                                                                 lambda r: r.restricted_view.name)),
        m("GetRestrictedView"): MethodPolicy(P.VIEWS_READ, view("name", lambda r: r.name)),
        m("ListLogEvents"): MethodPolicy(P.LOG_READ, customer),
        m("VerifyLog"): MethodPolicy(P.LOG_READ, customer),
        m("RotateKey"): MethodPolicy(P.KEYS_MANAGE, no_resource),
        m("GetKeyStatus"): MethodPolicy(P.KEYS_MANAGE, no_resource),
    }


# --- the service --------------------------------------------------------------------------------------------
class DepotServicer(depot_pb2_grpc.LogonDepotServiceServicer):
    def __init__(self, depot: Depot, on_rotated: Callable[[], None]) -> None:
        self.depot = depot
        self.on_rotated = on_rotated

    async def CreateLogonData(self, request, context):
        parent = names.parse("system", request.parent, "parent")
        row = await entries.create(self.depot, parent, kind_name(request.logon_data.kind),
                                   entry_fields(request.logon_data), request.secret)
        return depot_pb2.CreateLogonDataResponse(logon_data=logon_data_pb(row))

    async def GetLogonData(self, request, context):
        row = await entries.get(self.depot, names.parse("logon_data", request.name, "name"))
        return depot_pb2.GetLogonDataResponse(logon_data=logon_data_pb(row))

    async def ListLogonData(self, request, context):
        parent = names.parse("system", request.parent, "parent")
        size = page_size(request.page_size)
        kind = kind_name(request.kind)
        if kind and kind not in model.KINDS:
            raise InvalidArgument("kind", f"has unknown value {kind}")
        scope = {"parent": request.parent, "kind": kind}
        rows, after = await entries.list_entries(self.depot, parent, kind, _cursor(request.page_token, scope), size)
        return depot_pb2.ListLogonDataResponse(logon_data=[logon_data_pb(r) for r in rows],
                                               next_page_token=_token(after, scope))

    async def UpdateLogonData(self, request, context):
        parts = names.parse("logon_data", request.logon_data.name, "logon_data.name")
        paths = mask_paths(request.update_mask, set(model.UPDATABLE))
        row = await entries.update(self.depot, parts, entry_fields(request.logon_data), paths, request.secret,
                                   request.logon_data.etag)
        return depot_pb2.UpdateLogonDataResponse(logon_data=logon_data_pb(row))

    async def DeleteLogonData(self, request, context):
        await entries.delete(self.depot, names.parse("logon_data", request.name, "name"), request.etag)
        return depot_pb2.DeleteLogonDataResponse()

    async def RevealLogonData(self, request, context):
        revealed = await reveal.reveal(self.depot, names.parse("logon_data", request.name, "name"), request.reason)
        return depot_pb2.RevealLogonDataResponse(name=access.name_of(revealed.row), user_name=revealed.row.user_name,
                                                 secret=revealed.secret, log_event=revealed.log_event)

    async def SetRestrictedView(self, request, context):
        parts = names.parse("restricted_view", request.restricted_view.name, "restricted_view.name")
        view = await views.set_view(self.depot, parts, list(request.restricted_view.logon_data))
        return depot_pb2.SetRestrictedViewResponse(restricted_view=view_pb(view))

    async def GetRestrictedView(self, request, context):
        view = await views.get_view(self.depot, names.parse("restricted_view", request.name, "name"))
        return depot_pb2.GetRestrictedViewResponse(restricted_view=view_pb(view))

    async def ListLogEvents(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        filters = log_filters(request, customer)
        size = page_size(request.page_size)
        scope = {"parent": request.parent, "system": request.system, "logon_data": request.logon_data,
                 "actor": request.actor, "start": [request.start_time.seconds, request.start_time.nanos],
                 "end": [request.end_time.seconds, request.end_time.nanos]}
        if filters.newest_first:  # a page token of one order is refused by the other
            scope["order"] = "desc"
        rows = await audit.list_events(self.depot.store, customer, filters, _cursor(request.page_token, scope),
                                       size + 1)
        after = rows[size - 1].sequence if len(rows) > size else 0
        return depot_pb2.ListLogEventsResponse(events=[event_pb(r) for r in rows[:size]],
                                               next_page_token=_token(after, scope))

    async def VerifyLog(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        verdict = await audit.verify(self.depot.store, customer)
        return depot_pb2.VerifyLogResponse(valid=verdict.valid, events_checked=verdict.events_checked,
                                           first_broken_sequence=verdict.first_broken_sequence,
                                           problem=verdict.problem)

    async def RotateKey(self, request, context):
        row = await self.depot.keys.rotate(self.depot.store, self.depot.clock.now())
        self.on_rotated()  # re-wrapping starts in the background
        return depot_pb2.RotateKeyResponse(key=key_pb(keyring.KeyStatus(row.version, keyring.ACTIVE, row.create_time,
                                                                        0, row.encryptions)))

    async def GetKeyStatus(self, request, context):
        statuses, active = await self.depot.keys.status(self.depot.store)
        return depot_pb2.GetKeyStatusResponse(versions=[key_pb(s) for s in statuses], active_version=active,
                                              master_key_id=self.depot.keys.master_key_id)
