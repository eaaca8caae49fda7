"""authz's stored rows and decisions as proto messages, and proto values (enums, durations) as domain values."""
from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2

from remotesupport.authz.v1 import authz_pb2
from services.authz.model import lock_end
from services.authz.grants import PENDING, GrantView
from services.authz.tables import AssignmentRow, CustomerRow, IdentityEventRow, PrincipalRow
from services.kit import auth
from services.kit.errors import InvalidArgument
from services.kit.principals import KIND_BY_NUMBER, NUMBER_BY_KIND
from services.kit.validate import to_timestamp

NUMBER_BY_AUTHORIZATION = {name: number for number, name in auth.AUTH_NAMES.items()}


def kind_of(number: int) -> str:
    """A PrincipalKind value (checked by the caller) as the domain's kind name."""
    return KIND_BY_NUMBER[number]


def authorization_of(value: int, field: str = "authorization") -> str:
    """An Authorization value as the domain's authorization name; UNSPECIFIED and unknown values are
    INVALID_ARGUMENT on `field`."""
    if value not in auth.AUTH_NAMES:
        raise InvalidArgument(field, f"has unknown value {value}")
    if value == authz_pb2.AUTHORIZATION_UNSPECIFIED:
        raise InvalidArgument(field, "is required (not AUTHORIZATION_UNSPECIFIED)")
    return auth.AUTH_NAMES[value]


def ttl_of(duration: duration_pb2.Duration, default: dt.timedelta, maximum: dt.timedelta,
           field: str) -> dt.timedelta:
    """A requested lifetime: `default` when unset, else positive and at most `maximum`."""
    if duration.seconds == 0 and duration.nanos == 0:
        return default
    try:
        ttl = duration.ToTimedelta()
    except (OverflowError, ValueError):  # no timedelta holds it: far beyond any maximum
        raise InvalidArgument(field, f"must be positive and at most {maximum.days} days") from None
    if ttl <= dt.timedelta(0) or ttl > maximum:
        raise InvalidArgument(field, f"must be positive and at most {maximum.days} days")
    return ttl


def customer_proto(row: CustomerRow) -> authz_pb2.Customer:
    return authz_pb2.Customer(name=f"customers/{row.number}", customer_number=row.number,
                              display_name=row.display_name, create_time=to_timestamp(row.created_at))


def user_proto(row: PrincipalRow, now: dt.datetime) -> authz_pb2.User:
    """The user as it stands at `now` (lock_expire_time only while it is locked)."""
    user = authz_pb2.User(
        name=f"users/{row.user_id}", user_id=row.user_id, kind=NUMBER_BY_KIND[row.kind],
        customer=f"customers/{row.customer}" if row.customer else "", display_name=row.display_name,
        email=row.email, disabled=row.disabled, create_time=to_timestamp(row.created_at),
        update_time=to_timestamp(row.updated_at), password_set=row.password_hash is not None,
    )
    until = lock_end(row.locked_until, now)
    if until is not None:
        user.lock_expire_time.CopyFrom(to_timestamp(until))
    return user


def grant_proto(view: GrantView) -> authz_pb2.Grant:
    return authz_pb2.Grant(
        user=f"users/{view.user_id}", authorization=NUMBER_BY_AUTHORIZATION[view.authorization],
        customer=f"customers/{view.customer}", installations=[i for i in view.installations.split(",") if i],
        granted_by=view.granted_by, grant_time=to_timestamp(view.granted_at), approved_by=view.approved_by,
        state=authz_pb2.GRANT_STATE_PENDING_APPROVAL if view.state == PENDING else authz_pb2.GRANT_STATE_ACTIVE,
    )


def identity_event_proto(row: IdentityEventRow) -> authz_pb2.IdentityEvent:
    return authz_pb2.IdentityEvent(
        sequence=row.sequence, customer=f"customers/{row.customer}" if row.customer else "",
        event_time=to_timestamp(row.event_time), actor=row.actor, action=row.action, target=row.target,
        detail=row.detail, previous_hash=row.previous_hash, hash=row.hash)


def assignment_proto(row: AssignmentRow) -> authz_pb2.SupportAssignment:
    return authz_pb2.SupportAssignment(incident=row.incident, engineer=f"users/{row.engineer}", system=row.system,
                                       create_time=to_timestamp(row.created_at))


def fill_decision(decision: auth.Decision, out: authz_pb2.CheckResponse | authz_pb2.CheckResult) -> None:
    """Write the decision into a CheckResponse, or a CheckBulkResponse's CheckResult (the same fields)."""
    out.allowed, out.authenticated = decision.allowed, decision.authenticated
    out.reason, out.decision_id = decision.reason, decision.decision_id
    if decision.required:
        out.required_authorizations.extend([NUMBER_BY_AUTHORIZATION[a] for a in decision.required])
    if decision.incidents:
        out.incidents.extend(decision.incidents)
    subject = decision.subject
    if subject is not None:
        target = out.subject
        target.user, target.kind, target.customer = subject.user, NUMBER_BY_KIND[subject.kind], subject.customer
