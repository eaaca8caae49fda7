"""login, logout, whoami: the session kept in the config directory."""
from __future__ import annotations

from pathlib import Path

from remotesupport.authz.v1 import authz_pb2
from rsctl.config import Session, read_token_file
from rsctl.errors import CliError, not_logged_in, usage
from rsctl.output import enum_name, iso


def register(reg) -> None:
    p = reg.command("login", login, "log in; the token is kept in the config directory (mode 0600)")
    p.add_argument("user_id", nargs="?", metavar="USER_ID", help="e.g. S0000000001 (optional with --token-file)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--token-file", type=Path, metavar="PATH",
                   help="adopt the token in PATH (e.g. var/admin.token) instead of logging in with a password")
    p = reg.command("logout", logout, "revoke the token and forget it")
    p.add_argument("--local", action="store_true", help="only forget the token; do not revoke it")
    p.add_argument("--revoke", action="store_true",
                   help="revoke an adopted token too (by default it is only forgotten)")
    reg.command("whoami", whoami, "show the session: user, kind, customer, token expiry (never the token)")


def _adopt(ctx) -> Session:
    if ctx.args.password_stdin:
        raise usage("--token-file and --password-stdin exclude each other")
    token = read_token_file(ctx.args.token_file)
    user = ctx.names.user(ctx.args.user_id) if ctx.args.user_id else ""
    return Session(token=token, user=user, address=ctx.addresses.of("authz"),
                   adopted_from=str(ctx.args.token_file.resolve()))


def _login(ctx) -> Session:
    if not ctx.args.user_id:
        raise usage("give USER_ID (or --token-file PATH)")
    password = ctx.read_secret("password", ctx.args.password_stdin, flag="--password-stdin")
    request = authz_pb2.LoginRequest(user_id=ctx.args.user_id.removeprefix("users/"), password=password)
    response = ctx.call("authz", "Login", request, authenticated=False)
    user = response.user
    return Session(token=response.access_token, user=user.name,
                   kind=enum_name(authz_pb2.PrincipalKind.DESCRIPTOR, user.kind), customer=user.customer,
                   expire_time=iso(response.expire_time), address=ctx.addresses.of("authz"))


def login(ctx) -> None:
    session = _adopt(ctx) if ctx.args.token_file else _login(ctx)
    path = ctx.store.save(session)
    if ctx.out.json_mode:
        ctx.out.document({**session.public(), "session_file": str(path)})
        return
    if session.adopted_from:
        ctx.out.line(f"Adopted the token in {session.adopted_from}; session kept in {path} (mode 0600).")
        return
    customer = f", {session.customer}" if session.customer else ""
    ctx.out.line(f"Logged in as {session.user} ({session.kind}{customer}); the token expires "
                 f"{session.expire_time}. Session kept in {path} (mode 0600).")


def logout(ctx) -> None:
    session = ctx.store.load()
    if session is None:
        ctx.out.note("Not logged in; nothing to do.")
        if ctx.out.json_mode:
            ctx.out.document({"logged_out": False, "revoked": False})
        return
    revoke = not ctx.args.local and (not session.adopted_from or ctx.args.revoke)
    revoked = False
    if revoke:
        ctx.use_session(session)  # revoke the stored token, not $RSCTL_TOKEN
        try:
            ctx.call("authz", "Logout", authz_pb2.LogoutRequest())
            revoked = True
        except CliError as err:
            if err.label != "UNAUTHENTICATED":  # an already invalid token: forgetting it is all that is left
                raise
    ctx.store.forget()
    if ctx.out.json_mode:
        ctx.out.document({"logged_out": True, "revoked": revoked})
    elif revoked:
        ctx.out.line("Logged out; the token is revoked.")
    elif session.adopted_from and not ctx.args.local:
        ctx.out.line(f"Forgot the adopted token; it stays valid in {session.adopted_from} (--revoke revokes it).")
    else:
        ctx.out.line("Logged out (the token was forgotten locally).")


def whoami(ctx) -> None:
    session = ctx.session()
    if session is None:
        raise not_logged_in()
    data = {**session.public(), "session_file": "" if session.adopted_from.startswith("$") else str(ctx.store.path)}
    if ctx.out.json_mode:
        ctx.out.document(data)
        return
    width = max(len(k) for k in data) + 1
    for key, value in data.items():
        ctx.out.line(f"{(key + ':').ljust(width)} {value or '-'}".rstrip())

