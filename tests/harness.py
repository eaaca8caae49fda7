"""The in-process suite for integration tests: real authz, connections and depot servers on port 0,
each on its own fresh database (SQLite file or a new PostgreSQL database), sharing a ManualClock, and a real
SMTP sink (services.kit.mailsink) that receives authz's one-time codes.

Users are made as a customer makes them: every customer gets its first user administrator from the platform
admin (`customer_admin`), which creates the customer's other users and grants their authorizations (a second
user administrator approves where four eyes apply); each user sets its password with the code mailed to it."""
from __future__ import annotations

import datetime as dt
import importlib
import itertools
import os
import random
import re
import uuid
from pathlib import Path

import grpc
import psycopg
from sqlalchemy.engine import make_url

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2, connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2_grpc
from services.kit import app as kit_app
from services.kit.clients import TokenFile
from services.kit.clock import UTC, ManualClock
from services.kit.config import ServiceConfig, identity_of
from services.kit.mail import SmtpSettings
from services.kit.mailsink import Sink

POSTGRES_ENV = "RS_TEST_POSTGRES_URL"
TEST_PASSWORD = "correct horse battery staple"
STUBS = {
    "authz": authz_pb2_grpc.AuthzServiceStub,
    "connections": connections_pb2_grpc.ConnectionsServiceStub,
    "depot": depot_pb2_grpc.LogonDepotServiceStub,
}
_numbers = itertools.count(random.randint(1000, 9000) * 100000)
CODE = re.compile(r"one-time code: ([A-Z2-7]{5}(?:-[A-Z2-7]{5}){3})")


def email_of(user_id: str) -> str:
    return f"{user_id.lower()}@users.example.com"


def code_in(messages) -> str:
    """The one-time code of the newest message that carries one."""
    for message in reversed(messages):
        found = CODE.search(message.get_content())
        if found:
            return found.group(1)
    raise AssertionError("no one-time code was mailed")


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def _admin_conninfo(url: str) -> str:
    u = make_url(url)
    return f"host={u.host or '127.0.0.1'} port={u.port or 5432} user={u.username or 'postgres'} dbname={u.database or 'postgres'}" + (
        f" password={u.password}" if u.password else "")


class Databases:
    """Creates fresh databases for one backend and drops them at the end."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.created: list[str] = []

    def new(self, label: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp / (label + '-' + uuid.uuid4().hex[:6] + '.db')}"
        base = postgres_url()
        assert base, f"{POSTGRES_ENV} is not set"
        name = f"rs_test_{label}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_admin_conninfo(base), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        base = postgres_url()
        if not self.created or not base:
            return
        with psycopg.connect(_admin_conninfo(base), autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


MODULES = {"gateway": "gateway.server", "relay": "services.connections.relay.server"}


class Suite:
    """authz + connections + depot, in this process, on port 0."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.var = tmp / "var"
        self.clock = ManualClock(dt.datetime.now(UTC).replace(microsecond=0))
        self.databases = Databases(backend, tmp)
        self.running: dict[str, kit_app.Running] = {}
        self.db_url: dict[str, str] = {}
        self.addr: dict[str, str] = {}
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.admin_token = ""
        self.mail = Sink(tmp / "mail")
        self._mail_started = False
        self.admins: dict[str, list[tuple[str, str]]] = {}  # customer -> its user administrators (name, token)

    def config(self, service: str) -> ServiceConfig:
        return ServiceConfig(
            service=service, port=0, database_url=self.db_url[service], var_dir=self.var,
            authz_addr=self.addr.get("authz", ""), connections_addr=self.addr.get("connections", ""),
            depot_addr=self.addr.get("depot", ""),
            service_token_file=self.var / "secrets" / f"{identity_of(service)}.token",
            authz_deadline_s=2.0, call_deadline_s=5.0, grace_s=0.5, events_heartbeat_s=0.5,
        )

    async def start_service(self, service: str, build=None, **build_kwargs) -> kit_app.Running:
        """Start (or restart) one service; `build` defaults to services.<service>.server.build."""
        if service not in self.db_url:
            owner = identity_of(service)  # the relay shares the connections database
            self.db_url[service] = self.db_url[owner] if owner != service else self.databases.new(service)
        config = self.config(service)
        module = MODULES.get(service, f"services.{service}.server")
        build = build or importlib.import_module(module).build
        if service == "authz" and "mail" not in build_kwargs and build is importlib.import_module(module).build:
            build_kwargs["mail"] = SmtpSettings(port=self.mail.port)
        deps = kit_app.Deps(config, self.clock, TokenFile(config.service_token_file))
        running = await kit_app.start(deps, lambda d: build(d, **build_kwargs))
        self.running[service] = running
        self.addr[service] = running.address
        self.channels[service] = grpc.aio.insecure_channel(running.address)
        return running

    async def start(self, services=("authz", "connections", "depot")) -> "Suite":
        os.environ.setdefault("RS_AUTHZ_KDF_LOG2_N", "10")  # fast password hashing in tests only
        os.environ.setdefault("RS_AUTHZ_PEER_LOGINS_PER_MIN", "0")  # every test's calls come from one address
        if not self._mail_started:
            self.mail.start()
            self._mail_started = True
        for service in services:
            await self.start_service(service)
        self.admin_token = (self.var / "admin.token").read_text().strip()
        return self

    async def stop_service(self, service: str) -> None:
        await self.channels.pop(service).close()
        await self.running.pop(service).stop(0.2)

    async def stop(self) -> None:
        for service in list(self.running)[::-1]:
            await self.stop_service(service)
        self.databases.drop_all()
        if self._mail_started:
            self.mail.stop()
            self._mail_started = False

    # --- conveniences for tests -------------------------------------------------------------------------
    def stub(self, service: str):
        return STUBS[service](self.channels[service])

    @staticmethod
    def md(token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    async def new_customer(self) -> str:
        """A new customer and its first user administrator (`customer_admin`), as the platform admin makes them."""
        number = str(next(_numbers))
        await self.stub("authz").CreateCustomer(authz_pb2.CreateCustomerRequest(
            customer=authz_pb2.Customer(customer_number=number, display_name=f"Customer {number}")),
            metadata=self.md(self.admin_token))
        user_id = f"S{next(_numbers):010d}"
        await self.create_user(user_id, authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER, number, self.admin_token)
        await self.stub("authz").GrantAuthorization(authz_pb2.GrantAuthorizationRequest(
            user=f"users/{user_id}", authorization=authz_pb2.AUTHORIZATION_USER_ADMIN),
            metadata=self.md(self.admin_token))
        self.admins[number] = [(f"users/{user_id}", await self.enroll(user_id))]
        return number

    def customer_admin(self, customer: str) -> tuple[str, str]:
        """The customer's first user administrator (name, token), made by new_customer."""
        return self.admins[customer][0]

    async def login(self, user_id: str, password: str = TEST_PASSWORD) -> str:
        response = await self.stub("authz").Login(authz_pb2.LoginRequest(user_id=user_id, password=password))
        return response.access_token

    def code_for(self, user_id: str) -> str:
        """The newest one-time code mailed to the user (its address is email_of(user_id))."""
        return code_in(self.mail.messages(email_of(user_id)))

    async def enroll(self, user_id: str, password: str = TEST_PASSWORD) -> str:
        """Set the user's password with the code mailed to it, and log in: its token."""
        await self.stub("authz").SetPassword(authz_pb2.SetPasswordRequest(
            user_id=user_id, code=self.code_for(user_id), new_password=password))
        return await self.login(user_id, password)

    async def create_user(self, user_id: str, kind: int, customer: str, by_token: str):
        """CreateUser as `by_token`, with the user's own address (email_of); the response."""
        return await self.stub("authz").CreateUser(authz_pb2.CreateUserRequest(user=authz_pb2.User(
            user_id=user_id, kind=kind, customer=f"customers/{customer}" if customer else "",
            display_name=f"User {user_id}", email=email_of(user_id))), metadata=self.md(by_token))

    async def grant(self, customer: str, user: str, name: str, installations=(), *, by: str | None = None):
        """Grant `name` to `user` as the customer's first user administrator (or `by`, a token), and approve it
        with another of its user administrators when it waits for four eyes; the grant."""
        authz = self.stub("authz")
        by_name, by_token = (None, by) if by else self.customer_admin(customer)
        request = authz_pb2.GrantAuthorizationRequest(
            user=user, authorization=authz_pb2.Authorization.Value(f"AUTHORIZATION_{name}"),
            installations=list(installations))
        grant = (await authz.GrantAuthorization(request, metadata=self.md(by_token))).grant
        if grant.state == authz_pb2.GRANT_STATE_PENDING_APPROVAL:
            approver = next(token for admin, token in self.admins[customer]
                            if admin not in (user, grant.granted_by) and token != by_token)
            grant = (await authz.ApproveAuthorization(authz_pb2.ApproveAuthorizationRequest(
                user=user, authorization=request.authorization), metadata=self.md(approver))).grant
        return grant

    async def new_user(self, customer: str, authorizations: list[str] = (), *, user_id: str | None = None,
                       installations: list[str] = ()) -> tuple[str, str]:
        """A customer user made by the customer's first user administrator, with `authorizations`, logged in."""
        user_id = user_id or f"S{next(_numbers):010d}"
        await self.create_user(user_id, authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER, customer,
                               self.customer_admin(customer)[1])
        for name in authorizations:
            await self.grant(customer, f"users/{user_id}", name, installations)
        token = await self.enroll(user_id)
        if "USER_ADMIN" in authorizations and not installations:
            self.admins[customer].append((f"users/{user_id}", token))
        return f"users/{user_id}", token

    async def new_engineer(self) -> tuple[str, str]:
        user_id = f"eng{next(_numbers)}"
        await self.create_user(user_id, authz_pb2.PRINCIPAL_KIND_SUPPORT_ENGINEER, "", self.admin_token)
        return f"users/{user_id}", await self.enroll(user_id)

    async def new_system(self, customer: str, token: str, *, sid: str = "PRD", installation: str = "20012345") -> str:
        number = str(next(_numbers))
        response = await self.stub("connections").CreateSystem(connections_pb2.CreateSystemRequest(
            parent=f"customers/{customer}",
            system=connections_pb2.System(installation_number=installation, system_id=sid, system_number=number,
                                          description=f"System {sid} {number}")),
            metadata=self.md(token))
        return response.system.name
