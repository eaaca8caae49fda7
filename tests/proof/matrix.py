"""Row 10's world and its reference table: who may call which method on what, written from DESIGN.md §5 and
docs/SERVICE_GUIDE.md — independently of services/authz/policy.py — and checked by real calls.

Every request is built so that, once authorized, it either succeeds without changing what the table depends
on (idempotent updates, reads) or fails for a reason found only after authorization (a stale etag, a time
frame that overlaps an open window, an object that exists already, an invalid field). So the answer's code
tells the decision: PERMISSION_DENIED = denied, UNAUTHENTICATED = no valid token, anything else = allowed
(INTERNAL, UNKNOWN, UNAVAILABLE and DEADLINE_EXCEEDED are errors, never a decision).

Separation of duties (authz.proto): the platform admin creates a customer and its first user administrator
only, and grants nothing but that first USER_ADMIN; nobody grants to itself; a password and an e-mail address
are changed by the user itself only; ResetPassword mails a code to the user (so it is aimed at users nobody's
token depends on, and at principals that have no password to reset); SetPassword is public."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Callable

import grpc
from google.protobuf import duration_pb2

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.gateway.v1 import gateway_pb2 as gw
from services.connections.tables import SessionRow
from services.kit.principals import CUSTOMER_USER, SUPPORT_ENGINEER
from tests.harness import email_of
from tests.proof.world import SAPROUTER, SERVER_OS, SYSTEM_USER, Actors, Principal, md, ts

CU, ENG, ADMIN, SVC, BAD = "customer user", "support engineer", "platform admin", "service account", "no valid token"
OPEN, MAINTAIN, INCIDENTS, EDIT_MY, EDIT_ALL, USER_ADMIN = (
    "OPEN_REMOTE_CONNECTIONS", "MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS", "EDIT_MY_LOGIN_DATA",
    "EDIT_ALL_LOGIN_DATA", "USER_ADMIN")
ALL = (OPEN, MAINTAIN, INCIDENTS, EDIT_MY, EDIT_ALL, USER_ADMIN)
I1, I2 = "20010001", "20010002"
ALLOW, DENY, UNAUTH, ERROR = "allowed", "denied", "unauthenticated", "error"
R3 = "connectionTypes/R3_SUPPORT"
R3_PARAMETERS = {"host": "app01", "instance_number": "00"}


@dataclass
class Who:
    """A principal of the matrix and what the reference table needs to know about it."""

    key: str
    kind: str
    token: str = ""
    user: str = ""
    customer: str = ""  # "A" or "B" for customer users
    grants: dict[str, frozenset[str]] = field(default_factory=dict)  # authorization -> installations (empty: all)
    incidents: tuple[str, ...] = ()  # an engineer's incidents in process (keys of World.incidents)
    service: str = ""  # a service account's service

    @property
    def md(self):
        return md(self.token) if self.token else ()


@dataclass
class Target:
    key: str
    customer: str  # "A"/"B"
    name: str
    system: str = ""  # key of World.systems
    installation: str = ""
    owner: str = ""  # principal key of an entry's creator
    kind: int = 0
    restricted: str = ""  # incident key an entry is restricted to
    extra: dict = field(default_factory=dict)


class World:
    def __init__(self) -> None:
        self.customers: dict[str, str] = {}  # "A" -> number
        self.who: dict[str, Who] = {}
        self.systems: dict[str, Target] = {}
        self.entries: dict[str, Target] = {}
        self.incidents: dict[str, Target] = {}  # key -> incident (system = system key)
        self.views: dict[str, frozenset[str]] = {}  # incident key -> entry keys its restricted view shows
        self.windows: dict[str, Target] = {}
        self.sessions: dict[str, Target] = {}  # relay sessions (owner = the principal key that opened one)
        self.display: dict[str, str] = {}  # users/... -> display name
        self.reset: dict[str, Target] = {}  # users whose password ResetPassword may end: no principal's token
        self.webhooks: dict[str, Target] = {}  # "A": customer A's webhook, with deliveries (to a closed port)

    def customer_name(self, key: str) -> str:
        return f"customers/{self.customers[key]}"


# --- building the world through the real services -----------------------------------------------------------
def build(actors: Actors, service_token: Callable[[str], str]) -> World:
    w = World()
    for key in ("A", "B"):
        w.customers[key] = actors.customer()

    def customer_user(key, customer, grants: dict[str, tuple[str, ...]]):
        user = actors.user(w.customers[customer], grants)  # by the customer's user administrator (four eyes)
        w.who[key] = Who(key, CU, user.token, user.name, customer,
                         {name: frozenset(inst) for name, inst in grants.items()})
        w.display[user.name] = f"User {user.user_id}"

    customer_user("A:none", "A", {})
    for name in ALL:
        customer_user(f"A:{name}", "A", {name: ()})
    customer_user("A:EDIT_MY@I1", "A", {EDIT_MY: (I1,)})
    customer_user("A:EDIT_ALL@I2", "A", {EDIT_ALL: (I2,)})
    customer_user("A:MAINTAIN@I1", "A", {MAINTAIN: (I1,)})
    customer_user("A:OPEN@I1", "A", {OPEN: (I1,)})
    customer_user("A:all", "A", {name: () for name in ALL})
    customer_user("B:all", "B", {name: () for name in ALL})
    customer_user("B:none", "B", {})
    a, b = w.who["A:all"], w.who["B:all"]
    a_p, b_p = Principal(a.user, a.token), Principal(b.user, b.token)
    for _ in range(2):  # two webhooks of A (a list of two pages), the entries created below their deliveries
        hook = actors.depot.CreateWebhook(dp.CreateWebhookRequest(parent=w.customer_name("A"), webhook=dp.Webhook(
            url="http://127.0.0.1:9/matrix", event_types=[ep.EVENT_TYPE_LOGON_DATA_CREATED])),
            metadata=a_p.md).webhook
        w.webhooks["A"] = Target("A", "A", hook.name)

    for key, customer, by, installation in (("S1", "A", a_p, I1), ("S2", "A", a_p, I2), ("SB", "B", b_p, I1)):
        name = actors.system(w.customers[customer], by, installation=installation)
        description = actors.conn.GetSystem(cn.GetSystemRequest(name=name), metadata=by.md).system.description
        w.systems[key] = Target(key, customer, name, key, installation, extra={"description": description})
        actors.conn.SetUpConnection(cn.SetUpConnectionRequest(parent=name, connection_type=R3,
                                                              parameters=R3_PARAMETERS), metadata=by.md)
        now = actors.live.clock.now()
        opened = actors.conn.OpenConnection(cn.OpenConnectionRequest(
            parent=name, connection_type=R3, end_time=ts(now + dt.timedelta(days=13)), reason="matrix"),
            metadata=by.md).connection
        w.windows[f"{key}:open"] = Target(f"{key}:open", customer, opened.name, key, installation)
    for key in ("S1", "SB"):  # a closed window (of another type: windows of one type never overlap)
        system = w.systems[key]
        by = a_p if system.customer == "A" else b_p
        actors.conn.SetUpConnection(cn.SetUpConnectionRequest(parent=system.name, connection_type=HTTP,
                                                              parameters=HTTP_PARAMETERS), metadata=by.md)
        opened = actors.conn.OpenConnection(cn.OpenConnectionRequest(
            parent=system.name, connection_type=HTTP, end_time=ts(actors.live.clock.now() + dt.timedelta(hours=5)),
            reason="matrix"), metadata=by.md).connection
        actors.conn.CloseConnection(cn.CloseConnectionRequest(name=opened.name), metadata=by.md)
        w.windows[f"{key}:closed"] = Target(f"{key}:closed", system.customer, opened.name, key, system.installation)

    def incident(key, system_key, by):
        system = w.systems[system_key]
        name = actors.incident(system.name, by)
        w.incidents[key] = Target(key, system.customer, name, system_key, system.installation)
        return name

    for key, engineer_key, system_key in (("X1", "E:assigned", "S1"), ("X2", "E:view", "S1"), ("X3", "E:S2", "S2")):
        engineer = actors.engineer()
        name = incident(key, system_key, a_p)
        actors.assign(name, engineer)
        w.who[engineer_key] = Who(engineer_key, ENG, engineer.token, engineer.name, incidents=(key,))
        w.display[engineer.name] = f"Engineer {engineer.user_id}"
    engineer = actors.engineer()
    w.who["E:none"] = Who("E:none", ENG, engineer.token, engineer.name)
    w.display[engineer.name] = f"Engineer {engineer.user_id}"
    for key, system_key, by in (("XC", "S1", a_p), ("XB", "SB", b_p), ("XBC", "SB", b_p)):
        name = incident(key, system_key, by)
        if key in ("XC", "XBC"):
            actors.set_status(name, cn.INCIDENT_STATUS_CONFIRMED, by)

    def session(key, system_key, owner_key, state):
        system = w.systems[system_key]
        name = actors.live.run(_record_session(actors.live, w.windows[f"{system_key}:open"].name, w.who[owner_key],
                                               state))
        w.sessions[key] = Target(key, system.customer, name, system_key, system.installation, owner_key)

    session("S1:E:assigned", "S1", "E:assigned", "ACTIVE")
    session("S1:E:view", "S1", "E:view", "REFUSED")
    session("S1:A:all", "S1", "A:all", "ENDED")
    session("S2:E:S2", "S2", "E:S2", "ACTIVE")
    session("S2:E:none", "S2", "E:none", "ENDED")  # an engineer's own session outlives its assignment
    session("SB:B:all", "SB", "B:all", "ACTIVE")
    w.sessions["S1:missing"] = Target("S1:missing", "A", f"{w.systems['S1'].name}/sessions/no-such-session", "S1", I1)

    def entry(key, system_key, owner_key, kind=SYSTEM_USER, restricted=""):
        system = w.systems[system_key]
        owner = w.who[owner_key]
        extra = {"restricted_incident": w.incidents[restricted].name} if restricted else {}
        created = actors.entry(Principal(owner.user, owner.token), system.name, kind=kind, secret=f"matrix-{key}",
                               **extra)
        w.entries[key] = Target(key, system.customer, created.name, system_key, system.installation, owner_key, kind,
                                restricted)

    entry("mine", "S1", "A:EDIT_MY_LOGIN_DATA")
    entry("mine_scoped", "S1", "A:EDIT_MY@I1")
    entry("theirs", "S1", "A:EDIT_ALL_LOGIN_DATA")
    entry("router", "S1", "A:all", kind=SAPROUTER)
    entry("restricted", "S1", "A:all", restricted="X1")
    entry("on_S2", "S2", "A:all", kind=SERVER_OS)
    entry("on_B", "SB", "B:all")
    actors.depot.SetRestrictedView(dp.SetRestrictedViewRequest(restricted_view=dp.RestrictedView(
        name=view_name(w, "S1", "X2"), logon_data=[w.entries["theirs"].name])), metadata=a_p.md)
    w.views["X2"] = frozenset({"theirs"})

    w.who["admin"] = Who("admin", ADMIN, actors.admin.token, "users/admin")
    w.display["users/admin"] = "Platform administrator"
    for service in ("depot", "connections", "gateway"):
        w.who[f"svc:{service}"] = Who(f"svc:{service}", SVC, service_token(service), f"users/svc-{service}",
                                      service=service)
        w.display[f"users/svc-{service}"] = f"{service} service"
    w.who["anon"] = Who("anon", BAD)
    w.who["garbage token"] = Who("garbage token", BAD, "rs_" + "x" * 43)
    revoked = actors.user(w.customers["A"], ["EDIT_ALL_LOGIN_DATA"])
    actors.authz.Logout(az.LogoutRequest(), metadata=revoked.md)
    w.who["logged out"] = Who("logged out", BAD, revoked.token, revoked.name)
    disabled = actors.user(w.customers["A"], ALL)
    update = az.UpdateUserRequest(user=az.User(name=disabled.name, disabled=True))
    update.update_mask.paths.append("disabled")
    actors.authz.UpdateUser(update, metadata=actors.customer_admin(w.customers["A"]).md)
    w.who["disabled user"] = Who("disabled user", BAD, disabled.token, disabled.name)
    for key, customer in (("A:reset", "A"), ("B:reset", "B")):
        user = actors.user(w.customers[customer], ["EDIT_MY_LOGIN_DATA"])
        w.reset[key] = Target(key, customer, user.name)
    w.reset["E:reset"] = Target("E:reset", "", actors.engineer().name)
    w.reset["platform admin"] = Target("platform admin", "", "users/admin")  # no address: FAILED_PRECONDITION
    w.reset["service account"] = Target("service account", "", "users/svc-depot")  # no password: the same
    return w


async def _record_session(live, window: str, principal: Who, state: str) -> str:
    """A relay session through `window` as the relay records one (the relay does not run in this suite: the row
    goes in through the connections service's own store); its name."""
    customer, number, window_id = window.split("/")[1::2]
    now = live.clock.now()
    row = SessionRow(id=uuid.uuid4().hex, customer=customer, system_number=number, window_id=window_id,
                     type_code=R3.removeprefix("connectionTypes/"), principal=principal.user,
                     principal_kind=SUPPORT_ENGINEER if principal.kind == ENG else CUSTOMER_USER, incident="",
                     target="app01:3200", relay_id="matrix", state=state, start_time=now - dt.timedelta(minutes=5),
                     end_time=None if state == "ACTIVE" else now, bytes_to_target=0, bytes_from_target=0,
                     end_reason="CLIENT_CLOSED" if state == "ENDED" else "",
                     refusal_reason="WINDOW_NOT_OPEN" if state == "REFUSED" else "", detail="", terminated_by="")
    async with live.suite.running["connections"].app.store.write() as uow:
        uow.add(row)
    return f"customers/{customer}/systems/{number}/sessions/{row.id}"


HTTP = "connectionTypes/HTTP_CONNECT_URL"
HTTP_PARAMETERS = {"url": "https://app01.example.com/"}


def view_name(w: World, system_key: str, incident_key: str) -> str:
    return f"{w.systems[system_key].name}/restrictedViews/{w.incidents[incident_key].name.rsplit('/', 1)[1]}"


# --- the reference table (DESIGN.md §5) ---------------------------------------------------------------------
def holds(p: Who, wanted, customer: str, installation: str = "") -> bool:
    """A customer user of `customer` holding one of `wanted`, granted for the whole customer or for the target's
    installation (an installation-scoped grant never covers a target without an installation)."""
    return p.kind == CU and p.customer == customer and any(
        name in p.grants and (not p.grants[name] or installation in p.grants[name]) for name in wanted)


def member(p: Who, customer: str) -> bool:
    return p.kind == CU and p.customer == customer


def assigned(w: World, p: Who, system_key: str) -> bool:
    return p.kind == ENG and any(w.incidents[i].system == system_key for i in p.incidents)


def sees(w: World, p: Who, entry: Target) -> bool:
    """An assigned engineer sees an entry through one of its incidents of the entry's system: an entry
    restricted to an incident only through that one; a system user only if that incident has no restricted view
    or the view lists it; other kinds regardless of views."""
    for incident in p.incidents:
        if w.incidents[incident].system != entry.system:
            continue
        if entry.restricted and entry.restricted != incident:
            continue
        if entry.kind == SYSTEM_USER and incident in w.views and entry.key not in w.views[incident]:
            continue
        return True
    return False


def own(w: World, p: Who, entry: Target) -> bool:
    return p.key == entry.owner


PUBLIC = frozenset({"authz.SetPassword"})  # the one-time code is the credential: no token is read


def decide(w: World, p: Who, method: str, t: Target | None) -> str:
    """The reference decision for principal `p` calling `method` on target `t`."""
    if method in PUBLIC:
        return ALLOW
    if p.kind == BAD:
        return UNAUTH
    rule = REFERENCE[method]
    return ALLOW if rule(w, p, t) else DENY


def _entry_read(w, p, t):
    return holds(p, (EDIT_MY, EDIT_ALL), t.customer, t.installation) or (assigned(w, p, t.system) and sees(w, p, t))


REFERENCE: dict[str, Callable[[World, Who, Target | None], bool]] = {
    # depot: logon data
    "depot.CreateLogonData": lambda w, p, t: holds(p, (EDIT_MY, EDIT_ALL), t.customer, t.installation),
    "depot.GetLogonData": _entry_read,
    "depot.ListLogonData": lambda w, p, t: holds(p, (EDIT_MY, EDIT_ALL), t.customer, t.installation)
    or assigned(w, p, t.key),
    "depot.UpdateLogonData": lambda w, p, t: holds(p, (EDIT_ALL,), t.customer, t.installation)
    or (own(w, p, t) and holds(p, (EDIT_MY,), t.customer, t.installation))
    or (assigned(w, p, t.system) and sees(w, p, t)),
    "depot.UpdateLogonData secret": lambda w, p, t: holds(p, (EDIT_MY, EDIT_ALL), t.customer, t.installation)
    or (assigned(w, p, t.system) and sees(w, p, t)),
    "depot.DeleteLogonData": lambda w, p, t: holds(p, (EDIT_ALL,), t.customer, t.installation)
    or (own(w, p, t) and holds(p, (EDIT_MY,), t.customer, t.installation)),
    "depot.RevealLogonData": lambda w, p, t: holds(p, (EDIT_ALL,), t.customer, t.installation)
    or (own(w, p, t) and holds(p, (EDIT_MY,), t.customer, t.installation))
    or (assigned(w, p, t.system) and sees(w, p, t)),
    "depot.SetRestrictedView": lambda w, p, t: holds(p, (EDIT_ALL,), t.customer, t.installation),
    "depot.GetRestrictedView": lambda w, p, t: holds(p, (EDIT_MY, EDIT_ALL), t.customer, t.installation),
    "depot.ListLogEvents": lambda w, p, t: holds(p, (EDIT_MY, EDIT_ALL), t.customer),
    "depot.VerifyLog": lambda w, p, t: holds(p, (EDIT_MY, EDIT_ALL), t.customer),
    "depot.RotateKey": lambda w, p, t: p.kind == ADMIN,
    # webhooks: the customer's integration, its user administrators' to manage and to read
    "depot.CreateWebhook": lambda w, p, t: holds(p, (USER_ADMIN,), t.customer),
    "depot.GetWebhook": lambda w, p, t: holds(p, (USER_ADMIN,), t.customer),
    "depot.ListWebhooks": lambda w, p, t: holds(p, (USER_ADMIN,), t.customer),
    "depot.DeleteWebhook": lambda w, p, t: holds(p, (USER_ADMIN,), t.customer),
    "depot.ListWebhookDeliveries": lambda w, p, t: holds(p, (USER_ADMIN,), t.customer),
    "depot.RedeliverWebhookDelivery": lambda w, p, t: holds(p, (USER_ADMIN,), t.customer),
    "depot.GetKeyStatus": lambda w, p, t: p.kind == ADMIN,
    # connections
    "connections.ListConnectionTypes": lambda w, p, t: True,
    "connections.GetConnectionType": lambda w, p, t: True,
    "connections.VerifyServiceConnector": lambda w, p, t: True,
    "connections.CreateSystem": lambda w, p, t: holds(p, (MAINTAIN,), t.customer, t.installation),
    "connections.GetSystem": lambda w, p, t: member(p, t.customer) or assigned(w, p, t.key),
    "connections.ListSystems": lambda w, p, t: member(p, t.customer),
    "connections.UpdateSystem": lambda w, p, t: holds(p, (MAINTAIN,), t.customer, t.installation),
    "connections.DeleteSystem": lambda w, p, t: holds(p, (MAINTAIN,), t.customer, t.installation),
    "connections.SetUpConnection": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "connections.ListConnectionSetups": lambda w, p, t: member(p, t.customer) or assigned(w, p, t.key),
    "connections.DeleteConnectionSetup": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "connections.OpenConnection": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "connections.CloseConnection": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "connections.ExtendConnection": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "connections.GetConnection": lambda w, p, t: member(p, t.customer) or assigned(w, p, t.system),
    "connections.ListConnections": lambda w, p, t: member(p, t.customer) or assigned(w, p, t.key),
    "connections.GetServiceConnector": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    # relay sessions: the customer's members read them all; any support engineer only the sessions it opened
    # (another's, or one that does not exist, is PERMISSION_DENIED alike); terminating is OPEN_REMOTE_CONNECTIONS
    "connections.ListSessions": lambda w, p, t: member(p, t.customer) or p.kind == ENG,
    "connections.GetSession": lambda w, p, t: member(p, t.customer) or (p.kind == ENG and t.owner == p.key),
    "connections.TerminateSession": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "connections.CreateIncident": lambda w, p, t: holds(p, (INCIDENTS,), t.customer, t.installation),
    "connections.GetIncident": lambda w, p, t: member(p, t.customer) or p.kind == ENG,
    "connections.ListIncidents": lambda w, p, t: member(p, t.customer) or p.kind == ENG,
    "connections.UpdateIncidentStatus": lambda w, p, t: holds(p, (INCIDENTS,), t.customer, t.installation)
    or p.kind == ENG,
    "connections.AssignProcessor": lambda w, p, t: p.kind == ENG,
    # authz
    "authz.CreateCustomer": lambda w, p, t: p.kind == ADMIN,
    # the platform admin creates engineers, and a customer's users only while it has no user administrator
    # (every customer here has one); a user administrator its own customer's users
    "authz.CreateUser": lambda w, p, t: (p.kind == ADMIN and t.key == "engineer")
    or (t.key != "engineer" and holds(p, (USER_ADMIN,), t.customer)),
    "authz.GetUser": lambda w, p, t: p.kind == ADMIN or _self(p, t) or holds(p, (USER_ADMIN,), t.customer),
    "authz.ListUsers": lambda w, p, t: p.kind == ADMIN or holds(p, (USER_ADMIN,), t.customer),
    "authz.UpdateUser": lambda w, p, t: p.kind == ADMIN or _self(p, t) or holds(p, (USER_ADMIN,), t.customer),
    # the password and the address: the user itself only (the platform admin's own included), nobody else
    "authz.UpdateUser password": lambda w, p, t: _own(p, t),
    "authz.UpdateUser email": lambda w, p, t: _own(p, t),
    "authz.ResetPassword": lambda w, p, t: p.kind == ADMIN or holds(p, (USER_ADMIN,), t.customer),
    "authz.SetPassword": lambda w, p, t: True,
    # nobody grants to itself; the platform admin only a customer's first USER_ADMIN (no customer here lacks
    # one) - but a grant to an engineer is refused (FAILED_PRECONDITION) before who asks is looked at
    "authz.GrantAuthorization": lambda w, p, t: (p.kind == ADMIN and t.key == "E:none")
    or (holds(p, (USER_ADMIN,), t.customer) and p.user != t.name),
    # nothing is pending: whoever may approve grants of the user at all learns that (NOT_FOUND)
    "authz.ApproveAuthorization": lambda w, p, t: p.kind == ADMIN or holds(p, (USER_ADMIN,), t.customer),
    "authz.RevokeAuthorization": lambda w, p, t: p.kind == ADMIN or holds(p, (USER_ADMIN,), t.customer),
    "authz.ListAuthorizations": lambda w, p, t: p.kind == ADMIN or _self(p, t) or holds(p, (USER_ADMIN,), t.customer),
    "authz.CreateServiceToken": lambda w, p, t: p.kind == ADMIN,
    # a customer's identity log: its user administrators and the platform admin; the vendor side's (no
    # customer): the platform admin only
    "authz.ListIdentityEvents": lambda w, p, t: p.kind == ADMIN or holds(p, (USER_ADMIN,), t.customer),
    "authz.VerifyIdentityLog": lambda w, p, t: p.kind == ADMIN or holds(p, (USER_ADMIN,), t.customer),
    "authz.Check": lambda w, p, t: p.kind == SVC,
    "authz.CheckBulk": lambda w, p, t: p.kind == SVC,
    "authz.SetSupportAssignment": lambda w, p, t: p.kind == SVC and p.service == "connections",
    "authz.DeleteSupportAssignment": lambda w, p, t: p.kind == SVC and p.service == "connections",
    # which event mails one receives: one's own business; where they go: the two services that send them
    "authz.GetNotificationSettings": lambda w, p, t: _own(p, t),
    "authz.UpdateNotificationSettings": lambda w, p, t: _own(p, t),
    "authz.ResolveNotificationRecipients": lambda w, p, t: p.kind == SVC and p.service in ("depot", "connections"),
    # the gateway's own methods
    "gateway.PrepareRemoteAccess": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "gateway.EndRemoteAccess": lambda w, p, t: holds(p, (OPEN,), t.customer, t.installation),
    "gateway.GetSystemOverview": lambda w, p, t: member(p, t.customer) or assigned(w, p, t.key),
    # an incident's evidence holds its system's depot log: exactly the log's readers (ListLogEvents), for the
    # whole customer; the public key documents verify with: anyone with a valid token
    "gateway.ExportIncidentEvidence": lambda w, p, t: holds(p, (EDIT_MY, EDIT_ALL), t.customer),
    "gateway.GetEvidenceKey": lambda w, p, t: True,
}


def _self(p: Who, t: Target) -> bool:
    """A user may read and change itself (not a service account, which is no user of that kind)."""
    return (t.key == "self" or t.name == p.user) and p.kind in (CU, ENG)


def _own(p: Who, t: Target) -> bool:
    """The caller's own user, for what only the user itself changes (its password, its address)."""
    return _self(p, t) or (p.kind == ADMIN and t.key == "self")


# --- the methods: their targets and requests ----------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    key: str  # a key of REFERENCE
    service: str  # authz / depot / connections / gateway
    rpc: str
    targets: Callable[[World], list[Target]]
    request: Callable[[World, Who, Target | None, dt.datetime], object]

    @property
    def paths(self) -> tuple[str, ...]:
        return ("direct",) if self.service == "gateway" else ("direct", "via gateway")


def _users(w: World) -> list[Target]:
    out = [Target("self", "", "")]
    for key in ("A:EDIT_MY_LOGIN_DATA", "B:all", "E:none"):
        p = w.who[key]
        out.append(Target(key, p.customer, p.user))
    return out


def _customers(w: World) -> list[Target]:
    return [Target(key, key, w.customer_name(key)) for key in ("A", "B")]


def _webhooks(w: World) -> list[Target]:
    """Customer A's webhook, and one of B's that does not exist (an allowed caller learns NOT_FOUND)."""
    return [w.webhooks["A"], Target("B", "B", f"{w.customer_name('B')}/webhooks/nosuch")]


def _no_webhooks(w: World) -> list[Target]:
    """Webhooks of A and B that do not exist (to delete: A's own stays for the other rows)."""
    return [Target(key, key, f"{w.customer_name(key)}/webhooks/nosuch") for key in ("A", "B")]


def _logs(w: World) -> list[Target]:
    """The identity logs: customer A's and B's, and the vendor side's (parent empty)."""
    return _customers(w) + [Target("vendor", "", "")]


def _user_name(p: Who, t: Target) -> str:
    return p.user or "users/admin" if t.key == "self" else t.name


def _stale_update(name: str, paths, secret: str = "") -> dp.UpdateLogonDataRequest:
    request = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=name, etag="stale-etag"), secret=secret)
    request.update_mask.paths.extend(paths)
    return request


def methods() -> list[Method]:
    systems = lambda w: list(w.systems.values())  # noqa: E731
    entries = lambda w: list(w.entries.values())  # noqa: E731
    views = lambda w: [  # noqa: E731
        Target(f"{s}/{i}", w.systems[s].customer, view_name(w, s, i), s, w.systems[s].installation,
               extra={"entries": [w.entries[e].name for e in sorted(w.views.get(i, ()))]})
        for s, i in (("S1", "X2"), ("S1", "X1"), ("SB", "XB"))]
    windows = lambda w: list(w.windows.values())  # noqa: E731
    sessions = lambda w: list(w.sessions.values())  # noqa: E731
    closed = lambda w: [t for t in w.windows.values() if t.key.endswith(":closed")]  # noqa: E731
    opened = lambda w: [t for t in w.windows.values() if t.key.endswith(":open")]  # noqa: E731
    incidents = lambda w: [w.incidents[k] for k in ("X1", "XB")]  # noqa: E731
    confirmed = lambda w: [w.incidents[k] for k in ("XC", "XBC")]  # noqa: E731
    none = lambda w: [None]  # noqa: E731
    later = lambda now, **d: ts(now + dt.timedelta(**d))  # noqa: E731
    M = Method
    return [
        M("depot.CreateLogonData", "depot", "CreateLogonData", systems, lambda w, p, t, now: dp.CreateLogonDataRequest(
            parent=t.name, secret="matrix", logon_data=dp.LogonData(kind=SYSTEM_USER, client="001", user_name="U",
                                                                     expire_time=later(now, days=-1)))),
        M("depot.GetLogonData", "depot", "GetLogonData", entries,
          lambda w, p, t, now: dp.GetLogonDataRequest(name=t.name)),
        M("depot.ListLogonData", "depot", "ListLogonData", systems,
          lambda w, p, t, now: dp.ListLogonDataRequest(parent=t.name, page_size=2)),
        M("depot.UpdateLogonData", "depot", "UpdateLogonData", entries,
          lambda w, p, t, now: _stale_update(t.name, ["notes"])),
        M("depot.UpdateLogonData secret", "depot", "UpdateLogonData", entries,
          lambda w, p, t, now: _stale_update(t.name, ["secret"], "matrix-new")),
        M("depot.DeleteLogonData", "depot", "DeleteLogonData", entries,
          lambda w, p, t, now: dp.DeleteLogonDataRequest(name=t.name, etag="stale-etag")),
        M("depot.RevealLogonData", "depot", "RevealLogonData", entries,
          lambda w, p, t, now: dp.RevealLogonDataRequest(name=t.name, reason="matrix")),
        M("depot.SetRestrictedView", "depot", "SetRestrictedView", views,
          lambda w, p, t, now: dp.SetRestrictedViewRequest(restricted_view=dp.RestrictedView(
              name=t.name, logon_data=t.extra["entries"]))),
        M("depot.GetRestrictedView", "depot", "GetRestrictedView", views,
          lambda w, p, t, now: dp.GetRestrictedViewRequest(name=t.name)),
        M("depot.ListLogEvents", "depot", "ListLogEvents", _customers,
          lambda w, p, t, now: dp.ListLogEventsRequest(parent=t.name, page_size=1)),
        M("depot.VerifyLog", "depot", "VerifyLog", _customers, lambda w, p, t, now: dp.VerifyLogRequest(parent=t.name)),
        M("depot.RotateKey", "depot", "RotateKey", none, lambda w, p, t, now: dp.RotateKeyRequest()),
        M("depot.GetKeyStatus", "depot", "GetKeyStatus", none, lambda w, p, t, now: dp.GetKeyStatusRequest()),
        M("depot.CreateWebhook", "depot", "CreateWebhook", _customers,  # no URL: refused after the decision
          lambda w, p, t, now: dp.CreateWebhookRequest(parent=t.name, webhook=dp.Webhook(
              event_types=[ep.EVENT_TYPE_WINDOW_OPENED]))),
        M("depot.GetWebhook", "depot", "GetWebhook", _webhooks, lambda w, p, t, now: dp.GetWebhookRequest(name=t.name)),
        M("depot.ListWebhooks", "depot", "ListWebhooks", _customers,
          lambda w, p, t, now: dp.ListWebhooksRequest(parent=t.name, page_size=1)),
        M("depot.DeleteWebhook", "depot", "DeleteWebhook", _no_webhooks,
          lambda w, p, t, now: dp.DeleteWebhookRequest(name=t.name)),
        M("depot.ListWebhookDeliveries", "depot", "ListWebhookDeliveries", _webhooks,
          lambda w, p, t, now: dp.ListWebhookDeliveriesRequest(parent=t.name, page_size=1)),
        M("depot.RedeliverWebhookDelivery", "depot", "RedeliverWebhookDelivery", _webhooks,
          lambda w, p, t, now: dp.RedeliverWebhookDeliveryRequest(name=f"{t.name}/deliveries/nosuch")),
        M("connections.ListConnectionTypes", "connections", "ListConnectionTypes", none,
          lambda w, p, t, now: cn.ListConnectionTypesRequest()),
        M("connections.GetConnectionType", "connections", "GetConnectionType", none,
          lambda w, p, t, now: cn.GetConnectionTypeRequest(name=R3)),
        M("connections.VerifyServiceConnector", "connections", "VerifyServiceConnector", none,
          lambda w, p, t, now: cn.VerifyServiceConnectorRequest(content=b"not a connector file")),
        M("connections.CreateSystem", "connections", "CreateSystem",
          lambda w: [Target("A/I1", "A", w.customer_name("A"), "S1", I1),
                     Target("A/I2", "A", w.customer_name("A"), "S2", I2),
                     Target("B/I1", "B", w.customer_name("B"), "SB", I1)],
          lambda w, p, t, now: cn.CreateSystemRequest(parent=t.name, system=cn.System(
              installation_number=t.installation, system_id="PRD",
              system_number=w.systems[t.system].name.rsplit("/", 1)[1], description="again"))),
        M("connections.GetSystem", "connections", "GetSystem", systems,
          lambda w, p, t, now: cn.GetSystemRequest(name=t.name)),
        M("connections.ListSystems", "connections", "ListSystems", _customers,
          lambda w, p, t, now: cn.ListSystemsRequest(parent=t.name, page_size=1)),
        M("connections.UpdateSystem", "connections", "UpdateSystem", systems, _same_description),
        M("connections.DeleteSystem", "connections", "DeleteSystem", systems,
          lambda w, p, t, now: cn.DeleteSystemRequest(name=t.name, etag="stale-etag")),
        M("connections.SetUpConnection", "connections", "SetUpConnection", systems,
          lambda w, p, t, now: cn.SetUpConnectionRequest(parent=t.name, connection_type=R3, parameters=R3_PARAMETERS)),
        M("connections.ListConnectionSetups", "connections", "ListConnectionSetups", systems,
          lambda w, p, t, now: cn.ListConnectionSetupsRequest(parent=t.name, page_size=1)),
        M("connections.DeleteConnectionSetup", "connections", "DeleteConnectionSetup", systems,
          lambda w, p, t, now: cn.DeleteConnectionSetupRequest(name=f"{t.name}/connectionSetups/R3_SUPPORT")),
        M("connections.OpenConnection", "connections", "OpenConnection", systems,
          lambda w, p, t, now: cn.OpenConnectionRequest(parent=t.name, connection_type=R3, end_time=later(now, hours=1),
                                                        reason="matrix")),
        M("connections.CloseConnection", "connections", "CloseConnection", closed,
          lambda w, p, t, now: cn.CloseConnectionRequest(name=t.name)),
        M("connections.ExtendConnection", "connections", "ExtendConnection", closed,  # closed: nothing changes
          lambda w, p, t, now: cn.ExtendConnectionRequest(name=t.name, end_time=later(now, hours=2))),
        M("connections.GetConnection", "connections", "GetConnection", windows,
          lambda w, p, t, now: cn.GetConnectionRequest(name=t.name)),
        M("connections.ListConnections", "connections", "ListConnections", systems,
          lambda w, p, t, now: cn.ListConnectionsRequest(parent=t.name, page_size=1)),
        M("connections.GetServiceConnector", "connections", "GetServiceConnector", opened,
          lambda w, p, t, now: cn.GetServiceConnectorRequest(name=t.name)),
        M("connections.ListSessions", "connections", "ListSessions", systems,
          lambda w, p, t, now: cn.ListSessionsRequest(parent=t.name, page_size=1)),
        M("connections.GetSession", "connections", "GetSession", sessions,
          lambda w, p, t, now: cn.GetSessionRequest(name=t.name)),
        # an ACTIVE session gets terminated_by at the first allowed call (FAILED_PRECONDITION after it), the
        # others are FAILED_PRECONDITION or NOT_FOUND once allowed: no decision depends on it
        M("connections.TerminateSession", "connections", "TerminateSession", sessions,
          lambda w, p, t, now: cn.TerminateSessionRequest(name=t.name)),
        M("connections.CreateIncident", "connections", "CreateIncident", systems,
          lambda w, p, t, now: cn.CreateIncidentRequest(parent=w.customer_name(t.customer), incident=cn.Incident(
              system=t.name, title="matrix"))),
        M("connections.GetIncident", "connections", "GetIncident", incidents,
          lambda w, p, t, now: cn.GetIncidentRequest(name=t.name)),
        M("connections.ListIncidents", "connections", "ListIncidents", _customers,
          lambda w, p, t, now: cn.ListIncidentsRequest(parent=t.name, page_size=1)),
        M("connections.UpdateIncidentStatus", "connections", "UpdateIncidentStatus", incidents,
          lambda w, p, t, now: cn.UpdateIncidentStatusRequest(name=t.name, status=cn.INCIDENT_STATUS_CUSTOMER_ACTION,
                                                              etag="stale-etag")),
        M("connections.AssignProcessor", "connections", "AssignProcessor", confirmed,
          lambda w, p, t, now: cn.AssignProcessorRequest(name=t.name)),
        M("authz.CreateCustomer", "authz", "CreateCustomer", _customers,
          lambda w, p, t, now: az.CreateCustomerRequest(customer=az.Customer(
              customer_number=w.customers[t.key], display_name="again"))),
        M("authz.CreateUser", "authz", "CreateUser",
          lambda w: _customers(w) + [Target("engineer", "", "")], _existing_user),
        M("authz.GetUser", "authz", "GetUser", _users, lambda w, p, t, now: az.GetUserRequest(name=_user_name(p, t))),
        M("authz.ListUsers", "authz", "ListUsers", _customers,
          lambda w, p, t, now: az.ListUsersRequest(customer=t.name, page_size=1)),
        M("authz.UpdateUser", "authz", "UpdateUser", _users, _same_display_name),
        M("authz.UpdateUser password", "authz", "UpdateUser", _users, _own_field("password")),
        M("authz.UpdateUser email", "authz", "UpdateUser", _users, _own_field("email")),
        M("authz.ResetPassword", "authz", "ResetPassword", lambda w: list(w.reset.values()),
          lambda w, p, t, now: az.ResetPasswordRequest(name=t.name)),
        M("authz.SetPassword", "authz", "SetPassword", none, lambda w, p, t, now: az.SetPasswordRequest(
            user_id=w.reset["A:reset"].name.removeprefix("users/"), code="AAAAA-AAAAA-AAAAA-AAAAA",
            new_password="too short")),
        M("authz.GrantAuthorization", "authz", "GrantAuthorization", lambda w: _users(w)[1:],
          lambda w, p, t, now: az.GrantAuthorizationRequest(
              user=t.name, authorization=az.AUTHORIZATION_EDIT_MY_LOGIN_DATA if t.key != "B:all"
              else az.AUTHORIZATION_OPEN_REMOTE_CONNECTIONS)),
        M("authz.ApproveAuthorization", "authz", "ApproveAuthorization", lambda w: _users(w)[1:],
          lambda w, p, t, now: az.ApproveAuthorizationRequest(user=t.name,
                                                              authorization=az.AUTHORIZATION_EDIT_ALL_LOGIN_DATA)),
        M("authz.RevokeAuthorization", "authz", "RevokeAuthorization",
          lambda w: [Target(k, w.who[k].customer, w.who[k].user) for k in ("A:none", "B:none")],
          lambda w, p, t, now: az.RevokeAuthorizationRequest(user=t.name, authorization=az.AUTHORIZATION_USER_ADMIN)),
        M("authz.ListAuthorizations", "authz", "ListAuthorizations", _users,
          lambda w, p, t, now: az.ListAuthorizationsRequest(user=_user_name(p, t))),
        M("authz.CreateServiceToken", "authz", "CreateServiceToken", none,
          lambda w, p, t, now: az.CreateServiceTokenRequest(service_account="users/svc-gateway",
                                                            ttl=duration_pb2.Duration(seconds=3600))),
        M("authz.ListIdentityEvents", "authz", "ListIdentityEvents", _logs,
          lambda w, p, t, now: az.ListIdentityEventsRequest(parent=t.name, page_size=1)),
        M("authz.VerifyIdentityLog", "authz", "VerifyIdentityLog", _logs,
          lambda w, p, t, now: az.VerifyIdentityLogRequest(parent=t.name)),
        M("authz.Check", "authz", "Check", none, lambda w, p, t, now: az.CheckRequest(
            subject_token=w.who["A:all"].token, permission="depot.logonData.read",
            resource=az.ResourceAttributes(customer=w.customer_name("A")))),
        M("authz.CheckBulk", "authz", "CheckBulk", none, lambda w, p, t, now: az.CheckBulkRequest(
            subject_token=w.who["A:all"].token, items=[az.CheckBulkItem(
                permission="depot.logonData.read", resource=az.ResourceAttributes(customer=w.customer_name("A")))])),
        M("authz.SetSupportAssignment", "authz", "SetSupportAssignment", none,
          lambda w, p, t, now: az.SetSupportAssignmentRequest(assignment=az.SupportAssignment(
              incident=w.incidents["X1"].name, engineer=w.who["E:assigned"].user, system=w.systems["S1"].name))),
        M("authz.DeleteSupportAssignment", "authz", "DeleteSupportAssignment", none,
          lambda w, p, t, now: az.DeleteSupportAssignmentRequest(
              incident=f"{w.customer_name('A')}/incidents/no-such-incident")),
        M("authz.GetNotificationSettings", "authz", "GetNotificationSettings", _users,
          lambda w, p, t, now: az.GetNotificationSettingsRequest(name=f"{_user_name(p, t)}/notificationSettings")),
        M("authz.UpdateNotificationSettings", "authz", "UpdateNotificationSettings", _users,
          lambda w, p, t, now: az.UpdateNotificationSettingsRequest(notification_settings=az.NotificationSettings(
              name=f"{_user_name(p, t)}/notificationSettings"))),  # nothing muted, as it was
        M("authz.ResolveNotificationRecipients", "authz", "ResolveNotificationRecipients", none,
          lambda w, p, t, now: az.ResolveNotificationRecipientsRequest(recipients=[az.NotificationRecipient(
              user=w.who["A:all"].user, kind=az.NOTIFICATION_KIND_LOGON_DATA_REVEALED)])),
        M("gateway.PrepareRemoteAccess", "gateway", "PrepareRemoteAccess", systems,
          lambda w, p, t, now: gw.PrepareRemoteAccessRequest(system=t.name, connection_type=R3,
                                                             end_time=later(now, hours=1), reason="matrix")),
        M("gateway.EndRemoteAccess", "gateway", "EndRemoteAccess", closed,
          lambda w, p, t, now: gw.EndRemoteAccessRequest(connection=t.name)),
        M("gateway.GetSystemOverview", "gateway", "GetSystemOverview", systems,
          lambda w, p, t, now: gw.GetSystemOverviewRequest(system=t.name, log_event_limit=1)),
        M("gateway.ExportIncidentEvidence", "gateway", "ExportIncidentEvidence", incidents,
          lambda w, p, t, now: gw.ExportIncidentEvidenceRequest(incident=t.name)),
        M("gateway.GetEvidenceKey", "gateway", "GetEvidenceKey", none, lambda w, p, t, now: gw.GetEvidenceKeyRequest()),
    ]


def _same_description(w: World, p: Who, t: Target, now) -> cn.UpdateSystemRequest:
    request = cn.UpdateSystemRequest(system=cn.System(name=t.name, description=t.extra["description"]))
    request.update_mask.paths.append("description")
    return request


def _same_display_name(w: World, p: Who, t: Target, now) -> az.UpdateUserRequest:
    name = _user_name(p, t)
    request = az.UpdateUserRequest(user=az.User(name=name, display_name=w.display.get(name, "Someone")))
    request.update_mask.paths.append("display_name")
    return request


def _own_field(path: str):
    """UpdateUser of `path` (password or email): a valid new value for another user (refused, whoever asks), an
    invalid one for the caller's own (INVALID_ARGUMENT once allowed: nothing changes either way)."""
    def request(w: World, p: Who, t: Target, now) -> az.UpdateUserRequest:
        name = _user_name(p, t)
        own = t.key == "self" or t.name == p.user
        if path == "password":
            out = az.UpdateUserRequest(user=az.User(name=name), new_password="short" if own else
                                       "matrix password that must not be set")
        else:
            out = az.UpdateUserRequest(user=az.User(name=name, email="not an address" if own else
                                                    "someone-else@matrix.example.com"))
        out.update_mask.paths.append(path)
        return out
    return request


def _existing_user(w: World, p: Who, t: Target, now) -> az.CreateUserRequest:
    """A user that exists already (ALREADY_EXISTS once allowed), valid otherwise: no initial password, an address."""
    if t.key == "engineer":
        user_id = w.who["E:none"].user.removeprefix("users/")
        return az.CreateUserRequest(user=az.User(user_id=user_id, kind=az.PRINCIPAL_KIND_SUPPORT_ENGINEER,
                                                 display_name="again", email=email_of(user_id)))
    user_id = w.who[f"{t.key}:none"].user.removeprefix("users/")
    return az.CreateUserRequest(user=az.User(user_id=user_id, kind=az.PRINCIPAL_KIND_CUSTOMER_USER,
                                             customer=t.name, display_name="again", email=email_of(user_id)))


def classify(code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return DENY
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UNAUTH
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED):
        return ERROR
    return ALLOW
