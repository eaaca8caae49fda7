"""How each RPC of AuthzService is authorized: its permission, and the resource attributes read from the
request (names parsed, INVALID_ARGUMENT naming the field) and from authz's own database (a user's customer)."""
from __future__ import annotations

from remotesupport.authz.v1 import authz_pb2
from services.authz.store import Store
from services.kit import names
from services.kit import permissions as P
from services.kit.auth import PUBLIC, MethodPolicy, Resource, policy_table

SERVICE = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].full_name


def build_policies(store: Store) -> dict[str, MethodPolicy]:
    async def user_target(value: str, field: str) -> Resource:
        """Acting on user `value`: its customer (looked up) and the user itself."""
        user_id = names.parse("user", value, field)["user"]
        async with store.read() as queries:
            row = await queries.principal(user_id)
        customer = f"customers/{row.customer}" if row is not None and row.customer else ""
        return Resource(customer=customer, target_user=value)

    async def new_user(req: authz_pb2.CreateUserRequest) -> Resource:
        if req.user.kind != authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER:
            return Resource()  # engineers: the platform admin only
        names.parse("customer", req.user.customer, "user.customer")
        return Resource(customer=req.user.customer)

    async def listed_customer(req: authz_pb2.ListUsersRequest) -> Resource:
        if req.customer:
            names.parse("customer", req.customer, "customer")
        return Resource(customer=req.customer)

    async def named_user(req: authz_pb2.GetUserRequest) -> Resource:
        return await user_target(req.name, "name")

    async def updated_user(req: authz_pb2.UpdateUserRequest) -> Resource:
        return await user_target(req.user.name, "user.name")

    async def grantee(req) -> Resource:
        return await user_target(req.user, "user")

    async def reset_user(req: authz_pb2.ResetPasswordRequest) -> Resource:
        return await user_target(req.name, "name")

    async def settings_of(req) -> Resource:
        if isinstance(req, authz_pb2.UpdateNotificationSettingsRequest):
            name, field = req.notification_settings.name, "notification_settings.name"
        else:
            name, field = req.name, "name"
        user = names.parse("notification_settings", name, field)["user"]
        return await user_target(f"users/{user}", field)

    async def log_of(req) -> Resource:
        if req.parent:
            names.parse("customer", req.parent, "parent")
        return Resource(customer=req.parent)

    return policy_table(SERVICE, {
        "Login": PUBLIC,
        "Logout": MethodPolicy(P.SESSION),
        "CreateServiceToken": MethodPolicy(P.SERVICE_TOKENS_CREATE),
        "CreateCustomer": MethodPolicy(P.CUSTOMERS_CREATE),
        "CreateUser": MethodPolicy(P.USERS_CREATE, new_user),
        "GetUser": MethodPolicy(P.USERS_READ, named_user),
        "ListUsers": MethodPolicy(P.USERS_LIST, listed_customer),
        "UpdateUser": MethodPolicy(P.USERS_UPDATE, updated_user),
        "ResetPassword": MethodPolicy(P.USERS_UPDATE, reset_user),
        "SetPassword": PUBLIC,
        "GrantAuthorization": MethodPolicy(P.GRANTS_WRITE, grantee),
        "ApproveAuthorization": MethodPolicy(P.GRANTS_WRITE, grantee),
        "RevokeAuthorization": MethodPolicy(P.GRANTS_WRITE, grantee),
        "ListAuthorizations": MethodPolicy(P.GRANTS_READ, grantee),
        "ListIdentityEvents": MethodPolicy(P.IDENTITY_LOG_READ, log_of),
        "VerifyIdentityLog": MethodPolicy(P.IDENTITY_LOG_READ, log_of),
        "Check": MethodPolicy(P.CHECK, handler_decides=True),
        "CheckBulk": MethodPolicy(P.CHECK, handler_decides=True),
        "SetSupportAssignment": MethodPolicy(P.ASSIGNMENTS_WRITE),
        "DeleteSupportAssignment": MethodPolicy(P.ASSIGNMENTS_WRITE),
        "GetNotificationSettings": MethodPolicy(P.NOTIFICATIONS_READ, settings_of),
        "UpdateNotificationSettings": MethodPolicy(P.NOTIFICATIONS_WRITE, settings_of),
        "ResolveNotificationRecipients": MethodPolicy(P.NOTIFICATIONS_RESOLVE),
    })
