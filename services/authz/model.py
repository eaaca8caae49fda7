"""authz's domain rules: what names, addresses and passwords must look like, who may be created, granted,
assigned or changed (separation of duties: nobody who administers identities obtains a credential or an
authorization of its own by it), and when a login lock ends. Pure functions and small types; no I/O."""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from services.authz.passwords import MAX_PASSWORD, MIN_PASSWORD
from services.kit.clock import as_utc
from services.kit.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                                 ResourceExhausted, Unauthenticated)
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
OWN_ONLY_FIELDS = ("password", "email")  # ... of its own user only: whoever could would receive its codes
CODE_REFUSED = "the code is wrong, used or expired, or the user ID is unknown: ask for a new code"
FOUR_EYES = frozenset({"EDIT_ALL_LOGIN_DATA", "USER_ADMIN"})  # grants a second user administrator approves
ENROLL, RESET = "ENROLL", "RESET"  # what a one-time code is for
CODE_ATTEMPTS = 5  # wrong tries before a code is void


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


class CodeRefused(Unauthenticated):
    """The one answer to every failed SetPassword, whichever check failed."""

    def __init__(self) -> None:
        super().__init__(CODE_REFUSED)


class EmailTaken(AlreadyExists):
    def __init__(self) -> None:
        super().__init__("user.email is the address of another user: every user has an address of its own "
                         "(compared without case and without a '+tag')")


class NotOwnUser(PermissionDenied):
    def __init__(self, field: str) -> None:
        what = "password" if field == "password" else "e-mail address"
        super().__init__(f"only the user itself changes its {what}: use ResetPassword to mail it a one-time code"
                         if field == "password" else
                         f"only the user itself changes its {what} (one-time codes go there)")


class SelfGrant(PermissionDenied):
    def __init__(self) -> None:
        super().__init__("nobody grants an authorization to itself: ask another user administrator of the customer")


class AdminGrantsOnlyFirstUserAdmin(PermissionDenied):
    def __init__(self, customer: str) -> None:
        super().__init__(f"the platform admin grants only the first USER_ADMIN of a customer, and customers/"
                         f"{customer} has a user administrator: its user administrators grant authorizations")


class AdminCreatesOnlyFirstUserAdmin(PermissionDenied):
    def __init__(self, customer: str) -> None:
        super().__init__(f"the platform admin creates only a customer's first user administrator, and customers/"
                         f"{customer} has one: its user administrators create its users")


class NotAnApprover(PermissionDenied):
    def __init__(self, role: str) -> None:
        super().__init__(f"the {role} of a grant cannot approve it: another user administrator of the customer "
                         "must")


class NotTheCustomersUserAdmin(PermissionDenied):
    def __init__(self, who: str) -> None:
        super().__init__(f"{who} cannot approve a grant: only an enabled user administrator of the customer (with "
                         "USER_ADMIN for the whole customer) can")


class NoPendingGrant(NotFound):
    def __init__(self, user_id: str, authorization: str) -> None:
        super().__init__(f"users/{user_id} has no pending grant of {authorization}")


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


def email_key(email: str) -> str:
    """An address as compared for uniqueness: without case and without a "+tag" in its local part (mail to
    a+x@d reaches a@d at most providers)."""
    local, _, domain = email.strip().lower().rpartition("@")
    return f"{re.sub(r'[+].*$', '', local)}@{domain}"


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
                   initial_password: str) -> None:
    """A user CreateUser may create: a customer user of a customer or a support engineer of none, with its own
    address for the one-time code; nobody sets its password but the user."""
    v = Violations()
    if kind not in (CUSTOMER_USER, SUPPORT_ENGINEER):
        v.add("user.kind", "must be PRINCIPAL_KIND_CUSTOMER_USER or PRINCIPAL_KIND_SUPPORT_ENGINEER "
                           "(service accounts and the platform admin are created at first start)")
    check_user_fields(v, user_id=user_id, kind=kind, display_name=display_name, email=email)
    if kind == CUSTOMER_USER and not customer:
        v.add("user.customer", "is required for customer users")
    if kind == SUPPORT_ENGINEER and customer:
        v.add("user.customer", "must be empty for support engineers (they belong to the vendor)")
    v.required("user.email", email)
    if initial_password:
        v.add("initial_password", "is no longer accepted: the user sets its own password with the one-time code "
                                  "mailed to user.email (SetPassword)")
    v.raise_if_any()


def check_user_update(paths: list[str], *, display_name: str, email: str, new_password: str,
                      caller_is_self_only: bool) -> None:
    """The new values of an UpdateUser's fields; a user changing itself without administering it may not
    enable or disable itself."""
    v = Violations()
    if "display_name" in paths:
        check_user_fields(v, user_id=None, kind=None, display_name=display_name, email="")
    if "email" in paths:
        v.required("user.email", email)
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


def check_own_fields(paths: list[str], caller: str, target: str) -> None:
    """The password and the address are changed by the user itself only (OWN_ONLY_FIELDS)."""
    for field in OWN_ONLY_FIELDS:
        if field in paths and caller != target:
            raise NotOwnUser(field)


def check_set_password(user_id: str, code: str, new_password: str) -> None:
    v = Violations()
    v.required("user_id", user_id)
    v.max_len("user_id", user_id, 64)
    v.required("code", code)
    v.max_len("code", code, 64)
    check_password_policy("new_password", new_password, v)
    v.raise_if_any()


def check_grant_request(*, caller: str, caller_kind: str, grantee: str, authorization: str, customer: str,
                        user_admins: set[str]) -> None:
    """Who may ask for a grant: never to itself; the platform admin only the first USER_ADMIN of a customer
    (`user_admins`: its enabled user administrators)."""
    if caller == grantee:
        raise SelfGrant()
    if caller_kind == PLATFORM_ADMIN and (authorization != "USER_ADMIN" or user_admins):
        raise AdminGrantsOnlyFirstUserAdmin(customer)


def needs_approval(authorization: str, caller: str, grantee: str, user_admins: set[str]) -> bool:
    """Four eyes: EDIT_ALL_LOGIN_DATA and USER_ADMIN wait for approval when the customer has an enabled user
    administrator who is neither the requester nor the grantee."""
    return authorization in FOUR_EYES and bool(user_admins - {caller, grantee})


def check_approver(caller: str, requested_by: str, grantee: str) -> None:
    if caller == requested_by:
        raise NotAnApprover("requester")
    if caller == grantee:
        raise NotAnApprover("grantee")


def check_resettable(kind: str, email: str) -> None:
    if kind not in (CUSTOMER_USER, SUPPORT_ENGINEER):
        raise FailedPrecondition("only customer users and support engineers have passwords to reset")
    if not email:
        raise FailedPrecondition("the user has no e-mail address to send a one-time code to: the user itself "
                                 "sets one first")


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
