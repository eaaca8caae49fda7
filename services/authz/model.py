"""authz's domain rules: what names, addresses and passwords must look like, who may be created, granted,
assigned or changed, and when a login lock ends. Pure functions and small types; no I/O."""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from services.authz.passwords import MAX_PASSWORD, MIN_PASSWORD
from services.kit.clock import as_utc
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unauthenticated
from services.kit.principals import CUSTOMER_USER, PLATFORM_ADMIN, SERVICE_ACCOUNT, SUPPORT_ENGINEER
from services.kit.validate import Violations

S_USER = re.compile(r"^S[0-9]{10}$")
LOGIN = re.compile(r"^[a-z][a-z0-9._-]{1,62}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
INSTALLATION = re.compile(r"^[0-9]{1,10}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never part of a name or an address (and PostgreSQL text cannot hold NUL)
MAX_INSTALLATIONS = 100
MAX_PERMISSION = 100  # characters of a permission name in a Check

ADMIN_ID = "admin"  # the platform admin, created at first start
SERVICE_ACCOUNTS = {"depot": "svc-depot", "connections": "svc-connections", "gateway": "svc-gateway"}
SERVICE_TOKEN_TTL = dt.timedelta(days=30)  # CreateServiceToken's default ...
MAX_SERVICE_TOKEN_TTL = dt.timedelta(days=365)  # ... and its maximum

LOGIN_REFUSED = "invalid user ID or password, or the user is disabled or locked"
LOGIN_SHED = "too many logins are being checked at once; retry in a moment"
DECISIONS_BUSY = "the authorization service is overloaded; retry in a moment"
LOGIN_RATE_LIMITED = "too many login attempts for this user ID or from this address; retry in {seconds} s"
USER_FIELDS = {"display_name", "email", "disabled", "password"}  # what UpdateUser may change


@dataclass(frozen=True)
class LoginLock:
    """After `max_failures` failed logins in a row a user is locked for `duration` (0 failures: never)."""

    max_failures: int = 5
    duration: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class LoginRate:
    """At most `burst` login attempts at once, refilled at `per_min` a minute (0: no limit)."""

    per_min: int
    burst: int


def lock_end(locked_until: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """When a user's login lock ends, or None when it is not locked at `now`."""
    until = as_utc(locked_until) if locked_until is not None else None
    return until if until is not None and until > now else None


class NoSuchUser(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"user users/{user_id} does not exist")


class NoSuchCustomer(NotFound):
    def __init__(self, number: str) -> None:
        super().__init__(f"customer customers/{number} does not exist")


class LoginRefused(Unauthenticated):
    """The one answer to every failed Login, whichever check failed."""

    def __init__(self) -> None:
        super().__init__(LOGIN_REFUSED)


class RetryLater(ResourceExhausted):
    """RESOURCE_EXHAUSTED with google.rpc.RetryInfo: the caller may try again after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> list:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_s * 1e9))
        return super().details() + [error_details_pb2.RetryInfo(retry_delay=delay)]


class LoginShed(RetryLater):
    """A Login attempt that found every place of the password check taken: refused before anything is read."""

    def __init__(self) -> None:
        super().__init__(LOGIN_SHED, 1.0)


class LoginRateLimited(RetryLater):
    """A Login attempt beyond its user ID's or its address's rate: refused before anything is read, so the
    answer is the same whether or not the user exists."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(LOGIN_RATE_LIMITED.format(seconds=math.ceil(retry_after_s)), retry_after_s)


class DecisionsBusy(RetryLater):
    """A decision that found the database busy until its caller's deadline drew near (services.authz.overload)."""

    def __init__(self) -> None:
        super().__init__(DECISIONS_BUSY, 0.1)


class LastUserAdmin(FailedPrecondition):
    def __init__(self, user_id: str, customer: str, change: str) -> None:
        super().__init__(f"users/{user_id} is the last enabled user administrator of customers/{customer}; "
                         f"{change} would leave the customer without one: grant USER_ADMIN to another enabled user "
                         "of the customer first")


# --- what a request's values must look like ------------------------------------------------------------
def no_control(v: Violations, field: str, value: str) -> None:
    if CONTROL.search(value):
        v.add(field, "must not contain control characters")


def check_password_policy(field: str, password: str, v: Violations) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        v.add(field, f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def check_login(user_id: str, password: str) -> None:
    v = Violations()
    v.required("user_id", user_id)
    v.required("password", password)
    v.max_len("user_id", user_id, 64)
    v.max_len("password", password, MAX_PASSWORD)
    v.raise_if_any()


def check_customer(number: str, display_name: str) -> None:
    v = Violations()
    v.required("customer.customer_number", number)
    v.pattern("customer.customer_number", number, r"[0-9]{1,10}", "must be 1 to 10 digits")
    v.required("customer.display_name", display_name)
    v.max_len("customer.display_name", display_name, 200)
    no_control(v, "customer.display_name", display_name)
    v.raise_if_any()


def check_user_fields(v: Violations, *, user_id: str | None, kind: str | None, display_name: str,
                      email: str) -> None:
    if user_id is not None:
        if v.required("user.user_id", user_id):
            if kind == CUSTOMER_USER and not S_USER.match(user_id):
                v.add("user.user_id", "customer users have S-user IDs: 'S' and 10 digits, e.g. S0001234567")
            elif kind != CUSTOMER_USER and not LOGIN.match(user_id):
                v.add("user.user_id", "must be 2 to 63 lower-case letters, digits, '.', '_' or '-', "
                                      "starting with a letter")
    v.required("user.display_name", display_name)
    v.max_len("user.display_name", display_name, 200)
    no_control(v, "user.display_name", display_name)
    if email and (not EMAIL.match(email) or CONTROL.search(email)):
        v.add("user.email", "is not an email address")
    v.max_len("user.email", email, 254)


def check_new_user(*, user_id: str, kind: str, customer: str, display_name: str, email: str,
                   password: str) -> None:
    """A user CreateUser may create: a customer user of a customer or a support engineer of none."""
    v = Violations()
    if kind not in (CUSTOMER_USER, SUPPORT_ENGINEER):
        v.add("user.kind", "must be PRINCIPAL_KIND_CUSTOMER_USER or PRINCIPAL_KIND_SUPPORT_ENGINEER "
                           "(service accounts and the platform admin are created at first start)")
    check_user_fields(v, user_id=user_id, kind=kind, display_name=display_name, email=email)
    if kind == CUSTOMER_USER and not customer:
        v.add("user.customer", "is required for customer users")
    if kind == SUPPORT_ENGINEER and customer:
        v.add("user.customer", "must be empty for support engineers (they belong to the vendor)")
    check_password_policy("initial_password", password, v)
    v.raise_if_any()


def check_user_update(paths: list[str], *, display_name: str, email: str, new_password: str,
                      caller_is_self_only: bool) -> None:
    """The new values of an UpdateUser's fields; a user changing itself without administering it may not
    enable or disable itself."""
    v = Violations()
    if "display_name" in paths:
        check_user_fields(v, user_id=None, kind=None, display_name=display_name, email="")
    if "email" in paths and email:
        check_user_fields(v, user_id=None, kind=None, display_name="x", email=email)
    if "password" in paths:
        check_password_policy("new_password", new_password, v)
    if caller_is_self_only and "disabled" in paths:
        v.add("update_mask", "you cannot change 'disabled' on your own user; ask your user administrator")
    v.raise_if_any()


def check_change_allowed(kind: str, paths: list[str], disabled: bool) -> None:
    """What no update may do to a principal of `kind`, whoever asks."""
    if kind == SERVICE_ACCOUNT and "password" in paths:
        raise FailedPrecondition("service accounts have no password; use CreateServiceToken")
    if kind == PLATFORM_ADMIN and "disabled" in paths and disabled:
        raise FailedPrecondition("the platform admin cannot be disabled")


def check_keeps_a_user_admin(user_id: str, customer: str, user_admins: set[str], change: str) -> None:
    """A customer always keeps one enabled user administrator: `change` may not take the last one away
    (`user_admins`: the customer's enabled holders of USER_ADMIN for the whole customer, as committed)."""
    if user_admins == {user_id}:
        raise LastUserAdmin(user_id, customer, change)


def check_installations(installations: list[str]) -> list[str]:
    """A grant's installation numbers, sorted and without repeats."""
    v = Violations()
    for i, value in enumerate(installations):
        if not INSTALLATION.match(value):
            v.add(f"installations[{i}]", "must be an installation number of 1 to 10 digits")
    if len(installations) > MAX_INSTALLATIONS:
        v.add("installations", f"may list at most {MAX_INSTALLATIONS} installation numbers")
    v.raise_if_any()
    return sorted(set(installations))


def check_grantee(kind: str, customer: str | None) -> None:
    if kind != CUSTOMER_USER or not customer:
        raise FailedPrecondition("authorizations are granted to customer users only")


def check_assignee(user_id: str, kind: str | None, disabled: bool) -> None:
    """A support assignment's engineer (`kind` None: no such user)."""
    if kind != SUPPORT_ENGINEER:
        raise InvalidArgument("assignment.engineer", f"users/{user_id} is not a support engineer")
    if disabled:
        raise FailedPrecondition(f"support engineer users/{user_id} is disabled")


def permission_problem(permission: str) -> str | None:
    """Why `permission` cannot be checked, or None."""
    if not permission:
        return "is required"
    if len(permission) > MAX_PERMISSION:
        return f"is longer than {MAX_PERMISSION} characters"
    return None
