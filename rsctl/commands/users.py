"""users create|get|list|update|disable|enable|passwd."""
from __future__ import annotations

from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2
from rsctl.args import EnumArg
from rsctl.errors import usage
from rsctl.output import col

KIND = EnumArg(authz_pb2.PrincipalKind)
COLUMNS = [col("user_id"), col("kind"), col("customer"), col("display_name", "name"), col("email"),
           col("disabled"), col("lock_expire_time", "locked_until")]


def register(reg) -> None:
    group = reg.group("users", "customer users and support engineers")
    p = group.command("create", create, "create a user with an initial password (prompted, or --password-stdin)")
    p.add_argument("user_id", metavar="USER_ID", help="S and 10 digits for customer users; lower-case id otherwise")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--kind", type=KIND, default=authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER,
                   help=f"one of: {KIND.choices_text} (default customer-user, of --customer or your own customer)")
    p.add_argument("--email", default="")
    p.add_argument("--password-stdin", action="store_true", help="read the initial password from stdin")
    group.command("get", get, "show a user").add_argument("user", metavar="USER")
    p = group.command("list", list_, "list the users of a customer (all users for the platform admin)")
    p.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help="default: --customer or your own")
    p = group.command("update", update, "change a user's display name or email")
    p.add_argument("user", metavar="USER")
    p.add_argument("--name")
    p.add_argument("--email")
    group.command("disable", disable, "disable a user: no login, its tokens stop working").add_argument(
        "user", metavar="USER")
    group.command("enable", enable, "enable a disabled user").add_argument("user", metavar="USER")
    p = group.command("passwd", passwd, "set a user's password (default: your own); ends a login lock")
    p.add_argument("user", nargs="?", metavar="USER")
    p.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")


def create(ctx) -> None:
    a = ctx.args
    user = authz_pb2.User(user_id=a.user_id.removeprefix("users/"), kind=a.kind, display_name=a.name, email=a.email)
    if a.kind == authz_pb2.PRINCIPAL_KIND_CUSTOMER_USER:
        user.customer = ctx.names.customer(None)
    password = ctx.read_secret("initial password", a.password_stdin, flag="--password-stdin", confirm=True)
    response = ctx.call("authz", "CreateUser", authz_pb2.CreateUserRequest(user=user, initial_password=password))
    ctx.out.resource(response.user)


def get(ctx) -> None:
    response = ctx.call("authz", "GetUser", authz_pb2.GetUserRequest(name=ctx.names.user(ctx.args.user)))
    ctx.out.resource(response.user)


def list_(ctx) -> None:
    names = ctx.names
    customer = names.customer(ctx.args.customer_arg) if ctx.args.customer_arg or names.default_customer else ""
    users = ctx.collect("authz", "ListUsers", authz_pb2.ListUsersRequest(customer=customer), "users")
    ctx.out.listing("users", users, COLUMNS)


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
