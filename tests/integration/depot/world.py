"""Shared setup of the depot's integration tests (its fixture `world` is in conftest.py): a customer with one
system, a user of every kind the depot's rules name, engineers with and without an in-process incident, and
helpers."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from remotesupport.connections.v1 import connections_pb2 as cp
from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import chain
from services.depot.settings import DepotSettings
from services.kit.clock import as_utc
from services.kit.db import sync_url
from services.kit.validate import to_timestamp

SYSTEM_USER = dp.LOGON_DATA_KIND_SYSTEM_USER
SAPROUTER = dp.LOGON_DATA_KIND_SAPROUTER_PASSWORD
SERVER_OS = dp.LOGON_DATA_KIND_SERVER_OS_USER
DATABASE = dp.LOGON_DATA_KIND_DATABASE_USER
OTHER = dp.LOGON_DATA_KIND_OTHER

PRINCIPALS = ("creator", "other_edit_my", "edit_all", "other_customer", "assigned_engineer",
              "unassigned_engineer", "engineer_outside_view", "platform_admin")


@dataclass
class World:
    suite: object
    customer: str
    system: str
    ops: str  # token of a user who registers systems and reports incidents (no logon-data authorization)
    tokens: dict[str, str] = field(default_factory=dict)  # principal -> token
    users: dict[str, str] = field(default_factory=dict)  # principal -> users/...
    incident: str = ""  # in process with assigned_engineer as processor, no restricted view
    view_incident: str = ""  # in process with engineer_outside_view as processor, with a restricted view
    other_system: str = ""

    @property
    def depot(self):
        return self.suite.stub("depot")

    @property
    def connections(self):
        return self.suite.stub("connections")

    def md(self, principal: str):
        return self.suite.md(self.tokens[principal])

    def expire_in(self, **delta: float):
        return to_timestamp(self.suite.clock.now() + dt.timedelta(**delta))

    async def create(self, principal: str = "creator", *, kind: int = SYSTEM_USER, secret: str = "Init1al-Secret!",
                     system: str | None = None, **values) -> dp.LogonData:
        """Create an entry (a system user with client 001 unless told otherwise), expiring in 30 days."""
        values.setdefault("expire_time", self.expire_in(days=30))
        if kind == SYSTEM_USER:
            values.setdefault("client", "001")
        if kind != SAPROUTER:
            values.setdefault("user_name", "SUPPORT1")
        response = await self.depot.CreateLogonData(dp.CreateLogonDataRequest(
            parent=system or self.system, logon_data=dp.LogonData(kind=kind, **values), secret=secret),
            metadata=self.md(principal))
        return response.logon_data

    async def reveal(self, principal: str, name: str, reason: str = "") -> dp.RevealLogonDataResponse:
        return await self.depot.RevealLogonData(dp.RevealLogonDataRequest(name=name, reason=reason),
                                                metadata=self.md(principal))

    async def get(self, principal: str, name: str) -> dp.LogonData:
        return (await self.depot.GetLogonData(dp.GetLogonDataRequest(name=name), metadata=self.md(principal))
                ).logon_data

    async def list(self, principal: str, **kw) -> list[dp.LogonData]:
        out, token = [], ""
        while True:
            page = await self.depot.ListLogonData(dp.ListLogonDataRequest(parent=self.system, page_token=token, **kw),
                                                  metadata=self.md(principal))
            out.extend(page.logon_data)
            token = page.next_page_token
            if not token:
                return out

    async def update(self, principal: str, entry: dp.LogonData, paths: list[str], secret: str = "",
                     etag: str | None = None, **values) -> dp.LogonData:
        msg = dp.LogonData(name=entry.name, etag=entry.etag if etag is None else etag, **values)
        request = dp.UpdateLogonDataRequest(logon_data=msg, secret=secret)
        request.update_mask.paths.extend(paths)
        return (await self.depot.UpdateLogonData(request, metadata=self.md(principal))).logon_data

    async def set_view(self, principal: str, incident: str, entries: list[str],
                       system: str | None = None) -> dp.RestrictedView:
        response = await self.depot.SetRestrictedView(dp.SetRestrictedViewRequest(restricted_view=dp.RestrictedView(
            name=self.view_name(incident, system), logon_data=entries)), metadata=self.md(principal))
        return response.restricted_view

    def view_name(self, incident: str, system: str | None = None) -> str:
        return f"{system or self.system}/restrictedViews/{incident.rsplit('/', 1)[1]}"

    async def events(self, **filters) -> list[dp.LogEvent]:
        out, token = [], ""
        while True:
            page = await self.depot.ListLogEvents(dp.ListLogEventsRequest(
                parent=f"customers/{self.customer}", page_token=token, page_size=1000, **filters),
                metadata=self.md("edit_all"))
            out.extend(page.events)
            token = page.next_page_token
            if not token:
                return out

    async def new_incident(self, system: str | None = None) -> str:
        response = await self.connections.CreateIncident(cp.CreateIncidentRequest(
            parent=f"customers/{self.customer}",
            incident=cp.Incident(system=system or self.system, title="Cannot post invoices",
                                 priority=cp.INCIDENT_PRIORITY_HIGH)), metadata=self.suite.md(self.ops))
        return response.incident.name

    async def assign(self, incident: str, engineer: str) -> None:
        """The engineer takes the incident: it is in process at the vendor with them as processor."""
        await self.connections.AssignProcessor(cp.AssignProcessorRequest(name=incident), metadata=self.md(engineer))

    async def hand_back(self, incident: str, processor: str) -> None:
        """The processor sends the incident to the customer: its support assignment ends."""
        await self.connections.UpdateIncidentStatus(cp.UpdateIncidentStatusRequest(
            name=incident, status=cp.INCIDENT_STATUS_CUSTOMER_ACTION), metadata=self.md(processor))

    async def take_back(self, incident: str) -> None:
        """The customer sends the incident back to the vendor: its processor's assignment returns."""
        await self.connections.UpdateIncidentStatus(cp.UpdateIncidentStatusRequest(
            name=incident, status=cp.INCIDENT_STATUS_IN_PROCESS_AT_VENDOR), metadata=self.suite.md(self.ops))


async def build_world(suite) -> World:
    customer = await suite.new_customer()
    _, ops = await suite.new_user(customer, ["MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS"])
    world = World(suite, customer, await suite.new_system(customer, ops), ops)
    world.other_system = await suite.new_system(customer, ops, sid="QAS")
    for principal, grants in (("creator", ["EDIT_MY_LOGIN_DATA"]), ("other_edit_my", ["EDIT_MY_LOGIN_DATA"]),
                              ("edit_all", ["EDIT_ALL_LOGIN_DATA"]), ("no_logon_rights", ["CREATE_INCIDENTS"])):
        world.users[principal], world.tokens[principal] = await suite.new_user(customer, grants)
    other = await suite.new_customer()
    world.users["other_customer"], world.tokens["other_customer"] = await suite.new_user(
        other, ["EDIT_ALL_LOGIN_DATA", "EDIT_MY_LOGIN_DATA"])
    for principal in ("assigned_engineer", "unassigned_engineer", "engineer_outside_view"):
        world.users[principal], world.tokens[principal] = await suite.new_engineer()
    world.users["platform_admin"], world.tokens["platform_admin"] = "users/admin", suite.admin_token
    world.incident = await world.new_incident()
    await world.assign(world.incident, "assigned_engineer")
    world.view_incident = await world.new_incident()
    await world.assign(world.view_incident, "engineer_outside_view")
    return world


async def restart_depot(suite, **settings) -> None:
    """Restart the depot on the same database and master key, with background work off (tests drive the sweep
    and re-wrapping by hand) and the given settings."""
    base = DepotSettings.from_env(suite.config("depot"))
    await suite.stop_service("depot")
    await suite.start_service("depot", settings=dataclasses.replace(base, **{"background": False, **settings}))


def app(suite):
    return suite.running["depot"].app


_engines: dict[str, Engine] = {}


def dispose_sql_engine(suite) -> None:
    """Close the engine `sql` opened on the suite's depot database, if any."""
    engine = _engines.pop(suite.db_url["depot"], None)
    if engine is not None:
        engine.dispose()


def sql(suite, statement: str, **params):
    """Run SQL on the depot's database directly, as someone with database access (an attacker, or a test)."""
    url = suite.db_url["depot"]
    engine = _engines.get(url) or _engines.setdefault(url, create_engine(sync_url(url)))
    with engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return result.all() if result.returns_rows else None


@contextlib.contextmanager
def attacker(world: World):
    """Someone with full database rights, who first removes the append-only guard (and puts it back)."""
    guards = ("update", "delete")
    if world.suite.backend == "sqlite":
        for verb in guards:
            sql(world.suite, f"DROP TRIGGER log_events_no_{verb}")
    else:
        for verb in guards:
            sql(world.suite, f"DROP TRIGGER log_events_no_{verb} ON log_events")
    try:
        yield lambda statement, **params: sql(world.suite, statement, **params)
    finally:
        for verb in guards:
            if world.suite.backend == "sqlite":
                sql(world.suite, f"CREATE TRIGGER log_events_no_{verb} BEFORE {verb.upper()} ON log_events "
                                 "BEGIN SELECT RAISE(ABORT, 'the depot log is append-only'); END")
            else:
                sql(world.suite, f"CREATE TRIGGER log_events_no_{verb} BEFORE {verb.upper()} ON log_events "
                                 "FOR EACH ROW EXECUTE FUNCTION log_events_append_only()")


def stored_event(row, **changes) -> SimpleNamespace:
    """A log_events row as chain.link reads it (its time as an aware datetime on both backends), with `changes`."""
    when = row.event_time if isinstance(row.event_time, dt.datetime) else dt.datetime.fromisoformat(row.event_time)
    return SimpleNamespace(**{**row._mapping, "event_time": as_utc(when), **changes})


def relink(run, customer: str, first: int, **changes) -> None:
    """Change event `first`, then recompute every hash from it to the newest and move the head's sequence and
    hash along, as an attacker with full rights would; the head's seal stays the depot's old one."""
    rows = run("SELECT * FROM log_events WHERE customer = :c AND sequence >= :s ORDER BY sequence", c=customer,
               s=first)
    previous = rows[0].previous_hash
    for index, row in enumerate(rows):
        event = stored_event(row, **(changes if index == 0 else {}), previous_hash=previous)
        previous = chain.link(previous, event)
        run("UPDATE log_events SET detail = :d, previous_hash = :p, hash = :h WHERE customer = :c AND sequence = :s",
            d=event.detail, p=event.previous_hash, h=previous, c=customer, s=row.sequence)
    run("UPDATE log_heads SET last_hash = :h WHERE customer = :c", h=previous, c=customer)


def entry_id(name: str) -> str:
    return name.rsplit("/", 1)[1]


async def fresh_customer(world: World) -> World:
    """Another customer with its own system, EDIT_ALL and EDIT_MY users: a log chain of its own, counted from 1."""
    suite = world.suite
    customer = await suite.new_customer()
    _, ops = await suite.new_user(customer, ["MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS"])
    other = World(suite, customer, await suite.new_system(customer, ops), ops)
    for principal, grant in (("edit_all", "EDIT_ALL_LOGIN_DATA"), ("creator", "EDIT_MY_LOGIN_DATA"),
                             ("other_edit_my", "EDIT_MY_LOGIN_DATA")):
        other.users[principal], other.tokens[principal] = await suite.new_user(customer, [grant])
    return other
