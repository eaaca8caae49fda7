"""Shared setup of the relay's integration tests: authz, connections and a relay in-process (one suite per
module and backend), a TCP echo server on loopback as the customer's system, and a customer whose system has
an SSH set-up pointing at it, an open window, its connector file and an incident in process with an engineer."""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from dataclasses import dataclass, field

import grpc

from remotesupport.connections.v1 import connections_pb2 as cp
from services.kit.validate import to_timestamp
from tests.integration.relay.peers import TestConnector, Tunnel

HOUR = dt.timedelta(hours=1)
_sids = (f"{a}{b}{c}" for a, b, c in itertools.product("LMNP", "ABCDEFGHJK", "0123456789"))
_numbers = itertools.count(8100)


class EchoServer:
    """The customer's system: a TCP server that sends back what it receives, counting its connections."""

    def __init__(self) -> None:
        self.accepted = 0
        self.received = 0
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class Line:
    """One system's line: its window, connector file and the engineer processing its incident."""

    system: str
    window: str
    incident: str
    content: bytes


@dataclass
class RelayWorld:
    suite: object
    echo: EchoServer
    echo_port: int = 0
    customer: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    connectors: list[TestConnector] = field(default_factory=list)

    @property
    def relay_channel(self) -> grpc.aio.Channel:
        return self.suite.channels["relay"]

    async def call(self, method: str, request, principal: str):
        return await getattr(self.suite.stub("connections"), method)(request, metadata=self.suite.md(
            self.tokens[principal]))

    def at(self, delta: dt.timedelta):
        return to_timestamp(self.suite.clock.now() + delta)

    async def new_line(self, *, parameters: dict[str, str] | None = None, code: str = "SSH",
                       engineer: str = "engineer", length: dt.timedelta = 2 * HOUR) -> Line:
        """A new system with a set-up of `code` (SSH to the echo server by default), a window open now, the
        window's connector file, and an incident taken by `engineer`."""
        system = (await self.call("CreateSystem", cp.CreateSystemRequest(
            parent=f"customers/{self.customer}", system=cp.System(
                installation_number="20012345", system_id=next(_sids), system_number=str(next(_numbers)),
                description="ERP")), "maintainer")).system.name
        await self.call("SetUpConnection", cp.SetUpConnectionRequest(
            parent=system, connection_type=f"connectionTypes/{code}",
            parameters=parameters if parameters is not None else {"host": "127.0.0.1", "port": str(self.echo_port)}),
            "opener")
        window = (await self.call("OpenConnection", cp.OpenConnectionRequest(
            parent=system, connection_type=f"connectionTypes/{code}", end_time=self.at(length),
            reason="analysis"), "opener")).connection.name
        content = (await self.call("GetServiceConnector", cp.GetServiceConnectorRequest(name=window),
                                   "opener")).service_connector.content
        incident = (await self.call("CreateIncident", cp.CreateIncidentRequest(
            parent=f"customers/{self.customer}", incident=cp.Incident(
                system=system, title="Short dumps", description="since the upgrade",
                priority=cp.INCIDENT_PRIORITY_HIGH)), "reporter")).incident.name
        if engineer:
            await self.call("AssignProcessor", cp.AssignProcessorRequest(name=incident), engineer)
        return Line(system, window, incident, content)

    async def attached(self, line: Line) -> TestConnector:
        connector = TestConnector(self.relay_channel, line.content)
        await connector.attach()
        self.connectors.append(connector)
        return connector

    def tunnel(self, line: Line, principal: str = "engineer", incident: str = "") -> Tunnel:
        return Tunnel(self.relay_channel, self.tokens[principal], line.window, incident)

    async def session(self, name: str, principal: str = "opener") -> cp.Session:
        return (await self.call("GetSession", cp.GetSessionRequest(name=name), principal)).session

    async def sessions(self, line: Line, principal: str = "opener") -> list[cp.Session]:
        return list((await self.call("ListSessions", cp.ListSessionsRequest(parent=line.system),
                                     principal)).sessions)


async def build_world(suite) -> RelayWorld:
    world = RelayWorld(suite, EchoServer())
    world.echo_port = await world.echo.start()
    world.customer = await suite.new_customer()
    for principal, grants in {"maintainer": ["MAINTAIN_SYSTEM_DATA"], "opener": ["OPEN_REMOTE_CONNECTIONS"],
                              "reporter": ["CREATE_INCIDENTS"], "member": []}.items():
        world.users[principal], world.tokens[principal] = await suite.new_user(world.customer, grants)
    other = await suite.new_customer()
    world.users["other"], world.tokens["other"] = await suite.new_user(other, ["OPEN_REMOTE_CONNECTIONS"])
    for engineer in ("engineer", "colleague", "unassigned"):
        world.users[engineer], world.tokens[engineer] = await suite.new_engineer()
    world.tokens["admin"] = suite.admin_token
    return world
