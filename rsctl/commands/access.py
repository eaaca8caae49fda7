"""prepare, end, overview: the gateway's composite flows (they need the gateway's address)."""
from __future__ import annotations

from pathlib import Path

from remotesupport.depot.v1 import depot_pb2
from remotesupport.gateway.v1 import gateway_pb2
from rsctl.args import key_value, time_arg, timestamp
from rsctl.commands import connector, logon, sessions, setups, windows
from rsctl.commands.log import COLUMNS as LOG_COLUMNS
from rsctl.errors import usage
from rsctl.output import describe, field_text, table, to_dict


def register(reg) -> None:
    p = reg.command("prepare", prepare, "set up (if --param), open a window, issue its stfk.oez and store logon "
                                        "data, all or nothing")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("code", metavar="CODE", help="connection type, e.g. R3_SUPPORT")
    windows.add_time_frame(p)
    p.add_argument("--param", dest="parameters", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="set up (or update) the type with these parameters first (repeatable)")
    p.add_argument("--incident", default="", metavar="INCIDENT")
    p.add_argument("--reason", default="")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write stfk.oez (default ./stfk.oez)")
    p.add_argument("--no-connector-file", action="store_true", help="do not write the connector file")
    g = p.add_argument_group("logon data to store with it (the secret is prompted, or --secret-stdin)")
    g.add_argument("--logon-kind", type=logon.KIND, metavar="KIND", help=f"one of: {logon.KIND.choices_text}")
    g.add_argument("--logon-user", default="", metavar="USER_NAME")
    g.add_argument("--logon-client", default="", metavar="CLIENT")
    g.add_argument("--logon-server", default="", metavar="SERVER")
    g.add_argument("--logon-notes", default="", metavar="TEXT")
    g.add_argument("--logon-expires", type=time_arg, metavar="TIME", help="default: the window's end")
    g.add_argument("--secret-stdin", action="store_true")
    p = reg.command("end", end, "close a window early and optionally delete the logon data stored for it")
    p.add_argument("window", metavar="WINDOW")
    p.add_argument("--delete-logon-data", action="store_true")
    p = reg.command("overview", overview, "a system with its set-ups, windows, live sessions, logon data and latest log "
                                          "events")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("--log-events", type=int, default=0, metavar="N", help="latest log events to include (default 20)")


def _logon_data(ctx):
    a = ctx.args
    if a.logon_kind is None:
        given = [f"--logon-{flag}" for flag in ("user", "client", "server", "notes", "expires")
                 if getattr(a, f"logon_{flag}")] + (["--secret-stdin"] if a.secret_stdin else [])
        if given:
            raise usage(f"{', '.join(given)}: storing logon data needs --logon-kind")
        return None, ""
    entry = depot_pb2.LogonData(
        kind=a.logon_kind, user_name=a.logon_user, client=a.logon_client, server=a.logon_server,
        notes=a.logon_notes)
    if a.logon_expires is not None:
        entry.expire_time.CopyFrom(timestamp(a.logon_expires))
    secret = ctx.read_secret("secret", a.secret_stdin, flag="--secret-stdin", confirm=True)
    return entry, secret


def prepare(ctx) -> None:
    a, names = ctx.args, ctx.names
    start, end_time = windows.time_frame(a)
    request = gateway_pb2.PrepareRemoteAccessRequest(
        system=names.system(a.system), connection_type=names.connection_type(a.code), parameters=dict(a.parameters),
        end_time=timestamp(end_time), incident=names.incident(a.incident), reason=a.reason)
    if start is not None:
        request.start_time.CopyFrom(timestamp(start))
    entry, secret = _logon_data(ctx)
    if entry is not None:
        request.logon_data.CopyFrom(entry)
        request.secret = secret
    response = ctx.call("gateway", "PrepareRemoteAccess", request)
    written = None
    if not a.no_connector_file and response.service_connector.content:
        written = connector.write_connector(ctx, response.service_connector, a.output)
    if ctx.out.json_mode:
        data = to_dict(response)
        if written:  # the file holds it; otherwise it stays in the document (base64)
            data.get("service_connector", {}).pop("content", None)
        ctx.out.document({**data, "connector_file": str(written) if written else ""})
        return
    ctx.out.line(f"Window {response.connection.name} is {describe_state(response.connection)}.")
    ctx.out.line(f"Set-up: {response.connection_setup.name}")
    if written:
        ctx.out.line(f"Connector file: {written} ({len(response.service_connector.content)} bytes)")
    if response.HasField("logon_data"):
        ctx.out.line(f"Logon data: {response.logon_data.name}")


def describe_state(connection) -> str:
    return (f"{field_text(connection, 'state')} from {field_text(connection, 'start_time')} "
            f"to {field_text(connection, 'end_time')}")


def end(ctx) -> None:
    request = gateway_pb2.EndRemoteAccessRequest(connection=ctx.names.window(ctx.args.window),
                                                 delete_logon_data=ctx.args.delete_logon_data)
    response = ctx.call("gateway", "EndRemoteAccess", request)
    if ctx.out.json_mode:
        ctx.out.document(to_dict(response))
        return
    ctx.out.line(f"Window {response.connection.name} is {describe_state(response.connection)}.")
    for name in response.deleted_logon_data:
        ctx.out.line(f"Deleted {name}.")


def _section(ctx, title: str, rows, columns) -> None:
    ctx.out.line("")
    ctx.out.line(f"{title}:")
    lines = table(rows, columns) if rows else ["(none)"]
    for line in lines:
        ctx.out.line(f"  {line}")


def overview(ctx) -> None:
    request = gateway_pb2.GetSystemOverviewRequest(system=ctx.names.system(ctx.args.system),
                                                   log_event_limit=ctx.args.log_events)
    response = ctx.call("gateway", "GetSystemOverview", request)
    if ctx.out.json_mode:
        ctx.out.document(to_dict(response))
        return
    for line in describe(response.system):
        ctx.out.line(line)
    _section(ctx, "Set-ups", list(response.connection_setups), setups.COLUMNS)
    _section(ctx, "Windows", list(response.connections), windows.COLUMNS)
    _section(ctx, "Live sessions", list(response.live_sessions), sessions.COLUMNS)
    _section(ctx, "Logon data", list(response.logon_data), logon.COLUMNS)
    _section(ctx, "Latest log events", list(response.log_events), LOG_COLUMNS)
    if response.omitted:
        ctx.out.line("")
        ctx.out.line("Not shown (you may not see them): " + ", ".join(response.omitted))

