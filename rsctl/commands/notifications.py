"""notifications show|mute|unmute: which event mails you receive (your own settings; every kind until muted)."""
from __future__ import annotations

from remotesupport.authz.v1 import authz_pb2
from rsctl.errors import not_logged_in, usage

PREFIX = "NOTIFICATION_KIND_"
KINDS = {n.removeprefix(PREFIX).lower().replace("_", "-"): v for n, v in authz_pb2.NotificationKind.items()
         if v}  # logon-data-revealed, incident-taken, logon-data-expiring, window-closing


def register(reg) -> None:
    group = reg.group("notifications", "which event mails you receive (your own; every kind until muted)")
    group.command("show", show, "show each kind of event mail and whether you receive it")
    for name, handler, verb in (("mute", mute, "stop"), ("unmute", unmute, "receive again")):
        p = group.command(name, handler, f"{verb} mails of these kinds")
        p.add_argument("kinds", nargs="+", metavar="KIND", help=f"one or more of: {', '.join(KINDS)}")


def _name(ctx) -> str:
    session = ctx.session()
    if session is None:
        raise not_logged_in()
    if not session.user:
        raise usage("this session does not know its user (a token adopted without USER_ID); "
                    "run 'rsctl login USER_ID' first")
    return f"{session.user}/notificationSettings"


def _kinds(ctx) -> set[int]:
    unknown = [k for k in ctx.args.kinds if k not in KINDS]
    if unknown:
        raise usage(f"unknown kind {unknown[0]!r}; one of: {', '.join(KINDS)}")
    return {KINDS[k] for k in ctx.args.kinds}


def _get(ctx) -> authz_pb2.NotificationSettings:
    request = authz_pb2.GetNotificationSettingsRequest(name=_name(ctx))
    return ctx.call("authz", "GetNotificationSettings", request).notification_settings


def _put(ctx, muted: set[int]) -> None:
    settings = authz_pb2.NotificationSettings(name=_name(ctx), muted=sorted(muted))
    stored = ctx.call("authz", "UpdateNotificationSettings",
                      authz_pb2.UpdateNotificationSettingsRequest(notification_settings=settings))
    _print(ctx, stored.notification_settings)


def _print(ctx, settings: authz_pb2.NotificationSettings) -> None:
    muted = set(settings.muted)
    if ctx.out.json_mode:
        ctx.out.document({"name": settings.name, "kinds": {k: v not in muted for k, v in KINDS.items()}})
        return
    for kind, value in KINDS.items():
        ctx.out.line(f"{kind:<22} {'muted' if value in muted else 'mailed'}")


def show(ctx) -> None:
    _print(ctx, _get(ctx))


def mute(ctx) -> None:
    _put(ctx, set(_get(ctx).muted) | _kinds(ctx))


def unmute(ctx) -> None:
    _put(ctx, set(_get(ctx).muted) - _kinds(ctx))
