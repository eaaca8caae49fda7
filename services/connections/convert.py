"""Stored rows, catalog specs and connector files as proto messages, and proto enums as domain values."""
from __future__ import annotations

import datetime as dt
import json

from google.protobuf import duration_pb2

from remotesupport.connections.v1 import connections_pb2 as pb
from services.connections.connection_types import ConnectionTypeSpec
from services.connections.incidents import incident_name
from services.connections.model import IncidentStatus, WindowState
from services.connections.service_connector import ConnectorFile
from services.connections.sessions import SessionState, session_name
from services.connections.systems import SystemFields, system_name
from services.connections.tables import IncidentRow, SessionRow, SetupRow, SystemRow, WindowRow
from services.connections.windows import state_of, window_name
from services.kit import names
from services.kit.clock import as_utc
from services.kit.validate import to_timestamp


def type_name(code: str) -> str:
    return f"connectionTypes/{code}"


def connection_type(spec: ConnectionTypeSpec) -> pb.ConnectionType:
    return pb.ConnectionType(
        name=type_name(spec.code), code=spec.code, display_name=spec.display_name,
        category=pb.ConnectionCategory.Value(f"CONNECTION_CATEGORY_{spec.category}"),
        description=spec.description, sap_note=spec.sap_note,
        parameters=[pb.ParameterSpec(key=p.key, display_name=p.display_name,
                                     kind=pb.ParameterKind.Value(f"PARAMETER_KIND_{p.kind}"),
                                     required=p.required, description=p.description) for p in spec.parameters],
        default_port=spec.default_port or 0,
        max_open_duration=duration_pb2.Duration(seconds=spec.max_open_hours * 3600),
    )


def category(value: int) -> str | None:
    """The catalog category of a ConnectionCategory value (None for UNSPECIFIED = all)."""
    return None if value == 0 else pb.ConnectionCategory.Name(value).removeprefix("CONNECTION_CATEGORY_")


def system(row: SystemRow) -> pb.System:
    return pb.System(
        name=system_name(row), installation_number=row.installation_number, system_id=row.system_id,
        system_number=row.system_number, description=row.description, product=row.product,
        saprouter_route=row.saprouter_route, create_time=to_timestamp(as_utc(row.create_time)),
        update_time=to_timestamp(as_utc(row.update_time)), etag=row.etag,
    )


def system_fields(msg: pb.System) -> SystemFields:
    return SystemFields(msg.installation_number, msg.system_id, msg.system_number, msg.description, msg.product,
                        msg.saprouter_route)


def setup(row: SetupRow, owner: SystemRow) -> pb.ConnectionSetup:
    return pb.ConnectionSetup(
        name=f"{system_name(owner)}/connectionSetups/{row.type_code}", connection_type=type_name(row.type_code),
        parameters=json.loads(row.parameters), creator=row.creator, create_time=to_timestamp(as_utc(row.create_time)),
        updater=row.updater, update_time=to_timestamp(as_utc(row.update_time)),
    )


def window(row: WindowRow, now: dt.datetime) -> pb.Connection:
    """The window as it stands at `now`. close_time is the early close, or for an expired window its end."""
    state = state_of(row, now)
    msg = pb.Connection(
        name=window_name(row), connection_type=type_name(row.type_code),
        state=pb.ConnectionState.Value(f"CONNECTION_STATE_{state.value}"),
        start_time=to_timestamp(as_utc(row.start_time)), end_time=to_timestamp(as_utc(row.end_time)),
        incident=f"customers/{row.customer}/incidents/{row.incident_id}" if row.incident_id else "",
        reason=row.reason, opener=row.opener, create_time=to_timestamp(as_utc(row.create_time)),
        closer=row.closer or "",
    )
    close_time = row.close_time if row.closer is not None else row.end_time if state is WindowState.EXPIRED else None
    if close_time is not None:
        msg.close_time.CopyFrom(to_timestamp(as_utc(close_time)))
    return msg


def service_connector(issued: ConnectorFile) -> pb.ServiceConnector:
    return pb.ServiceConnector(file_name=issued.file_name, content=issued.content, ticket=issued.ticket,
                               signing_public_key=issued.public_key_pem)


def window_state(value: int) -> WindowState | None:
    return None if value == 0 else WindowState(pb.ConnectionState.Name(value).removeprefix("CONNECTION_STATE_"))


def incident(row: IncidentRow) -> pb.Incident:
    return pb.Incident(
        name=incident_name(row), system=names.system(row.customer, row.system_number), title=row.title,
        description=row.description, priority=pb.IncidentPriority.Value(f"INCIDENT_PRIORITY_{row.priority}"),
        status=pb.IncidentStatus.Value(f"INCIDENT_STATUS_{row.status}"), processor=row.processor or "",
        reporter=row.reporter, create_time=to_timestamp(as_utc(row.create_time)),
        update_time=to_timestamp(as_utc(row.update_time)), etag=row.etag,
    )


def incident_status(value: int) -> IncidentStatus | None:
    return None if value == 0 else IncidentStatus(pb.IncidentStatus.Name(value).removeprefix("INCIDENT_STATUS_"))


def priority(value: int) -> str:
    """The priority name of an IncidentPriority value ("" for UNSPECIFIED or unknown, which validation rejects)."""
    if value == 0 or value not in pb.IncidentPriority.values():
        return ""
    return pb.IncidentPriority.Name(value).removeprefix("INCIDENT_PRIORITY_")


def _enum_value(enum_type, prefix: str, name: str) -> int:
    """The number of `prefix + name` in `enum_type`, 0 (UNSPECIFIED) for "" or a name the contract lacks."""
    value = enum_type.DESCRIPTOR.values_by_name.get(prefix + name) if name else None
    return value.number if value is not None else 0


def session(row: SessionRow) -> pb.Session:
    """A relay session as stored (end_time unset while it is ACTIVE)."""
    parent = names.system(row.customer, row.system_number)
    msg = pb.Session(
        name=session_name(row), connection=f"{parent}/connections/{row.window_id}",
        connection_type=type_name(row.type_code), principal=row.principal, incident=row.incident, target=row.target,
        state=_enum_value(pb.SessionState, "SESSION_STATE_", row.state),
        start_time=to_timestamp(as_utc(row.start_time)), bytes_to_target=row.bytes_to_target,
        bytes_from_target=row.bytes_from_target,
        end_reason=_enum_value(pb.SessionEndReason, "SESSION_END_REASON_", row.end_reason),
        refusal_reason=row.refusal_reason, detail=row.detail, relay=row.relay_id, terminated_by=row.terminated_by,
    )
    if row.end_time is not None:
        msg.end_time.CopyFrom(to_timestamp(as_utc(row.end_time)))
    return msg


def session_state(value: int) -> SessionState | None:
    """The stored state of a SessionState value (None for UNSPECIFIED = all)."""
    return None if value == 0 else SessionState(pb.SessionState.Name(value).removeprefix("SESSION_STATE_"))
