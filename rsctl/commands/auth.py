"""auth grant|revoke|list: the authorizations of DESIGN §5, by name (EDIT_ALL_LOGIN_DATA, edit-all-login-data).
A grant of EDIT_ALL_LOGIN_DATA or USER_ADMIN may wait for a second user administrator (`rsctl users approve`)."""
from __future__ import annotations

from remotesupport.authz.v1 import authz_pb2
from rsctl.args import EnumArg
from rsctl.names import Names
from rsctl.output import col, field_text

AUTHORIZATION = EnumArg(authz_pb2.Authorization)
COLUMNS = [col("authorization"),
           ("installations", lambda g: field_text(g, "installations") or "all"),
           col("state"), col("granted_by"), col("approved_by"), col("grant_time", "granted")]


def register(reg) -> None:
    group = reg.group("auth", "authorizations of customer users", aliases=["authorizations"])
    p = group.command("grant", grant, "grant an authorization (again: replaces the installations); EDIT_ALL_LOGIN_DATA "
                                      "and USER_ADMIN may wait for another user administrator's approval")
    p.add_argument("user", metavar="USER")
    p.add_argument("authorization", type=AUTHORIZATION, metavar="AUTHORIZATION",
                   help=f"one of: {AUTHORIZATION.choices_text}")
    p.add_argument("--installation", dest="installations", action="append", default=[], metavar="N",
                   help="narrow the grant to this installation number (repeatable; default all)")
    p = group.command("revoke", revoke, "revoke an authorization; it stops working at once")
    p.add_argument("user", metavar="USER")
    p.add_argument("authorization", type=AUTHORIZATION, metavar="AUTHORIZATION",
                   help=f"one of: {AUTHORIZATION.choices_text}")
    group.command("list", list_, "list a user's authorizations and pending requests (state, approved_by)"
                  ).add_argument("user", metavar="USER")


def grant(ctx) -> None:
    request = authz_pb2.GrantAuthorizationRequest(user=ctx.names.user(ctx.args.user),
                                                  authorization=ctx.args.authorization,
                                                  installations=ctx.args.installations)
    grant_ = ctx.call("authz", "GrantAuthorization", request).grant
    ctx.out.resource(grant_)
    if grant_.state == authz_pb2.GRANT_STATE_PENDING_APPROVAL:
        name = authz_pb2.Authorization.Name(grant_.authorization).removeprefix("AUTHORIZATION_")
        ctx.out.note(f"Not in effect yet: another user administrator of the customer approves it with "
                     f"'rsctl users approve {Names.last(grant_.user)} {name}'.")


def revoke(ctx) -> None:
    user = ctx.names.user(ctx.args.user)
    request = authz_pb2.RevokeAuthorizationRequest(user=user, authorization=ctx.args.authorization)
    ctx.call("authz", "RevokeAuthorization", request)
    name = authz_pb2.Authorization.Name(ctx.args.authorization)
    if ctx.out.json_mode:
        ctx.out.document({"user": user, "authorization": name, "revoked": True})
    else:
        ctx.out.line(f"Revoked {name.removeprefix('AUTHORIZATION_')} from {user}.")


def list_(ctx) -> None:
    grants = ctx.collect("authz", "ListAuthorizations", authz_pb2.ListAuthorizationsRequest(
        user=ctx.names.user(ctx.args.user)), "grants")
    ctx.out.listing("grants", grants, COLUMNS)
