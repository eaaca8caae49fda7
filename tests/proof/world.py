"""Blocking helpers the proof rows share: principals, systems, incidents, logon data, the log, and direct
database access (as an attacker with access to the depot's database would have)."""
from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import secrets as _secrets
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from services.kit.db import sync_url
from services.kit.validate import to_timestamp
from tests.harness import TEST_PASSWORD

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
    """Creates things through the real services (blocking), as the platform admin or a given principal."""

    def __init__(self, live, via: str | None = None) -> None:
        self.live = live
        self.via = via

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

    def customer(self) -> str:
        number = str(next(_numbers))
        self.authz.CreateCustomer(az.CreateCustomerRequest(customer=az.Customer(
            customer_number=number, display_name=f"Customer {number}")), metadata=self.admin.md)
        return number

    def login(self, user_id: str, password: str = TEST_PASSWORD) -> str:
        return self.authz.Login(az.LoginRequest(user_id=user_id, password=password)).access_token

    def user(self, customer: str, authorizations=(), *, installations=(), password: str = TEST_PASSWORD,
             admin: Principal | None = None) -> Principal:
        user_id = f"S{next(_numbers):010d}"
        by = (admin or self.admin).md
        self.authz.CreateUser(az.CreateUserRequest(user=az.User(
            user_id=user_id, kind=az.PRINCIPAL_KIND_CUSTOMER_USER, customer=f"customers/{customer}",
            display_name=f"User {user_id}"), initial_password=password), metadata=by)
        for name in authorizations:
            self.grant(f"users/{user_id}", name, installations, by=admin)
        return Principal(f"users/{user_id}", self.login(user_id, password))

    def grant(self, user: str, authorization: str, installations=(), by: Principal | None = None) -> None:
        self.authz.GrantAuthorization(az.GrantAuthorizationRequest(
            user=user, authorization=az.Authorization.Value(f"AUTHORIZATION_{authorization}"),
            installations=list(installations)), metadata=(by or self.admin).md)

    def engineer(self, password: str = TEST_PASSWORD) -> Principal:
        user_id = f"eng{next(_numbers)}"
        self.authz.CreateUser(az.CreateUserRequest(user=az.User(
            user_id=user_id, kind=az.PRINCIPAL_KIND_SUPPORT_ENGINEER, display_name=f"Engineer {user_id}"),
            initial_password=password), metadata=self.admin.md)
        return Principal(f"users/{user_id}", self.login(user_id, password))

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

    @property
    def name(self) -> str:
        return f"customers/{self.number}"


def new_customer(actors: Actors) -> Customer:
    number = actors.customer()
    ops = actors.user(number, ["MAINTAIN_SYSTEM_DATA", "CREATE_INCIDENTS", "OPEN_REMOTE_CONNECTIONS", "USER_ADMIN"])
    system = actors.system(number, ops)
    return Customer(number, system, ops, actors.user(number, ["EDIT_MY_LOGIN_DATA"]),
                    actors.user(number, ["EDIT_ALL_LOGIN_DATA"]))


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
