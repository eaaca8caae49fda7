"""ConnectionsService: proto <-> domain, nothing more. Authorization happened before a method runs (see
policies.py); the logic is in the use-case modules."""
from __future__ import annotations

from remotesupport.connections.v1 import connections_pb2 as pb
from remotesupport.connections.v1 import connections_pb2_grpc
from services.connections import convert, incidents, service_connector, sessions, setups, systems, windows
from services.connections.connection_types import ConnectionTypes
from services.connections.connector_file import ConnectorSigner
from services.connections.incidents import IncidentFields, IncidentWorkflow
from services.connections.model import Actor
from services.connections.store import Store
from services.kit import auth, feed, names
from services.kit.clock import Clock
from services.kit.errors import InvalidArgument
from services.kit.validate import Violations, mask_paths, page_size, timestamp


def _actor() -> Actor:
    subject = auth.current().subject
    return Actor(subject.user, subject.kind, subject.customer)


def _time(ts, field: str):
    """A request's Timestamp as a datetime (None when unset); one no datetime can hold is the caller's mistake."""
    try:
        return timestamp(ts)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(field, "is not a valid time") from None


def _enum(field: str, value: int, enum_type, *, allow_unspecified: bool) -> None:
    v = Violations()
    v.enum(field, value, enum_type, allow_unspecified=allow_unspecified)
    v.raise_if_any()


class ConnectionsServicer(connections_pb2_grpc.ConnectionsServiceServicer):
    def __init__(self, store: Store, clock: Clock, connection_types: ConnectionTypes, signer: ConnectorSigner,
                 workflow: IncidentWorkflow, relay_addresses: tuple[str, ...], events: feed.Feed) -> None:
        self.store = store
        self.events = events
        self.relay_addresses = relay_addresses
        self.clock = clock
        self.connection_types = connection_types
        self.signer = signer
        self.workflow = workflow

    # --- catalog -----------------------------------------------------------------------------------

    async def ListConnectionTypes(self, request, context):
        _enum("category", request.category, pb.ConnectionCategory, allow_unspecified=True)
        specs, token = self.connection_types.page(convert.category(request.category), page_size(request.page_size),
                                                  request.page_token)
        return pb.ListConnectionTypesResponse(connection_types=[convert.connection_type(s) for s in specs],
                                              next_page_token=token)

    async def GetConnectionType(self, request, context):
        code = names.parse("connection_type", request.name, "name")["code"]
        return pb.GetConnectionTypeResponse(connection_type=convert.connection_type(self.connection_types.get(code)))

    # --- systems -----------------------------------------------------------------------------------

    async def CreateSystem(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        row = await systems.create_system(self.store, self.clock, customer, convert.system_fields(request.system))
        return pb.CreateSystemResponse(system=convert.system(row))

    async def GetSystem(self, request, context):
        parts = names.parse("system", request.name, "name")
        row = await systems.get_system(self.store, parts["customer"], parts["system"])
        return pb.GetSystemResponse(system=convert.system(row))

    async def ListSystems(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        rows, token = await systems.list_systems(self.store, customer, request.query, page_size(request.page_size),
                                                 request.page_token)
        return pb.ListSystemsResponse(systems=[convert.system(r) for r in rows], next_page_token=token)

    async def UpdateSystem(self, request, context):
        parts = names.parse("system", request.system.name, "system.name")
        paths = mask_paths(request.update_mask, systems.UPDATABLE)
        values = convert.system_fields(request.system)
        row = await systems.update_system(self.store, self.clock, parts["customer"], parts["system"], values, paths,
                                          request.system.etag)
        return pb.UpdateSystemResponse(system=convert.system(row))

    async def DeleteSystem(self, request, context):
        parts = names.parse("system", request.name, "name")
        await systems.delete_system(self.store, self.clock, parts["customer"], parts["system"], request.etag)
        return pb.DeleteSystemResponse()

    # --- set-ups -----------------------------------------------------------------------------------

    async def SetUpConnection(self, request, context):
        parts = names.parse("system", request.parent, "parent")
        code = names.parse("connection_type", request.connection_type, "connection_type")["code"]
        spec = self.connection_types.referenced(code, "connection_type")
        row, owner, created = await setups.set_up_connection(self.store, self.clock, _actor(), parts["customer"],
                                                             parts["system"], spec, dict(request.parameters),
                                                             validate_only=request.validate_only)
        return pb.SetUpConnectionResponse(connection_setup=convert.setup(row, owner), created=created)

    async def ListConnectionSetups(self, request, context):
        parts = names.parse("system", request.parent, "parent")
        rows, owner, token = await setups.list_setups(self.store, parts["customer"], parts["system"],
                                                      page_size(request.page_size), request.page_token)
        return pb.ListConnectionSetupsResponse(connection_setups=[convert.setup(r, owner) for r in rows],
                                               next_page_token=token)

    async def DeleteConnectionSetup(self, request, context):
        parts = names.parse("connection_setup", request.name, "name")
        await setups.delete_setup(self.store, self.clock, parts["customer"], parts["system"], parts["code"])
        return pb.DeleteConnectionSetupResponse()

    # --- windows -----------------------------------------------------------------------------------

    async def OpenConnection(self, request, context):
        parts = names.parse("system", request.parent, "parent")
        code = names.parse("connection_type", request.connection_type, "connection_type")["code"]
        incident = names.parse_optional("incident", request.incident, "incident")
        if incident is not None and incident["customer"] != parts["customer"]:
            raise InvalidArgument("incident", f"must be an incident of {names.customer(parts['customer'])}")
        open_request = windows.OpenRequest(
            spec=self.connection_types.referenced(code, "connection_type"),
            start=_time(request.start_time, "start_time"), end=_time(request.end_time, "end_time"),
            incident_id=incident["incident"] if incident else None, reason=request.reason)
        row = await windows.open_connection(self.store, self.clock, _actor(), parts["customer"], parts["system"],
                                            open_request, validate_only=request.validate_only)
        return pb.OpenConnectionResponse(connection=convert.window(row, self.clock.now()))

    async def CloseConnection(self, request, context):
        parts = names.parse("connection", request.name, "name")
        row = await windows.close_connection(self.store, self.clock, _actor(), parts["customer"], parts["system"],
                                             parts["connection"], validate_only=request.validate_only)
        return pb.CloseConnectionResponse(connection=convert.window(row, self.clock.now()))

    async def ExtendConnection(self, request, context):
        parts = names.parse("connection", request.name, "name")
        row = await windows.extend_connection(
            self.store, self.clock, _actor(), parts["customer"], parts["system"], parts["connection"],
            _time(request.end_time, "end_time"), self.connection_types.get, validate_only=request.validate_only)
        return pb.ExtendConnectionResponse(connection=convert.window(row, self.clock.now()))

    async def GetConnection(self, request, context):
        parts = names.parse("connection", request.name, "name")
        row, _ = await windows.get_connection(self.store, parts["customer"], parts["system"], parts["connection"])
        return pb.GetConnectionResponse(connection=convert.window(row, self.clock.now()))

    async def ListConnections(self, request, context):
        parts = names.parse("system", request.parent, "parent")
        _enum("state", request.state, pb.ConnectionState, allow_unspecified=True)
        rows, token = await windows.list_connections(
            self.store, self.clock, parts["customer"], parts["system"], convert.window_state(request.state),
            page_size(request.page_size), request.page_token)
        now = self.clock.now()
        return pb.ListConnectionsResponse(connections=[convert.window(r, now) for r in rows],
                                          next_page_token=token)

    # --- service connector -------------------------------------------------------------------------

    async def GetServiceConnector(self, request, context):
        parts = names.parse("connection", request.name, "name")
        issued = await service_connector.issue_connector(
            self.store, self.clock, self.signer, self.connection_types, self.relay_addresses, parts["customer"],
            parts["system"], parts["connection"])
        return pb.GetServiceConnectorResponse(service_connector=convert.service_connector(issued))

    async def VerifyServiceConnector(self, request, context):
        verdict = await service_connector.verify_connector(self.store, self.clock, self.signer, request.content)
        return pb.VerifyServiceConnectorResponse(valid=verdict.valid, ticket=verdict.ticket,
                                                 currently_usable=verdict.currently_usable, problem=verdict.problem)

    # --- relay sessions ----------------------------------------------------------------------------

    async def ListSessions(self, request, context):
        parts = names.parse("system", request.parent, "parent")
        _enum("state", request.state, pb.SessionState, allow_unspecified=True)
        window = names.parse_optional("connection", request.connection, "connection")
        if window is not None and names.parent_system(window) != request.parent:
            raise InvalidArgument("connection", f"must be a connection of {request.parent}")
        rows, token = await sessions.list_sessions(
            self.store, _actor(), parts["customer"], parts["system"], convert.session_state(request.state),
            window["connection"] if window else None, page_size(request.page_size), request.page_token)
        return pb.ListSessionsResponse(sessions=[convert.session(r) for r in rows], next_page_token=token)

    async def GetSession(self, request, context):
        parts = names.parse("session", request.name, "name")
        row = await sessions.get_session(self.store, _actor(), parts["customer"], parts["system"], parts["session"])
        return pb.GetSessionResponse(session=convert.session(row))

    async def TerminateSession(self, request, context):
        parts = names.parse("session", request.name, "name")
        row = await sessions.terminate_session(self.store, _actor(), parts["customer"], parts["system"],
                                               parts["session"])
        return pb.TerminateSessionResponse(session=convert.session(row))

    # --- incidents ---------------------------------------------------------------------------------

    async def CreateIncident(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        system = names.parse("system", request.incident.system, "incident.system")
        fields = IncidentFields(system["system"], request.incident.title, request.incident.description,
                                convert.priority(request.incident.priority))
        row = await incidents.create_incident(self.store, self.clock, _actor(), customer, fields)
        return pb.CreateIncidentResponse(incident=convert.incident(row))

    async def GetIncident(self, request, context):
        parts = names.parse("incident", request.name, "name")
        row = await incidents.get_incident(self.store, parts["customer"], parts["incident"])
        return pb.GetIncidentResponse(incident=convert.incident(row))

    async def ListIncidents(self, request, context):
        customer = names.parse("customer", request.parent, "parent")["customer"]
        _enum("status", request.status, pb.IncidentStatus, allow_unspecified=True)
        system = names.parse_optional("system", request.system, "system")
        rows, token = await incidents.list_incidents(
            self.store, customer, convert.incident_status(request.status), system["system"] if system else None,
            page_size(request.page_size), request.page_token)
        return pb.ListIncidentsResponse(incidents=[convert.incident(r) for r in rows], next_page_token=token)

    async def UpdateIncidentStatus(self, request, context):
        parts = names.parse("incident", request.name, "name")
        _enum("status", request.status, pb.IncidentStatus, allow_unspecified=False)
        row = await self.workflow.update_status(_actor(), parts["customer"], parts["incident"],
                                                convert.incident_status(request.status), request.etag)
        return pb.UpdateIncidentStatusResponse(incident=convert.incident(row))

    async def AssignProcessor(self, request, context):
        parts = names.parse("incident", request.name, "name")
        processor = names.parse_optional("user", request.processor, "processor")
        row = await self.workflow.assign_processor(_actor(), parts["customer"], parts["incident"],
                                                   names.user(processor["user"]) if processor else "")
        return pb.AssignProcessorResponse(incident=convert.incident(row))

    # --- events ------------------------------------------------------------------------------------

    async def WatchEvents(self, request, context):
        await self.events.serve(request, context)
