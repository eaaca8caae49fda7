"""Shared setup of the connections service's integration tests (its fixture `world` is in conftest.py): a customer
with a user per authorization and a user with none, a user of another customer holding every
authorization, a support engineer who takes incidents and one who never does, the platform admin; a system with SSH set up, an open window and a
new incident; and helpers."""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field

from remotesupport.connections.v1 import connections_pb2 as cp
from services.kit.validate import to_timestamp

ALL = ["OPEN_REMOTE_CONNECTIONS", "MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS"]
GRANTS = {"maintainer": ["MAINTAIN_SYSTEM_DATA"], "opener": ["OPEN_REMOTE_CONNECTIONS"],
          "reporter": ["CREATE_INCIDENTS"], "member": []}
HOUR = dt.timedelta(hours=1)
_sids = (f"{a}{b}{c}" for a, b, c in itertools.product("QRTUVWXYZ", "ABCDEFGHJK", "0123456789"))


@dataclass
class World:
    suite: object
    customer: str = ""
    other_customer: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # principal -> token
    users: dict[str, str] = field(default_factory=dict)  # principal -> users/...
    system: str = ""
    window: str = ""
    incident: str = ""
    _slots: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def conn(self):
        return self.suite.stub("connections")

    def md(self, principal: str):
        return self.suite.md(self.tokens[principal])

    async def call(self, method: str, request, principal: str):
        """The method's response (of a server stream: its first response, and the stream is cancelled)."""
        call = getattr(self.conn, method)(request, metadata=self.md(principal))
        if not cp.DESCRIPTOR.services_by_name["ConnectionsService"].methods_by_name[method].server_streaming:
            return await call
        try:
            async for response in call:
                return response
        finally:
            call.cancel()

    def at(self, delta: dt.timedelta):
        return to_timestamp(self.suite.clock.now() + delta)

    async def new_system(self, route: str = "/H/saprouter.example.com/S/3299/H/sapprd01") -> str:
        response = await self.call("CreateSystem", cp.CreateSystemRequest(
            parent=f"customers/{self.customer}", system=cp.System(
                installation_number="20012345", system_id=next(_sids), system_number=str(next(self._slots) + 7000),
                description="ERP", saprouter_route=route)), "maintainer")
        return response.system.name

    async def set_up(self, system: str, code: str = "SSH", parameters: dict[str, str] | None = None
                     ) -> cp.ConnectionSetup:
        if parameters is None:
            parameters = {"host": "sapprd01.example.com"} if code == "SSH" else {}
        response = await self.call("SetUpConnection", cp.SetUpConnectionRequest(
            parent=system, connection_type=f"connectionTypes/{code}", parameters=parameters), "opener")
        return response.connection_setup

    async def open(self, system: str | None = None, start: dt.timedelta | None = None,
                   length: dt.timedelta = HOUR, code: str = "SSH") -> cp.Connection:
        """A window of `system` (the shared one); without `start`, in a free later slot."""
        if start is None:
            start = next(self._slots) * 2 * HOUR
        request = cp.OpenConnectionRequest(parent=system or self.system, connection_type=f"connectionTypes/{code}",
                                           end_time=self.at(start + length), reason="analysis")
        if start:
            request.start_time.CopyFrom(self.at(start))
        return (await self.call("OpenConnection", request, "opener")).connection

    async def new_incident(self, system: str | None = None) -> cp.Incident:
        response = await self.call("CreateIncident", cp.CreateIncidentRequest(
            parent=f"customers/{self.customer}", incident=cp.Incident(
                system=system or self.system, title="Short dumps in billing", description="since the upgrade",
                priority=cp.INCIDENT_PRIORITY_HIGH)), "reporter")
        return response.incident


async def build_world(suite) -> World:
    world = World(suite)
    world.customer = await suite.new_customer()
    world.other_customer = await suite.new_customer()
    for principal, grants in GRANTS.items():
        world.users[principal], world.tokens[principal] = await suite.new_user(world.customer, grants)
    world.users["other"], world.tokens["other"] = await suite.new_user(world.other_customer, ALL)
    world.users["engineer"], world.tokens["engineer"] = await suite.new_engineer()
    world.users["unassigned"], world.tokens["unassigned"] = await suite.new_engineer()  # never processes one
    world.tokens["admin"] = suite.admin_token
    world.system = await world.new_system()
    await world.set_up(world.system)
    world.window = (await world.open(start=dt.timedelta(0), length=2 * HOUR)).name
    world.incident = (await world.new_incident()).name
    return world
