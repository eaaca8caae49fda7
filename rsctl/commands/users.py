"""users create|get|list|update|disable|enable|passwd|set-password|reset-password|approve|grants|log|verify-log.

Nobody who creates a user learns a password of it: `create` makes authz mail the user a one-time code, and the
user sets its password with `set-password USER_ID --code CODE` (no login needed). `reset-password` mails a new
code the same way. `approve` is the second pair of eyes on EDIT_ALL_LOGIN_DATA and USER_ADMIN grants; `log` and
`verify-log` read a customer's identity log (every change of its users and grants, with who made it)."""
from __future__ import annotations

from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2
from rsctl.args import EnumArg, positive_int
from rsctl.commands import auth, log
from rsctl.errors import usage
from rsctl.output import col, iso

KIND = EnumArg(authz_pb2.PrincipalKind)
COLUMNS = [col("user_id"), col("kind"), col("customer"), col("display_name", "name"), col("email"),
           col("disabled"), col("password_set"), col("lock_expire_time", "locked_until")]
EVENT_COLUMNS = [col("sequence", "seq"), col("event_time", "time"), col("actor"), col("action"), col("target"),
                 col("detail")]
LOG_HELP = "default: --customer or your own; the platform admin without one: the vendor side's log"


def register(reg) -> None:
    group = reg.group("users", "customer users and support engineers")
    p = group.command("create", create, "create a user; authz mails it a one-time code to set its own password")
    p.add_argument("user_id", metavar="USER_ID", help="S and 10 digits for customer users; lower-case id otherwise")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--kind", type=KIND, default=authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER,
                   help=f"one of: {KIND.choices_text} (default customer-user, of --customer or your own customer)")
    p.add_argument("--email", required=True, help="the user's own address: its one-time code goes there only")
    group.command("get", get, "show a user").add_argument("user", metavar="USER")
    p = group.command("list", list_, "list the users of a customer (all users for the platform admin)")
    p.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help="default: --customer or your own")
    p = group.command("update", update, "change a user's display name, or your own email")
    p.add_argument("user", metavar="USER")
    p.add_argument("--name")
    p.add_argument("--email")
    group.command("disable", disable, "disable a user: no login, its tokens stop working").add_argument(
        "user", metavar="USER")
    group.command("enable", enable, "enable a disabled user").add_argument("user", metavar="USER")
    p = group.command("passwd", passwd, "change your own password (logged in); ends a login lock")
    p.add_argument("user", nargs="?", metavar="USER", help="default: your own (only you change your password)")
    p.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    p = group.command("set-password", set_password, "set a user's password with the one-time code mailed to it "
                                                    "(enrollment or reset; no login needed)")
    p.add_argument("user_id", metavar="USER_ID", help="the user the code was mailed to")
    p.add_argument("--code", required=True, metavar="CODE", help="the one-time code from the mail (XXXXX-XXXXX-...)")
    p.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    group.command("reset-password", reset_password, "end a user's password and sessions; authz mails it a "
                                                    "one-time code to set a new one").add_argument(
        "user", metavar="USER")
    p = group.command("approve", approve, "approve a grant that waits for a second user administrator")
    p.add_argument("user", metavar="USER", help="the grantee")
    p.add_argument("authorization", type=auth.AUTHORIZATION, metavar="AUTHORIZATION",
                   help=f"one of: {auth.AUTHORIZATION.choices_text}")
    group.command("grants", auth.list_, "list a user's grants: ACTIVE or PENDING_APPROVAL, who granted and "
                                        "approved them").add_argument("user", metavar="USER")
    p = group.command("log", log_, "list the identity log of a customer (user and grant changes), oldest first")
    p.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help=LOG_HELP)
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N events")
    p = group.command("verify-log", verify_log, "verify the identity log's hash chain and print its head; exit 8 "
                                                "when it is broken or does not extend --since-head")
    p.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help=LOG_HELP)
    log.head_options(p)


def create(ctx) -> None:
    a = ctx.args
    user = authz_pb2.User(user_id=a.user_id.removeprefix("users/"), kind=a.kind, display_name=a.name, email=a.email)
    if a.kind == authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER:
        user.customer = ctx.names.customer(None)
    created = ctx.call("authz", "CreateUser", authz_pb2.CreateUserRequest(user=user)).user
    ctx.out.resource(created)
    ctx.out.note(f"A one-time code was mailed to {created.email}; with it the user sets its own password: "
                 f"rsctl users set-password {created.user_id} --code CODE")


def get(ctx) -> None:
    response = ctx.call("authz", "GetUser", authz_pb2.GetUserRequest(name=ctx.names.user(ctx.args.user)))
    ctx.out.resource(response.user)


def list_(ctx) -> None:
    users = ctx.collect("authz", "ListUsers", authz_pb2.ListUsersRequest(customer=_customer_or_all(ctx)), "users")
    ctx.out.listing("users", users, COLUMNS)


def _customer_or_all(ctx) -> str:
    """CUSTOMER, else the default customer, else "" (the platform admin: all users, or the vendor side's log)."""
    names = ctx.names
    return names.customer(ctx.args.customer_arg) if ctx.args.customer_arg or names.default_customer else ""


def _update(ctx, user: authz_pb2.User, paths: list[str], new_password: str = "") -> None:
    request = authz_pb2.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=paths),
                                          new_password=new_password)
    ctx.out.resource(ctx.call("authz", "UpdateUser", request).user)


def update(ctx) -> None:
    user = authz_pb2.User(name=ctx.names.user(ctx.args.user))
    paths = []
    if ctx.args.name is not None:
        user.display_name, paths = ctx.args.name, paths + ["display_name"]
    if ctx.args.email is not None:
        user.email, paths = ctx.args.email, paths + ["email"]
    if not paths:
        raise usage("nothing to change; give --name and/or --email")
    _update(ctx, user, paths)


def disable(ctx) -> None:
    _update(ctx, authz_pb2.User(name=ctx.names.user(ctx.args.user), disabled=True), ["disabled"])


def enable(ctx) -> None:
    _update(ctx, authz_pb2.User(name=ctx.names.user(ctx.args.user), disabled=False), ["disabled"])


def passwd(ctx) -> None:
    target = ctx.args.user
    if not target:
        session = ctx.session()
        if session is None or not session.user:
            raise usage("give USER (the session does not say who you are)")
        target = session.user
    password = ctx.read_secret("new password", ctx.args.password_stdin, flag="--password-stdin", confirm=True)
    _update(ctx, authz_pb2.User(name=ctx.names.user(target)), ["password"], password)


def set_password(ctx) -> None:
    a = ctx.args
    user_id = a.user_id.removeprefix("users/")
    password = ctx.read_secret("new password", a.password_stdin, flag="--password-stdin", confirm=True)
    ctx.call("authz", "SetPassword", authz_pb2.SetPasswordRequest(user_id=user_id, code=a.code.strip(),
                                                                  new_password=password), authenticated=False)
    if ctx.out.json_mode:
        ctx.out.document({"user": f"users/{user_id}", "password_set": True})
    else:
        ctx.out.line(f"The password of users/{user_id} is set; its earlier sessions ended. Log in with: "
                     f"rsctl login {user_id}")


def reset_password(ctx) -> None:
    response = ctx.call("authz", "ResetPassword", authz_pb2.ResetPasswordRequest(name=ctx.names.user(ctx.args.user)))
    if ctx.out.json_mode:
        ctx.out.resource(response)
        return
    if ctx.out.name_only:
        ctx.out.resource(response.user)
        return
    user = response.user
    ctx.out.line(f"The password of {user.name} is reset and its sessions ended. A one-time code was mailed to "
                 f"{user.email}, valid until {iso(response.code_expire_time)}; with it the user sets a new "
                 f"password: rsctl users set-password {user.user_id} --code CODE")


def approve(ctx) -> None:
    request = authz_pb2.ApproveAuthorizationRequest(user=ctx.names.user(ctx.args.user),
                                                    authorization=ctx.args.authorization)
    ctx.out.resource(ctx.call("authz", "ApproveAuthorization", request).grant)


def log_(ctx) -> None:
    limit = ctx.args.limit
    request = authz_pb2.ListIdentityEventsRequest(parent=_customer_or_all(ctx), page_size=min(limit or 1000, 1000))
    events = ctx.collect("authz", "ListIdentityEvents", request, "events", limit)
    ctx.out.listing("events", events, EVENT_COLUMNS, empty="(no events)")


def verify_log(ctx) -> int:
    parent = _customer_or_all(ctx)
    label = f"The identity log of {parent}" if parent else "The vendor side's identity log"
    return log.verify_chain(ctx, "authz", "VerifyIdentityLog", authz_pb2.VerifyIdentityLogRequest(parent=parent),
                            parent, label, "rsctl users verify-log")
