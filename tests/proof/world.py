"""Blocking helpers the proof rows share: principals (made as a customer makes them, each user setting its own
password with the one-time code mailed to it), systems, incidents, logon data, the log, and direct database
access (as an attacker with access to the depot's database would have)."""
from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import secrets as _secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from services.kit.db import sync_url
from services.kit.mailsink import read_messages
from services.kit.validate import to_timestamp
from tests.harness import CODE, TEST_PASSWORD, code_in, email_of

SYSTEM_USER = dp.LOGON_DATA_KIND_SYSTEM_USER
SAPROUTER = dp.LOGON_DATA_KIND_SAPROUTER_PASSWORD
SERVER_OS = dp.LOGON_DATA_KIND_SERVER_OS_USER
_numbers = itertools.count(random.randint(100, 900) * 10_000_000)


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def planted(label: str = "secret") -> str:
    """A unique value nobody could find by accident."""
    return f"PLANT-{label}-{_secrets.token_hex(8)}"


def ts(value: dt.datetime):
    return to_timestamp(value)


def error_text(err: grpc.RpcError) -> str:
    """Everything a failed call tells its caller: code, message, trailers (google.rpc.Status decoded) and
    the client's debug string."""
    parts = [err.code().name if err.code() else "", err.details() or ""]
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            parts.append(status.message)
            for detail in status.details:
                for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
                    if detail.Is(kind.DESCRIPTOR):
                        msg = kind()
                        detail.Unpack(msg)
                        parts.append(str(msg))
        else:
            parts.append(f"{key}={value!r}")
    debug = getattr(err, "debug_error_string", None)
    if callable(debug):
        parts.append(debug() or "")
    return "\n".join(parts)


def reason_of(err: grpc.RpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info.reason
    return ""


def outcome(call, *args, **kwargs) -> tuple[grpc.StatusCode, object]:
    """(code, response or error) of a blocking call, never raising an RpcError."""
    try:
        return grpc.StatusCode.OK, call(*args, **kwargs)
    except grpc.RpcError as err:
        return err.code(), err


THROTTLED_WAIT_S = 60.0  # how long a Login or SetPassword refused for the per-peer rate is asked again


def messages_to(folder: Path, address: str) -> list:
    """The messages the mail sink wrote to `folder` for `address`, oldest first."""
    return read_messages(folder, address)


def mailed_codes(folder: Path) -> set[str]:
    """Every one-time code in the messages of `folder` (as mailed, XXXXX-XXXXX-XXXXX-XXXXX)."""
    return {code for message in read_messages(folder) for code in CODE.findall(message.get_content())}


def _retried(call, request):
    """A public call of the Login kind, asked again while the per-peer rate refuses it (RESOURCE_EXHAUSTED: the
    proof's own generated Logins and SetPasswords share this process's address with the rows' set-up)."""
    deadline = time.monotonic() + THROTTLED_WAIT_S
    while True:
        try:
            return call(request, timeout=30)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Principal:
    name: str  # users/...
    token: str

    @property
    def md(self):
        return md(self.token)

    @property
    def user_id(self) -> str:
        return self.name.removeprefix("users/")


class Actors:
    """Creates things through the real services (blocking), as a customer's people make them: the platform admin
    creates a customer and its first user administrator; that administrator creates the customer's users and
    grants their authorizations (a second user administrator approves where four eyes apply); the platform admin
    creates engineers; every user sets its own password with the one-time code mailed to it (read from the mail
    sink's folder, `live.mail_dir`). The customers' user administrators are kept on `live` (customer_admins), so
    that every Actors of one suite knows them."""

    def __init__(self, live, via: str | None = None) -> None:
        self.live = live
        self.via = via
        if not hasattr(live, "customer_admins"):
            live.customer_admins = {}
        # customer number -> its user administrators (whole-customer USER_ADMIN), the first one first
        self.admins: dict[str, list[Principal]] = live.customer_admins

    @property
    def authz(self):
        return self.live.stub("authz", self.via)

    @property
    def conn(self):
        return self.live.stub("connections", self.via)

    @property
    def depot(self):
        return self.live.stub("depot", self.via)

    @property
    def admin(self) -> Principal:
        return Principal("users/admin", self.live.admin_token)

    # --- mail and passwords -----------------------------------------------------------------------------------
    def mail_to(self, address: str) -> list:
        """The messages the mail sink received for `address`, oldest first."""
        return messages_to(self.live.mail_dir, address)

    def code_for(self, user_id: str) -> str:
        """The newest one-time code mailed to the user (to its own address, email_of(user_id))."""
        return code_in(self.mail_to(email_of(user_id)))

    def set_password(self, user_id: str, code: str, password: str = TEST_PASSWORD) -> None:
        _retried(self.authz.SetPassword, az.SetPasswordRequest(user_id=user_id, code=code, new_password=password))

    def enroll(self, user_id: str, password: str = TEST_PASSWORD) -> str:
        """Set the user's password with the code mailed to it, and log in: its token."""
        self.set_password(user_id, self.code_for(user_id), password)
        return self.login(user_id, password)

    def login(self, user_id: str, password: str = TEST_PASSWORD) -> str:
        return _retried(self.authz.Login, az.LoginRequest(user_id=user_id, password=password)).access_token

    # --- customers, users, grants -------------------------------------------------------------------------------
    def create_user(self, user_id: str, kind: int, customer: str, by: Principal) -> az.User:
        """CreateUser as `by`, with the user's own address (email_of(user_id)): the user, without a password."""
        return self.authz.CreateUser(az.CreateUserRequest(user=az.User(
            user_id=user_id, kind=kind, customer=f"customers/{customer}" if customer else "",
            display_name=f"User {user_id}" if kind == az.PRINCIPAL_KIND_CUSTOMER_USER else f"Engineer {user_id}",
            email=email_of(user_id))), metadata=by.md).user

    def customer(self) -> str:
        """A new customer and its first user administrator (created and granted USER_ADMIN by the platform admin,
        enrolled with its code): the customer's number. customer_admin(number) is that administrator."""
        number = str(next(_numbers))
        self.authz.CreateCustomer(az.CreateCustomerRequest(customer=az.Customer(
            customer_number=number, display_name=f"Customer {number}")), metadata=self.admin.md)
        user_id = f"S{next(_numbers):010d}"
        self.create_user(user_id, az.PRINCIPAL_KIND_CUSTOMER_USER, number, self.admin)
        self.authz.GrantAuthorization(az.GrantAuthorizationRequest(
            user=f"users/{user_id}", authorization=az.AUTHORIZATION_USER_ADMIN), metadata=self.admin.md)
        self.admins[number] = [Principal(f"users/{user_id}", self.enroll(user_id))]
        return number

    def customer_admin(self, customer: str) -> Principal:
        """The customer's first user administrator (made by customer())."""
        return self.admins[customer][0]

    def _as_admin(self, customer: str, by: Principal | None, call):
        """`call(principal)` as `by`, or as the first of the customer's user administrators whose token still
        works (a row may have logged one out, disabled it or reset its password)."""
        if by is not None:
            return call(by)
        last = None
        for admin in list(self.admins.get(customer, ())):
            try:
                return call(admin)
            except grpc.RpcError as err:
                if err.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise
                last = err
        if last is not None:
            raise last
        raise AssertionError(f"customer {customer} has no user administrator known to the proof's actors")

    def user(self, customer: str, authorizations=(), *, installations=(), password: str = TEST_PASSWORD,
             admin: Principal | None = None) -> Principal:
        """A customer user made by `admin` (by default the customer's user administrator), holding
        `authorizations` (a list, all for `installations`, or a dict authorization -> installations), enrolled and
        logged in."""
        user_id = f"S{next(_numbers):010d}"
        self._as_admin(customer, admin, lambda by: self.create_user(
            user_id, az.PRINCIPAL_KIND_CUSTOMER_USER, customer, by))
        grants = dict(authorizations) if isinstance(authorizations, dict) else {
            name: tuple(installations) for name in authorizations}
        for name, scope in grants.items():
            self.grant(f"users/{user_id}", name, scope, by=admin, customer=customer)
        principal = Principal(f"users/{user_id}", self.enroll(user_id, password))
        if "USER_ADMIN" in grants and not grants["USER_ADMIN"]:
            self.admins.setdefault(customer, []).append(principal)
        return principal

    def _customer_of(self, user: str) -> str:
        found = self.authz.GetUser(az.GetUserRequest(name=user), metadata=self.admin.md).user.customer
        return found.removeprefix("customers/")

    def grant(self, user: str, authorization: str, installations=(), by: Principal | None = None, *,
              customer: str | None = None) -> az.Grant:
        """Grant `authorization` to `user` as `by` (by default one of its customer's user administrators); when
        the grant waits for four eyes, another of the customer's user administrators approves it. The grant."""
        customer = customer if customer is not None else self._customer_of(user)
        value = az.Authorization.Value(f"AUTHORIZATION_{authorization}")
        request = az.GrantAuthorizationRequest(user=user, authorization=value, installations=list(installations))
        grant = self._as_admin(customer, by, lambda p: self.authz.GrantAuthorization(request, metadata=p.md)).grant
        if grant.state == az.GRANT_STATE_PENDING_APPROVAL:
            grant = self.approve(user, authorization, customer, requested_by=grant.granted_by)
        return grant

    def approve(self, user: str, authorization: str, customer: str, *, requested_by: str) -> az.Grant:
        """Approve the pending grant as a user administrator of `customer` who is neither its requester nor its
        grantee (the first whose token still works)."""
        request = az.ApproveAuthorizationRequest(user=user,
                                                 authorization=az.Authorization.Value(f"AUTHORIZATION_{authorization}"))
        last = None
        for admin in list(self.admins.get(customer, ())):
            if admin.name in (user, requested_by):
                continue
            try:
                return self.authz.ApproveAuthorization(request, metadata=admin.md).grant
            except grpc.RpcError as err:
                if err.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise
                last = err
        raise AssertionError(f"nobody known could approve {authorization} for {user}: {last and last.details()}")

    def engineer(self, password: str = TEST_PASSWORD) -> Principal:
        """A support engineer, created by the platform admin, enrolled and logged in."""
        user_id = f"eng{next(_numbers)}"
        self.create_user(user_id, az.PRINCIPAL_KIND_SUPPORT_ENGINEER, "", self.admin)
        return Principal(f"users/{user_id}", self.enroll(user_id, password))

    def system(self, customer: str, by: Principal, *, installation: str = "20012345", sid: str = "PRD") -> str:
        number = str(next(_numbers))
        response = self.conn.CreateSystem(cn.CreateSystemRequest(parent=f"customers/{customer}", system=cn.System(
            installation_number=installation, system_id=sid, system_number=number,
            description=f"System {sid} {number}")), metadata=by.md)
        return response.system.name

    def incident(self, system: str, by: Principal) -> str:
        customer = system.split("/")[1]
        return self.conn.CreateIncident(cn.CreateIncidentRequest(parent=f"customers/{customer}", incident=cn.Incident(
            system=system, title="Short dumps in billing", priority=cn.INCIDENT_PRIORITY_HIGH)),
            metadata=by.md).incident.name

    def assign(self, incident: str, engineer: Principal) -> cn.Incident:
        return self.conn.AssignProcessor(cn.AssignProcessorRequest(name=incident), metadata=engineer.md).incident

    def set_status(self, incident: str, status: int, by: Principal) -> cn.Incident:
        return self.conn.UpdateIncidentStatus(cn.UpdateIncidentStatusRequest(name=incident, status=status),
                                              metadata=by.md).incident

    def expire_in(self, **delta: float):
        return ts(self.live.clock.now() + dt.timedelta(**delta))

    def entry(self, by: Principal, system: str, *, secret: str = "Init1al-Secret!", kind: int = SYSTEM_USER,
              user_name: str = "SUPPORT1", expire_time=None, **values) -> dp.LogonData:
        if kind == SYSTEM_USER:
            values.setdefault("client", "001")
        if kind != SAPROUTER:
            values.setdefault("user_name", user_name)
        values.setdefault("expire_time", expire_time or self.expire_in(days=30))
        return self.depot.CreateLogonData(dp.CreateLogonDataRequest(
            parent=system, logon_data=dp.LogonData(kind=kind, **values), secret=secret), metadata=by.md).logon_data

    def reveal(self, by: Principal, name: str, reason: str = "") -> dp.RevealLogonDataResponse:
        return self.depot.RevealLogonData(dp.RevealLogonDataRequest(name=name, reason=reason), metadata=by.md)

    def update(self, by: Principal, entry: dp.LogonData, paths, secret: str = "", etag: str | None = None,
               **values) -> dp.LogonData:
        request = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(
            name=entry.name, etag=entry.etag if etag is None else etag, **values), secret=secret)
        request.update_mask.paths.extend(paths)
        return self.depot.UpdateLogonData(request, metadata=by.md).logon_data

    def events(self, by: Principal, customer: str, **filters) -> list[dp.LogEvent]:
        out, token = [], ""
        while True:
            page = self.depot.ListLogEvents(dp.ListLogEventsRequest(
                parent=f"customers/{customer}", page_token=token, page_size=1000, **filters), metadata=by.md)
            out.extend(page.events)
            token = page.next_page_token
            if not token:
                return out

    def verify(self, by: Principal, customer: str) -> dp.VerifyLogResponse:
        return self.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{customer}"), metadata=by.md)

    def key_status(self) -> dp.GetKeyStatusResponse:
        return self.depot.GetKeyStatus(dp.GetKeyStatusRequest(), metadata=self.admin.md)

    def rotate(self) -> dp.KeyVersion:
        return self.depot.RotateKey(dp.RotateKeyRequest(), metadata=self.admin.md).key


@dataclass
class Customer:
    """A customer with one system and the principals most rows need."""

    number: str
    system: str
    ops: Principal  # MAINTAIN_SYSTEM_DATA, CREATE_INCIDENTS, OPEN_REMOTE_CONNECTIONS, USER_ADMIN
    creator: Principal  # EDIT_MY_LOGIN_DATA
    edit_all: Principal  # EDIT_ALL_LOGIN_DATA
    extra: dict[str, Principal] = field(default_factory=dict)
    admin: Principal | None = None  # USER_ADMIN only: the first user administrator, made by the platform admin

    @property
    def name(self) -> str:
        return f"customers/{self.number}"


def new_customer(actors: Actors) -> Customer:
    """A customer with its first user administrator (by the platform admin), who makes `ops` (a second user
    administrator, so that EDIT_ALL_LOGIN_DATA then waits for four eyes), `creator` and `edit_all` (requested by
    the first administrator, approved by `ops`), and one system."""
    number = actors.customer()
    ops = actors.user(number, ["MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS", "OPEN_REMOTE_CONNECTIONS", "USER_ADMIN"])
    system = actors.system(number, ops)
    return Customer(number, system, ops, actors.user(number, ["EDIT_MY_LOGIN_DATA"]),
                    actors.user(number, ["EDIT_ALL_LOGIN_DATA"]), admin=actors.customer_admin(number))


# --- the depot's database, as someone with access to it --------------------------------------------------------
_engines: dict[str, Engine] = {}


def engine(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = create_engine(sync_url(url))
    return _engines[url]


def sql(url: str, statement: str, **params):
    with engine(url).begin() as conn:
        result = conn.execute(text(statement), params)
        return result.all() if result.returns_rows else result.rowcount


def dispose_engines() -> None:
    for eng in _engines.values():
        eng.dispose()
    _engines.clear()


def entry_id(name: str) -> str:
    return name.rsplit("/", 1)[1]


def sqlite_files(url: str) -> list[str]:
    path = url.removeprefix("sqlite:///")
    return [p for p in (path, path + "-wal", path + "-shm", path + "-journal") if os.path.exists(p)]
