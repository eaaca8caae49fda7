"""AuthzService: each RPC's request parsed and checked, handed to its use case, and its result as the response."""
from __future__ import annotations

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from services.authz import assignments, codes, convert, grants, identity_log, model, notifications, sessions, users
from services.authz.decisions import DecisionService
from services.authz.kdf import KdfPool
from services.authz.settings import AuthzSettings
from services.authz.store import Store
from services.authz.throttle import LoginThrottle
from services.authz.users import Actor
from services.kit import auth, names
from services.kit.auth import Resource
from services.kit.clock import Clock
from services.kit.mail import Mailer
from services.kit.errors import InvalidArgument
from services.kit.principals import PLATFORM_ADMIN
from services.kit.validate import Violations, mask_paths, page_size, to_timestamp

MAX_BULK = 1000  # checks in one CheckBulk


def _check_permission(field: str, permission: str) -> None:
    problem = model.permission_problem(permission)
    if problem is not None:
        raise InvalidArgument(field, problem)


class AuthzServicer(authz_pb2_grpc.AuthzServiceServicer):
    def __init__(self, store: Store, clock: Clock, decisions: DecisionService, settings: AuthzSettings,
                 kdf: KdfPool, login_throttle: LoginThrottle, mailer: Mailer) -> None:
        self.store = store
        self.clock = clock
        self.decisions = decisions
        self.settings = settings
        self.kdf = kdf
        self.login_throttle = login_throttle
        self.mailer = mailer

    # --- sessions and tokens ----------------------------------------------------------------------------
    async def Login(self, request, context):
        token, expires, row = await sessions.login(self.store, self.clock, self.settings, self.kdf,
                                                   self.login_throttle, request.user_id, request.password,
                                                   context.peer())
        return authz_pb2.LoginResponse(access_token=token, expire_time=to_timestamp(expires),
                                       user=convert.user_proto(row, self.clock.now()))

    async def Logout(self, request, context):
        await sessions.logout(self.store, auth.current().token)
        return authz_pb2.LogoutResponse()

    async def CreateServiceToken(self, request, context):
        user_id = names.parse("user", request.service_account, "service_account")["user"]
        ttl = convert.ttl_of(request.ttl, model.SERVICE_TOKEN_TTL, model.MAX_SERVICE_TOKEN_TTL, "ttl")
        token, expires = await sessions.create_service_token(self.store, self.clock, Actor.current().name, user_id,
                                                             ttl)
        return authz_pb2.CreateServiceTokenResponse(access_token=token, expire_time=to_timestamp(expires))

    # --- customers and users ----------------------------------------------------------------------------
    async def CreateCustomer(self, request, context):
        c = request.customer
        if c.name:
            raise InvalidArgument("customer.name", "is output only; set customer.customer_number")
        row = await users.create_customer(self.store, self.clock, Actor.current(), c.customer_number,
                                          c.display_name)
        return authz_pb2.CreateCustomerResponse(customer=convert.customer_proto(row))

    async def CreateUser(self, request, context):
        u = request.user
        v = Violations()
        v.enum("user.kind", u.kind, authz_pb2.PrincipalKind)
        v.raise_if_any()
        customer = names.parse("customer", u.customer, "user.customer")["customer"] if u.customer else ""
        row = await users.create_user(
            self.store, self.clock, self.mailer, self.settings.enroll_code_ttl, Actor.current(), user_id=u.user_id,
            kind=convert.kind_of(u.kind), customer=customer, display_name=u.display_name, email=u.email,
            initial_password=request.initial_password)
        return authz_pb2.CreateUserResponse(user=convert.user_proto(row, self.clock.now()))

    async def GetUser(self, request, context):
        row = await users.get_user(self.store, names.parse("user", request.name, "name")["user"])
        return authz_pb2.GetUserResponse(user=convert.user_proto(row, self.clock.now()))

    async def ListUsers(self, request, context):
        customer = names.parse("customer", request.customer, "customer")["customer"] if request.customer else ""
        if not customer and auth.current().subject.kind != PLATFORM_ADMIN:
            raise InvalidArgument("customer", "is required")
        rows, token = await users.list_users(self.store, customer, page_size(request.page_size), request.page_token)
        now = self.clock.now()
        return authz_pb2.ListUsersResponse(users=[convert.user_proto(r, now) for r in rows], next_page_token=token)

    async def UpdateUser(self, request, context):
        user_id = names.parse("user", request.user.name, "user.name")["user"]
        paths = mask_paths(request.update_mask, model.USER_FIELDS)
        self_only = await users.acting_on_self_only(auth.current(), request.user.name)
        row = await users.update_user(
            self.store, self.clock, Actor.current(), user_id, paths, display_name=request.user.display_name,
            email=request.user.email, disabled=request.user.disabled, new_password=request.new_password,
            caller_is_self_only=self_only, kdf=self.kdf)
        return authz_pb2.UpdateUserResponse(user=convert.user_proto(row, self.clock.now()))

    async def ResetPassword(self, request, context):
        user_id = names.parse("user", request.name, "name")["user"]
        row, code_expires = await users.reset_password(self.store, self.clock, self.mailer,
                                                       self.settings.reset_code_ttl, Actor.current(), user_id)
        return authz_pb2.ResetPasswordResponse(user=convert.user_proto(row, self.clock.now()),
                                               code_expire_time=to_timestamp(code_expires))

    async def SetPassword(self, request, context):
        await codes.set_password(self.store, self.clock, self.kdf, self.login_throttle, request.user_id,
                                 request.code, request.new_password, context.peer())
        return authz_pb2.SetPasswordResponse()

    # --- authorizations ---------------------------------------------------------------------------------
    async def GrantAuthorization(self, request, context):
        user_id = names.parse("user", request.user, "user")["user"]
        authorization = convert.authorization_of(request.authorization)
        view = await grants.grant(self.store, self.clock, self.mailer, Actor.current(), user_id, authorization,
                                  list(request.installations))
        return authz_pb2.GrantAuthorizationResponse(grant=convert.grant_proto(view))

    async def ApproveAuthorization(self, request, context):
        user_id = names.parse("user", request.user, "user")["user"]
        view = await grants.approve(self.store, self.clock, self.mailer, Actor.current(), user_id,
                                    convert.authorization_of(request.authorization))
        return authz_pb2.ApproveAuthorizationResponse(grant=convert.grant_proto(view))

    async def RevokeAuthorization(self, request, context):
        user_id = names.parse("user", request.user, "user")["user"]
        await grants.revoke(self.store, self.clock, Actor.current(), user_id,
                            convert.authorization_of(request.authorization))
        return authz_pb2.RevokeAuthorizationResponse()

    async def ListAuthorizations(self, request, context):
        user_id = names.parse("user", request.user, "user")["user"]
        rows, token = await grants.list_grants(self.store, user_id, page_size(request.page_size),
                                               request.page_token)
        return authz_pb2.ListAuthorizationsResponse(grants=[convert.grant_proto(r) for r in rows],
                                                    next_page_token=token)

    # --- identity logs ----------------------------------------------------------------------------------
    async def ListIdentityEvents(self, request, context):
        customer = self._log_parent(request.parent)
        rows, token = await identity_log.list_events(self.store, customer, page_size(request.page_size),
                                                     request.page_token)
        return authz_pb2.ListIdentityEventsResponse(events=[convert.identity_event_proto(r) for r in rows],
                                                    next_page_token=token)

    async def VerifyIdentityLog(self, request, context):
        customer = self._log_parent(request.parent)
        kept = None
        if request.HasField("kept_head"):
            identity_log.check_head(request.kept_head.sequence, request.kept_head.hash, "kept_head")
            kept = (request.kept_head.sequence, request.kept_head.hash)
        valid, checked, broken, problem, head = await identity_log.verify(self.store, customer, kept)
        return authz_pb2.VerifyIdentityLogResponse(
            valid=valid, events_checked=checked, first_broken_sequence=broken, problem=problem,
            head=authz_pb2.IdentityLogHead(sequence=head[0], hash=head[1]))

    @staticmethod
    def _log_parent(parent: str) -> str:
        """The log's customer number ("" for the vendor side's, which only the platform admin reads)."""
        if parent:
            return names.parse("customer", parent, "parent")["customer"]
        if auth.current().subject.kind != PLATFORM_ADMIN:
            raise InvalidArgument("parent", "is required")
        return identity_log.VENDOR

    # --- decisions --------------------------------------------------------------------------------------
    async def Check(self, request, context):
        rows, with_assignments = await self.decisions.authorize_caller_and_read_subject(
            request.subject_token, [request.permission])
        _check_permission("permission", request.permission)
        decision, = self.decisions.decide(rows, with_assignments,
                                          [(request.permission, Resource.from_proto(request.resource))])
        response = authz_pb2.CheckResponse()
        convert.fill_decision(decision, response)
        return response

    async def CheckBulk(self, request, context):
        items = request.items
        permissions = [i.permission for i in items[:MAX_BULK]]
        at_of: dict[str, list[int]] = {}  # subject token -> the positions of its items
        for i, item in enumerate(items[:MAX_BULK]):
            at_of.setdefault(item.subject_token or request.subject_token, []).append(i)
        distinct = list(at_of) or [request.subject_token]
        if len(distinct) == 1:  # one subject (a call's own checks): one statement for caller and subject
            rows, with_assignments = await self.decisions.authorize_caller_and_read_subject(distinct[0], permissions)
            rows_of = {distinct[0]: rows}
        else:  # the checks of several calls travelling together (the kit's coalesced consultations)
            rows_of, with_assignments = await self.decisions.authorize_caller_and_read_subjects(distinct, permissions)
        if len(items) > MAX_BULK:
            raise InvalidArgument("items", f"may hold at most {MAX_BULK} checks")
        for i, item in enumerate(items):
            _check_permission(f"items[{i}].permission", item.permission)
        decisions = [None] * len(items)
        for subject, at in at_of.items():  # each subject's items decided on its own rows, answered in order
            asked = [(items[i].permission, Resource.from_proto(items[i].resource)) for i in at]
            for i, decision in zip(at, self.decisions.decide(rows_of[subject], with_assignments, asked)):
                decisions[i] = decision
        response = authz_pb2.CheckBulkResponse()
        results = response.results
        for decision in decisions:
            convert.fill_decision(decision, results.add())
        return response

    # --- support assignments ----------------------------------------------------------------------------
    async def SetSupportAssignment(self, request, context):
        a = request.assignment
        incident = names.parse("incident", a.incident, "assignment.incident")
        engineer = names.parse("user", a.engineer, "assignment.engineer")["user"]
        system = names.parse("system", a.system, "assignment.system")
        if system["customer"] != incident["customer"]:
            raise InvalidArgument("assignment.system", "must belong to the incident's customer")
        row = await assignments.set_assignment(self.store, self.clock, a.incident, engineer, a.system,
                                               incident["customer"])
        return authz_pb2.SetSupportAssignmentResponse(assignment=convert.assignment_proto(row))

    async def DeleteSupportAssignment(self, request, context):
        names.parse("incident", request.incident, "incident")
        await assignments.delete_assignment(self.store, request.incident)
        return authz_pb2.DeleteSupportAssignmentResponse()

    # --- event mails ----------------------------------------------------------------------------------------
    async def GetNotificationSettings(self, request, context):
        user = names.parse("notification_settings", request.name, "name")["user"]
        muted = await notifications.get_muted(self.store, user)
        return authz_pb2.GetNotificationSettingsResponse(notification_settings=_settings(user, muted))

    async def UpdateNotificationSettings(self, request, context):
        settings = request.notification_settings
        user = names.parse("notification_settings", settings.name, "notification_settings.name")["user"]
        muted = notifications.parse_muted(settings.muted, "notification_settings.muted")
        muted = await notifications.set_muted(self.store, self.clock, user, muted)
        return authz_pb2.UpdateNotificationSettingsResponse(notification_settings=_settings(user, muted))

    async def ResolveNotificationRecipients(self, request, context):
        return authz_pb2.ResolveNotificationRecipientsResponse(
            recipients=await notifications.resolve(self.store, request.recipients))


def _settings(user: str, muted: list[str]) -> authz_pb2.NotificationSettings:
    return authz_pb2.NotificationSettings(name=f"users/{user}/notificationSettings", muted=[
        authz_pb2.NotificationKind.Value(f"NOTIFICATION_KIND_{k}") for k in muted])
