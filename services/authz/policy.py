"""The decision rules: which principal may do what (DESIGN §5), the permission -> rule table and `decide`.
Pure functions, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field

from services.authz.model import SERVICE_ACCOUNTS
from services.kit import permissions as P
from services.kit.principals import CUSTOMER_USER, PLATFORM_ADMIN, SERVICE_ACCOUNT, SUPPORT_ENGINEER

OPEN, MAINTAIN, INCIDENTS, EDIT_MY, EDIT_ALL, USER_ADMIN = (
    "OPEN_REMOTE_CONNECTIONS", "MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS", "EDIT_MY_LOGIN_DATA",
    "EDIT_ALL_LOGIN_DATA", "USER_ADMIN")


@dataclass(frozen=True)
class Rule:
    """Who a permission allows. Customer-user clauses apply only inside the user's own customer."""

    granted: frozenset[str] = frozenset()     # a customer user holding any of these
    owned: frozenset[str] = frozenset()       # ... or any of these when resource.owner is the user
    member: bool = False                      # any customer user of the customer
    assigned_engineer: bool = False           # an engineer with a support assignment for resource.system
    assigned_in_customer: bool = False        # an engineer with a support assignment for a system of the customer
    any_engineer: bool = False
    admin: bool = False
    services: frozenset[str] = frozenset()    # service accounts (user ids)
    self_target: bool = False                 # resource.target_user is the caller
    anyone: bool = False                      # any authenticated principal


def _r(granted=(), owned=(), **kw) -> Rule:
    return Rule(granted=frozenset(granted), owned=frozenset(owned), **kw)


RULES: dict[str, Rule] = {
    P.TYPES_READ: _r(anyone=True),
    P.CONNECTOR_VERIFY: _r(anyone=True),
    P.SYSTEMS_READ: _r(member=True, assigned_engineer=True),
    P.SYSTEMS_LIST: _r(member=True),
    P.SYSTEMS_WRITE: _r([MAINTAIN]),
    P.SETUPS_READ: _r(member=True, assigned_engineer=True),
    P.SETUPS_WRITE: _r([OPEN]),
    P.WINDOWS_READ: _r(member=True, assigned_engineer=True),
    P.WINDOWS_WRITE: _r([OPEN]),
    P.CONNECTOR_READ: _r([OPEN]),
    P.INCIDENTS_READ: _r(member=True, any_engineer=True),
    P.INCIDENTS_CREATE: _r([INCIDENTS]),
    P.INCIDENTS_UPDATE_STATUS: _r([INCIDENTS], any_engineer=True),
    P.INCIDENTS_ASSIGN: _r(any_engineer=True),
    # sessions: the customer's members read them; an engineer reads its own (the connections service filters)
    P.SESSIONS_READ: _r(member=True, any_engineer=True),
    P.SESSIONS_TERMINATE: _r([OPEN]),
    # a tunnel through the relay: an engineer assigned to the system, or the customer testing its own line
    P.RELAY_TUNNEL: _r([OPEN], assigned_engineer=True),
    # event feeds: whom a feed can show anything may open one (a member; an engineer processing an incident of
    # the customer); each event is then shown only to whom its list shows it
    # the depot follows the feed for its webhooks (services/depot/webhook_delivery.py)
    P.CONNECTIONS_EVENTS_WATCH: _r(member=True, assigned_in_customer=True,
                                   services=frozenset({SERVICE_ACCOUNTS["depot"]})),
    P.CONNECTIONS_EVENTS_READ: _r(member=True, assigned_engineer=True, services=frozenset({SERVICE_ACCOUNTS["depot"]})),
    P.LOGON_READ: _r([EDIT_MY, EDIT_ALL], assigned_engineer=True),
    P.LOGON_CREATE: _r([EDIT_MY, EDIT_ALL]),
    P.LOGON_UPDATE: _r([EDIT_ALL], [EDIT_MY], assigned_engineer=True),
    P.LOGON_OVERWRITE_SECRET: _r([EDIT_MY, EDIT_ALL], assigned_engineer=True),
    P.LOGON_DELETE: _r([EDIT_ALL], [EDIT_MY]),
    P.LOGON_REVEAL: _r([EDIT_ALL], [EDIT_MY], assigned_engineer=True),
    P.VIEWS_READ: _r([EDIT_MY, EDIT_ALL]),
    P.VIEWS_WRITE: _r([EDIT_ALL]),
    P.LOG_READ: _r([EDIT_MY, EDIT_ALL]),
    P.KEYS_MANAGE: _r(admin=True),
    P.DEPOT_EVENTS_WATCH: _r([EDIT_MY, EDIT_ALL]),  # the log's readers: nobody else learns even its pace
    P.DEPOT_EVENTS_READ: _r([EDIT_MY, EDIT_ALL]),
    # a webhook is the customer's integration, registered by its user administrators; it carries events (never a
    # secret) to the customer's own endpoint
    P.WEBHOOKS_MANAGE: _r([USER_ADMIN]),
    P.WEBHOOKS_READ: _r([USER_ADMIN]),  # exactly ListLogEvents' readers (the log is not an engineer's)
    P.CUSTOMERS_CREATE: _r(admin=True),
    P.USERS_CREATE: _r([USER_ADMIN], admin=True),
    P.USERS_READ: _r([USER_ADMIN], admin=True, self_target=True),
    P.USERS_LIST: _r([USER_ADMIN], admin=True),
    P.USERS_UPDATE: _r([USER_ADMIN], admin=True, self_target=True),
    P.GRANTS_WRITE: _r([USER_ADMIN], admin=True),
    P.GRANTS_READ: _r([USER_ADMIN], admin=True, self_target=True),
    P.IDENTITY_LOG_READ: _r([USER_ADMIN], admin=True),
    P.SERVICE_TOKENS_CREATE: _r(admin=True),
    P.CHECK: _r(services=frozenset(SERVICE_ACCOUNTS.values())),
    P.ASSIGNMENTS_WRITE: _r(services=frozenset({SERVICE_ACCOUNTS["connections"]})),
    P.SESSION: _r(anyone=True),
    P.NOTIFICATIONS_READ: _r(self_target=True),  # which mails one receives is one's own business
    P.NOTIFICATIONS_WRITE: _r(self_target=True),
    P.NOTIFICATIONS_RESOLVE: _r(services=frozenset({SERVICE_ACCOUNTS["depot"], SERVICE_ACCOUNTS["connections"]})),
    P.PREPARE_ACCESS: _r([OPEN]),
    P.END_ACCESS: _r([OPEN]),
    P.SYSTEM_OVERVIEW: _r(member=True, assigned_engineer=True),
    P.GATEWAY_EVENTS_WATCH: _r(member=True, assigned_in_customer=True),
    P.EVIDENCE_EXPORT: _r([EDIT_MY, EDIT_ALL]),  # exactly the log's readers: the document holds the log's events
    P.EVIDENCE_KEY_READ: _r(anyone=True),  # the public half of the evidence signing key
}


@dataclass(frozen=True)
class Principal:
    user_id: str
    kind: str
    customer: str  # customer number, "" when none
    disabled: bool = False


@dataclass(frozen=True)
class GrantView:
    authorization: str
    customer: str
    installations: frozenset[str] = frozenset()

    def covers(self, customer: str, installation: str) -> bool:
        if self.customer != customer:
            return False
        return not self.installations or installation in self.installations


@dataclass(frozen=True)
class AssignmentView:
    incident: str
    system: str


@dataclass(frozen=True)
class Attributes:
    customer: str = ""       # customer number (not the resource name)
    installation: str = ""
    system: str = ""
    owner: str = ""          # user id
    incident: str = ""
    target_user: str = ""    # user id


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    required: tuple[str, ...] = ()
    incidents: tuple[str, ...] = field(default=())


def _has(grants: list[GrantView], wanted: frozenset[str], attrs: Attributes) -> bool:
    return any(g.authorization in wanted and g.covers(attrs.customer, attrs.installation) for g in grants)


def decide(principal: Principal, permission: str, attrs: Attributes, grants: list[GrantView],
           assignments: list[AssignmentView]) -> Verdict:
    """Decide one permission. Unknown permissions and anything not explicitly allowed are denied."""
    rule = RULES.get(permission)
    if rule is None:
        return Verdict(False, f"unknown permission {permission!r}")
    required = tuple(sorted(rule.granted | rule.owned))
    if rule.anyone:
        return Verdict(True, "any authenticated principal")
    kind = principal.kind
    if kind == PLATFORM_ADMIN:
        return Verdict(True, "platform admin") if rule.admin else Verdict(
            False, f"the platform admin may not {permission}", required)
    if kind == SERVICE_ACCOUNT:
        if principal.user_id in rule.services:
            return Verdict(True, "service account")
        return Verdict(False, f"service account {principal.user_id} may not {permission}")
    if rule.self_target and attrs.target_user and attrs.target_user == principal.user_id:
        return Verdict(True, "own user")
    if kind == SUPPORT_ENGINEER:
        return _decide_engineer(rule, permission, attrs, assignments, required)
    if kind != CUSTOMER_USER:
        return Verdict(False, "unknown principal kind")
    if not attrs.customer or attrs.customer != principal.customer:
        return Verdict(False, "the resource belongs to another customer", required)
    if rule.member:
        return Verdict(True, "member of the customer")
    if _has(grants, rule.granted, attrs):
        return Verdict(True, "authorization granted")
    if rule.owned and attrs.owner == principal.user_id and _has(grants, rule.owned, attrs):
        return Verdict(True, "authorization granted on own entry")
    if not required:
        return Verdict(False, f"customer users may not {permission}")
    scope = f" for customer {attrs.customer}" + (f", installation {attrs.installation}" if attrs.installation else "")
    if rule.owned and not rule.granted.intersection(g.authorization for g in grants if
                                                  g.covers(attrs.customer, attrs.installation)) \
            and _has(grants, rule.owned, attrs):
        return Verdict(False, f"{permission} needs {' or '.join(sorted(rule.granted))}{scope}; "
                              f"{' or '.join(sorted(rule.owned))} covers only your own entries", required)
    return Verdict(False, f"{permission} needs the authorization {' or '.join(required)}{scope}; "
                          "contact your user administrator", required)


def _decide_engineer(rule: Rule, permission: str, attrs: Attributes, assignments: list[AssignmentView],
                     required: tuple[str, ...]) -> Verdict:
    if rule.any_engineer:
        return Verdict(True, "support engineer")
    if rule.assigned_in_customer and attrs.customer:
        prefix = f"customers/{attrs.customer}/systems/"
        matched = tuple(sorted(a.incident for a in assignments if a.system.startswith(prefix)))
        if matched:
            return Verdict(True, "support assignment in the customer", incidents=matched)
        return Verdict(False, "no support assignment in this customer: an incident of one of its systems must be "
                              "in process at the vendor with you as processor")
    if rule.assigned_engineer and attrs.system:
        matched = tuple(sorted(a.incident for a in assignments if a.system == attrs.system
                               and (not attrs.incident or a.incident == attrs.incident)))
        if matched:
            return Verdict(True, "support assignment", incidents=matched)
        return Verdict(False, "no support assignment for this system: an incident of it must be in process "
                              "at the vendor with you as processor")
    return Verdict(False, f"support engineers may not {permission}", required)
