"""tunnel WINDOW: the engineer's side of the relay - a local listener whose every TCP connection reaches the
window's target through the relay (rsctl/tunnel_client.py), while the relay admits it."""
from __future__ import annotations

import asyncio

from rsctl.errors import usage
from rsctl.tunnel_client import DEFAULT_LISTEN, Tunnel, parse_listen
from rsctl.tunnel_pump import Lines

EPILOG = """\
Each TCP connection to the listener is one session: the relay admits it while the window is open, you process
an in-process incident of the system, and the customer's connector is attached; it may cut it at any time.
A refused connection is closed ("refused: CODE REASON: message") and the listener keeps serving. The relay is
--relay-address (else $RSCTL_RELAY_ADDRESS, else 127.0.0.1:50055), never the gateway. Ctrl-C (or SIGTERM)
stops it: exit 0. With --once: one connection, then exit 0 when it was admitted and ended normally, else the
exit code of the refusal or cut (6 FAILED_PRECONDITION, 4 PERMISSION_DENIED, 7 UNAVAILABLE, ...)."""


def register(reg) -> None:
    p = reg.command("tunnel", tunnel, "reach a window's target through the relay from a local port",
                    epilog=EPILOG)
    p.add_argument("window", metavar="WINDOW")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where to listen (default {DEFAULT_LISTEN}: a free port on loopback)")
    p.add_argument("--listen-any", action="store_true",
                   help="allow a --listen address that is not loopback (others could then use your session)")
    p.add_argument("--incident", default="", metavar="INCIDENT",
                   help="the in-process incident you work on (default: any of the system's you process)")
    p.add_argument("--once", action="store_true", help="serve one connection, then exit (for scripts and tests)")


def tunnel(ctx) -> int:
    if ctx.out.json_mode or ctx.out.name_only:
        raise usage("'tunnel' prints progress lines; --json and --name-only do not apply")
    listen = parse_listen(ctx.args.listen, ctx.args.listen_any)
    client = Tunnel(connection=ctx.names.window(ctx.args.window), incident=ctx.names.incident(ctx.args.incident),
                    relay=ctx.addresses.relay, token=ctx.token(), lines=Lines(ctx.out), tls=ctx.tls, listen=listen,
                    once=ctx.args.once)
    return asyncio.run(client.serve())
