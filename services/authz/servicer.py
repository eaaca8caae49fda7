"""AuthzService: proto <-> domain, and the authorization policy of each of its methods."""
from __future__ import annotations

import datetime as dt

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from services.authz import handlers, policy
from services.authz.decisions import DecisionService, needs_assignments
from services.authz.tables import GrantRow, PrincipalRow
from services.kit import auth, names
from services.kit import permissions as P
from services.kit.auth import MethodPolicy, Resource
from services.kit.errors import InvalidArgument
from services.kit.validate import Violations, decode_page_token, encode_page_token, mask_paths, page_size, \
    to_timestamp

_NO_RESOURCE = Resource()

SERVICE = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].full_name
KIND_BY_NUMBER = {v.number: v.name.removeprefix("PRINCIPAL_KIND_") for v in authz_pb2.PrincipalKind.DESCRIPTOR.values}
KIND_NUMBER = {name: number for number, name in KIND_BY_NUMBER.items()}
AUTH_BY_NUMBER = {v.number: v.name.removeprefix("AUTHORIZATION_") for v in authz_pb2.Authorization.DESCRIPTOR.values}
AUTH_NUMBER = {name: number for number, name in AUTH_BY_NUMBER.items()}
MAX_BULK = 1000


def user_proto(row: PrincipalRow, now: dt.datetime) -> authz_pb2.User:
    user = authz_pb2.User(
        name=f"users/{row.user_id}", user_id=row.user_id, kind=KIND_NUMBER[row.kind],
        customer=f"customers/{row.customer}" if row.customer else "", display_name=row.display_name,
        email=row.email, disabled=row.disabled, create_time=to_timestamp(row.created_at),
        update_time=to_timestamp(row.updated_at),
    )
    until = handlers.lock_end(row, now)
    if until is not None:
        user.lock_expire_time.CopyFrom(to_timestamp(until))
    return user


def grant_proto(row: GrantRow) -> authz_pb2.Grant:
    return authz_pb2.Grant(
        user=f"users/{row.user_id}", authorization=AUTH_NUMBER[row.authorization],
        customer=f"customers/{row.customer}", installations=[i for i in row.installations.split(",") if i],
        granted_by=row.granted_by, grant_time=to_timestamp(row.granted_at),
    )


def authorization_name(value: int, field: str = "authorization") -> str:
    if value not in AUTH_BY_NUMBER:
        raise InvalidArgument(field, f"has unknown value {value}")
    if value == 0:
        raise InvalidArgument(field, "is required (not AUTHORIZATION_UNSPECIFIED)")
    return AUTH_BY_NUMBER[value]


def _ttl(duration, default: dt.timedelta, maximum: dt.timedelta, field: str) -> dt.timedelta:
    if duration.seconds == 0 and duration.nanos == 0:
        return default
    try:
        ttl = duration.ToTimedelta()
    except (OverflowError, ValueError):  # no timedelta holds it: far beyond any maximum
        raise InvalidArgument(field, f"must be positive and at most {maximum.days} days") from None
    if ttl <= dt.timedelta(0) or ttl > maximum:
        raise InvalidArgument(field, f"must be positive and at most {maximum.days} days")
    return ttl


class AuthzServicer(authz_pb2_grpc.AuthzServiceServicer):
    def __init__(self, db, clock, decisions: DecisionService, *, token_ttl: dt.timedelta, kdf_log2_n: int,
                 login_lock: handlers.LoginLock = handlers.LoginLock()) -> None:
        self.db = db
        self.clock = clock
        self.decisions = decisions
        self.token_ttl = token_ttl
        self.kdf = kdf_log2_n
        self.login_lock = login_lock

    # --- authorization policies -------------------------------------------------------------------------
    async def _target(self, value: str, field: str) -> Resource:
        """A resource for acting on user `value`: its customer (looked up) and the user itself."""
        user_id = names.parse("user", value, field)["user"]
        async with self.db.sessions() as session:
            row = await session.get(PrincipalRow, user_id)
        customer = f"customers/{row.customer}" if row is not None and row.customer else ""
        return Resource(customer=customer, target_user=value)

    def policies(self) -> dict[str, MethodPolicy]:
        async def create_user(req: authz_pb2.CreateUserRequest) -> Resource:
            if req.user.kind != authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER:
                return Resource()  # engineers: the platform admin only
            customer = req.user.customer
            names.parse("customer", customer, "user.customer")
            return Resource(customer=customer)

        async def list_users(req: authz_pb2.ListUsersRequest) -> Resource:
            if req.customer:
                names.parse("customer", req.customer, "customer")
            return Resource(customer=req.customer)

        async def user_name(req) -> Resource:
            return await self._target(req.name, "name")

        async def update_user(req: authz_pb2.UpdateUserRequest) -> Resource:
            return await self._target(req.user.name, "user.name")

        async def grant_target(req) -> Resource:
            return await self._target(req.user, "user")

        m = lambda name: f"/{SERVICE}/{name}"  # noqa: E731
        return {
            m("Login"): auth.PUBLIC,
            m("Logout"): MethodPolicy(P.SESSION),
            m("CreateServiceToken"): MethodPolicy(P.SERVICE_TOKENS_CREATE),
            m("CreateCustomer"): MethodPolicy(P.CUSTOMERS_CREATE),
            m("CreateUser"): MethodPolicy(P.USERS_CREATE, create_user),
            m("GetUser"): MethodPolicy(P.USERS_READ, user_name),
            m("ListUsers"): MethodPolicy(P.USERS_LIST, list_users),
            m("UpdateUser"): MethodPolicy(P.USERS_UPDATE, update_user),
            m("GrantAuthorization"): MethodPolicy(P.GRANTS_WRITE, grant_target),
            m("RevokeAuthorization"): MethodPolicy(P.GRANTS_WRITE, grant_target),
            m("ListAuthorizations"): MethodPolicy(P.GRANTS_READ, grant_target),
            m("Check"): MethodPolicy(P.CHECK, handler_decides=True),
            m("CheckBulk"): MethodPolicy(P.CHECK, handler_decides=True),
            m("SetSupportAssignment"): MethodPolicy(P.ASSIGNMENTS_WRITE),
            m("DeleteSupportAssignment"): MethodPolicy(P.ASSIGNMENTS_WRITE),
        }

    # --- sessions and tokens ----------------------------------------------------------------------------
    async def Login(self, request, context):
        token, expires, row = await handlers.login(self.db, self.clock, request.user_id, request.password,
                                                   self.token_ttl, self.kdf, self.login_lock)
        return authz_pb2.LoginResponse(access_token=token, expire_time=to_timestamp(expires),
                                       user=user_proto(row, self.clock.now()))

    async def Logout(self, request, context):
        await handlers.logout(self.db, auth.current().token)
        return authz_pb2.LogoutResponse()

    async def CreateServiceToken(self, request, context):
        user_id = names.parse("user", request.service_account, "service_account")["user"]
        ttl = _ttl(request.ttl, dt.timedelta(days=30), dt.timedelta(days=365), "ttl")
        token, expires = await handlers.create_service_token(self.db, self.clock, user_id, ttl)
        return authz_pb2.CreateServiceTokenResponse(access_token=token, expire_time=to_timestamp(expires))

    # --- customers and users ----------------------------------------------------------------------------
    async def CreateCustomer(self, request, context):
        c = request.customer
        if c.name:
            raise InvalidArgument("customer.name", "is output only; set customer.customer_number")
        row = await handlers.create_customer(self.db, self.clock, c.customer_number, c.display_name)
        return authz_pb2.CreateCustomerResponse(customer=authz_pb2.Customer(
            name=f"customers/{row.number}", customer_number=row.number, display_name=row.display_name,
            create_time=to_timestamp(row.created_at)))

    async def CreateUser(self, request, context):
        u = request.user
        v = Violations()
        v.enum("user.kind", u.kind, authz_pb2.PrincipalKind)
        v.raise_if_any()
        customer = names.parse("customer", u.customer, "user.customer")["customer"] if u.customer else ""
        row = await handlers.create_user(
            self.db, self.clock, user_id=u.user_id, kind=KIND_BY_NUMBER[u.kind], customer=customer,
            display_name=u.display_name, email=u.email, password=request.initial_password, kdf_log2_n=self.kdf)
        return authz_pb2.CreateUserResponse(user=user_proto(row, self.clock.now()))

    async def GetUser(self, request, context):
        row = await handlers.get_user(self.db, names.parse("user", request.name, "name")["user"])
        return authz_pb2.GetUserResponse(user=user_proto(row, self.clock.now()))

    async def ListUsers(self, request, context):
        caller = auth.current().subject
        customer = names.parse("customer", request.customer, "customer")["customer"] if request.customer else ""
        if not customer and caller.kind != policy.PLATFORM_ADMIN:
            raise InvalidArgument("customer", "is required")
        size = page_size(request.page_size)
        cursor = decode_page_token(request.page_token) or {}
        after = cursor.get("after", "")
        if not isinstance(after, str):
            raise InvalidArgument("page_token", "is not a token this service issued")
        rows = await handlers.list_users(self.db, customer, after, size)
        token = encode_page_token({"after": rows[size - 1].user_id}) if len(rows) > size else ""
        now = self.clock.now()
        return authz_pb2.ListUsersResponse(users=[user_proto(r, now) for r in rows[:size]], next_page_token=token)

    async def UpdateUser(self, request, context):
        user_id = names.parse("user", request.user.name, "user.name")["user"]
        paths = mask_paths(request.update_mask, {"display_name", "email", "disabled", "password"})
        self_only = await self._acting_on_self_only(request.user.name)
        row = await handlers.update_user(
            self.db, self.clock, user_id, paths, display_name=request.user.display_name, email=request.user.email,
            disabled=request.user.disabled, new_password=request.new_password, caller_is_self_only=self_only,
            kdf_log2_n=self.kdf)
        return authz_pb2.UpdateUserResponse(user=user_proto(row, self.clock.now()))

    @staticmethod
    async def _acting_on_self_only(target: str) -> bool:
        """True when the caller changes its own user without being a user administrator of it."""
        caller = auth.current()
        if caller.subject.user != target or caller.subject.kind == policy.PLATFORM_ADMIN:
            return False
        if caller.subject.kind != policy.CUSTOMER_USER:
            return True
        return not (await caller.check(P.USERS_LIST, Resource(customer=caller.subject.customer))).allowed

    # --- authorizations ---------------------------------------------------------------------------------
    async def GrantAuthorization(self, request, context):
        user_id = names.parse("user", request.user, "user")["user"]
        authorization = authorization_name(request.authorization)
        row = await handlers.grant(self.db, self.clock, user_id, authorization, list(request.installations),
                                   auth.current().subject.user)
        return authz_pb2.GrantAuthorizationResponse(grant=grant_proto(row))

    async def RevokeAuthorization(self, request, context):
        user_id = names.parse("user", request.user, "user")["user"]
        await handlers.revoke(self.db, user_id, authorization_name(request.authorization))
        return authz_pb2.RevokeAuthorizationResponse()

    async def ListAuthorizations(self, request, context):
        rows = await handlers.grants_of(self.db, names.parse("user", request.user, "user")["user"])
        return authz_pb2.ListAuthorizationsResponse(grants=[grant_proto(r) for r in rows])

    # --- decisions --------------------------------------------------------------------------------------
    @staticmethod
    def _decision_proto(decision: auth.Decision, out: authz_pb2.CheckResponse | None = None) -> authz_pb2.CheckResponse:
        """The decision as a CheckResponse (filled into `out`, e.g. a CheckBulkResponse's new result, if given)."""
        out = authz_pb2.CheckResponse() if out is None else out
        out.allowed, out.authenticated = decision.allowed, decision.authenticated
        out.reason, out.decision_id = decision.reason, decision.decision_id
        if decision.required:
            out.required_authorizations.extend([AUTH_NUMBER[a] for a in decision.required])
        if decision.incidents:
            out.incidents.extend(decision.incidents)
        subject = decision.subject
        if subject is not None:
            target = out.subject
            target.user, target.kind, target.customer = subject.user, KIND_NUMBER[subject.kind], subject.customer
        return out

    @staticmethod
    def _validate_check(field: str, permission: str) -> None:
        if not permission:
            raise InvalidArgument(field, "is required")
        if len(permission) > 100:
            raise InvalidArgument(field, "is longer than 100 characters")

    async def _caller_and_subject(self, subject_token: str, permissions: list[str]) -> tuple[list, bool]:
        """Check's and CheckBulk's policy is `handler_decides`: the calling service's token and the subject's
        are read in one statement; the caller must hold authz.check before anything about the request is
        answered (as the kit's interceptor would have required). Returns the subject's rows."""
        ctx = auth.current()
        with_assignments = needs_assignments([(p, _NO_RESOURCE) for p in permissions])
        caller_rows, subject_rows = await self.decisions.rows_of_two(ctx.token, subject_token, with_assignments)
        ctx.settle(self.decisions.decide(caller_rows, False, [(P.CHECK, _NO_RESOURCE)])[0])
        return subject_rows, with_assignments

    async def Check(self, request, context):
        rows, with_assignments = await self._caller_and_subject(request.subject_token, [request.permission])
        self._validate_check("permission", request.permission)
        decision, = self.decisions.decide(rows, with_assignments,
                                          [(request.permission, Resource.from_proto(request.resource))])
        return self._decision_proto(decision)

    async def CheckBulk(self, request, context):
        items = request.items
        rows, with_assignments = await self._caller_and_subject(
            request.subject_token, [i.permission for i in items[:MAX_BULK]])
        if len(items) > MAX_BULK:
            raise InvalidArgument("items", f"may hold at most {MAX_BULK} checks")
        for i, item in enumerate(items):
            permission = item.permission
            if not permission or len(permission) > 100:
                self._validate_check(f"items[{i}].permission", permission)
        decisions = self.decisions.decide(rows, with_assignments,
                                          [(item.permission, Resource.from_proto(item.resource)) for item in items])
        response = authz_pb2.CheckBulkResponse()
        results = response.results
        for decision in decisions:
            self._decision_proto(decision, results.add())
        return response

    # --- support assignments ----------------------------------------------------------------------------
    async def SetSupportAssignment(self, request, context):
        a = request.assignment
        incident = names.parse("incident", a.incident, "assignment.incident")
        engineer = names.parse("user", a.engineer, "assignment.engineer")["user"]
        system = names.parse("system", a.system, "assignment.system")
        if system["customer"] != incident["customer"]:
            raise InvalidArgument("assignment.system", "must belong to the incident's customer")
        row = await handlers.set_assignment(self.db, self.clock, a.incident, engineer, a.system, incident["customer"])
        return authz_pb2.SetSupportAssignmentResponse(assignment=authz_pb2.SupportAssignment(
            incident=row.incident, engineer=f"users/{row.engineer}", system=row.system,
            create_time=to_timestamp(row.created_at)))

    async def DeleteSupportAssignment(self, request, context):
        names.parse("incident", request.incident, "incident")
        await handlers.delete_assignment(self.db, request.incident)
        return authz_pb2.DeleteSupportAssignmentResponse()
