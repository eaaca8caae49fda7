"""logon add|list|get|reveal|update|delete, and incident-logon (the seed's "Change Access Data"): the
Customer Remote Logon Depot. Secrets are read from a prompt or stdin; only `reveal` prints one."""
from __future__ import annotations

import datetime as dt

from google.protobuf import field_mask_pb2

from remotesupport.connections.v1 import connections_pb2
from remotesupport.depot.v1 import depot_pb2
from rsctl.args import TIME_HELP, EnumArg, positive_int, time_arg, timestamp
from rsctl.errors import usage
from rsctl.output import col, to_dict

KIND = EnumArg(depot_pb2.LogonDataKind)
COLUMNS = [col("name"), col("kind"), col("user_name", "user"), col("client"), col("server"),
           col("has_secret", "secret"), col("expire_time", "expires"), col("creator"),
           col("restricted_incident", "only for incident")]


def _entry_options(parser, *, creating: bool) -> None:
    if creating:
        parser.add_argument("--kind", type=KIND, required=True, help=f"one of: {KIND.choices_text}")
    parser.add_argument("--user", dest="user_name", metavar="USER_NAME", help="the login the secret belongs to")
    parser.add_argument("--client", help="SAP client, three digits (system users)")
    parser.add_argument("--server", help="host or server name")
    parser.add_argument("--notes", help="free text for the engineer; never put secrets here")
    parser.add_argument("--type", dest="connection_type", metavar="CODE", help="connection type it is for")
    parser.add_argument("--incident", dest="restricted_incident", metavar="INCIDENT",
                        help="valid for this incident only")
    expiry = parser.add_mutually_exclusive_group(required=creating)
    expiry.add_argument("--expires", type=time_arg, metavar="TIME", help=f"expiration; {TIME_HELP}")
    expiry.add_argument("--days", type=positive_int, metavar="N", help="or: expires N days from now")


def register(reg) -> None:
    group = reg.group("logon", "logon data in the Customer Remote Logon Depot", aliases=["logon-data"])
    p = group.command("add", add, "store logon data for a system (secret prompted, or --secret-stdin)")
    p.add_argument("system", metavar="SYSTEM")
    _entry_options(p, creating=True)
    p.add_argument("--connection", default="", metavar="WINDOW", help="the window it is stored for")
    p.add_argument("--secret-stdin", action="store_true", help="read the secret from the first line of stdin")
    p = group.command("list", list_, "list a system's logon data (secrets never shown)")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("--kind", type=KIND, default=0, help=f"one of: {KIND.choices_text}")
    group.command("get", get, "show one entry (secret never shown)").add_argument("entry", metavar="ENTRY")
    p = group.command("reveal", reveal, "print an entry's secret to stdout (logged before it is shown)")
    p.add_argument("entry", metavar="ENTRY")
    p.add_argument("--reason", default="", help="recorded in the log")
    p = group.command("update", update, "change fields of an entry, or overwrite its secret")
    p.add_argument("entry", metavar="ENTRY")
    _entry_options(p, creating=False)
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--secret", dest="new_secret", action="store_true", help="overwrite the secret (prompted)")
    secret.add_argument("--secret-stdin", action="store_true", help="overwrite the secret with the first line of stdin")
    p.add_argument("--etag", default="", help="default: the etag just read")
    p = group.command("extend", extend, "renew an entry's expiration in one step (at most 90 days ahead, as when "
                                        "it was stored); logged, and warned of again before the new date")
    p.add_argument("entry", metavar="ENTRY")
    expiry = p.add_mutually_exclusive_group(required=True)
    expiry.add_argument("--days", type=positive_int, metavar="N", help="expires N days from now")
    expiry.add_argument("--expires", type=time_arg, metavar="TIME", help=f"or: the new expiration; {TIME_HELP}")
    p.add_argument("--etag", default="", help="default: the etag just read")
    p = group.command("delete", delete, "delete an entry and its data key")
    p.add_argument("entry", metavar="ENTRY")
    p.add_argument("--etag", default="", help="default: the etag just read")
    p = reg.command("incident-logon", incident_logon,
                    "the logon data of an incident's system, reached from the incident (\"Change Access Data\")",
                    aliases=["change-access-data"])
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("--kind", type=KIND, default=0, help=f"one of: {KIND.choices_text}")


def _expiry(args) -> dt.datetime | None:
    if args.expires is not None:
        return args.expires
    if args.days is not None:
        return dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=args.days)
    return None


def _fields(ctx) -> dict:
    """The entry fields given on the command line, as LogonData keyword arguments."""
    a, names = ctx.args, ctx.names
    fields = {k: getattr(a, k) for k in ("user_name", "client", "server", "notes") if getattr(a, k) is not None}
    if a.connection_type is not None:
        fields["connection_type"] = names.connection_type(a.connection_type) if a.connection_type else ""
    if a.restricted_incident is not None:
        fields["restricted_incident"] = names.incident(a.restricted_incident)
    expiry = _expiry(a)
    if expiry is not None:
        fields["expire_time"] = timestamp(expiry)
    return fields


def add(ctx) -> None:
    entry = depot_pb2.LogonData(kind=ctx.args.kind, connection=ctx.names.window(ctx.args.connection), **_fields(ctx))
    secret = ctx.read_secret("secret", ctx.args.secret_stdin, flag="--secret-stdin", confirm=True)
    request = depot_pb2.CreateLogonDataRequest(parent=ctx.names.system(ctx.args.system), logon_data=entry,
                                               secret=secret)
    ctx.out.resource(ctx.call("depot", "CreateLogonData", request).logon_data)


def list_(ctx) -> None:
    request = depot_pb2.ListLogonDataRequest(parent=ctx.names.system(ctx.args.system), kind=ctx.args.kind)
    ctx.out.listing("logon_data", ctx.collect("depot", "ListLogonData", request, "logon_data"), COLUMNS)


def _get(ctx, name: str) -> depot_pb2.LogonData:
    return ctx.call("depot", "GetLogonData", depot_pb2.GetLogonDataRequest(name=name)).logon_data


def get(ctx) -> None:
    ctx.out.resource(_get(ctx, ctx.names.logon(ctx.args.entry)))


def reveal(ctx) -> None:
    request = depot_pb2.RevealLogonDataRequest(name=ctx.names.logon(ctx.args.entry), reason=ctx.args.reason)
    response = ctx.call("depot", "RevealLogonData", request)
    if ctx.out.json_mode:
        ctx.out.document(to_dict(response))
        return
    ctx.out.line(response.secret)
    print(f"Revealed the secret of {response.user_name or response.name}; the access is logged as "
          f"{response.log_event}.", file=ctx.out.stderr)


def update(ctx) -> None:
    name = ctx.names.logon(ctx.args.entry)
    fields = _fields(ctx)
    paths = list(fields)
    secret = ""
    if ctx.args.new_secret or ctx.args.secret_stdin:
        secret = ctx.read_secret("new secret", ctx.args.secret_stdin, flag="--secret-stdin", confirm=True)
        paths.append("secret")
    if not paths:
        raise usage("nothing to change; give a field option, --secret or --secret-stdin")
    etag = ctx.args.etag or _get(ctx, name).etag
    entry = depot_pb2.LogonData(name=name, etag=etag, **fields)
    request = depot_pb2.UpdateLogonDataRequest(logon_data=entry, update_mask=field_mask_pb2.FieldMask(paths=paths),
                                               secret=secret)
    ctx.out.resource(ctx.call("depot", "UpdateLogonData", request).logon_data)


def extend(ctx) -> None:
    name = ctx.names.logon(ctx.args.entry)
    etag = ctx.args.etag or _get(ctx, name).etag
    entry = depot_pb2.LogonData(name=name, etag=etag, expire_time=timestamp(_expiry(ctx.args)))
    request = depot_pb2.UpdateLogonDataRequest(logon_data=entry,
                                               update_mask=field_mask_pb2.FieldMask(paths=["expire_time"]))
    ctx.out.resource(ctx.call("depot", "UpdateLogonData", request).logon_data)


def delete(ctx) -> None:
    name = ctx.names.logon(ctx.args.entry)
    etag = ctx.args.etag or _get(ctx, name).etag
    ctx.call("depot", "DeleteLogonData", depot_pb2.DeleteLogonDataRequest(name=name, etag=etag))
    if ctx.out.json_mode:
        ctx.out.document({"deleted": name})
    else:
        ctx.out.line(f"Deleted {name}.")


def incident_logon(ctx) -> None:
    """Incident -> its system -> the system's logon data the caller may see."""
    name = ctx.names.incident(ctx.args.incident)
    incident = ctx.call("connections", "GetIncident", connections_pb2.GetIncidentRequest(name=name)).incident
    request = depot_pb2.ListLogonDataRequest(parent=incident.system, kind=ctx.args.kind)
    entries = ctx.collect("depot", "ListLogonData", request, "logon_data")
    if ctx.out.json_mode:
        ctx.out.document({"incident": to_dict(incident), "system": incident.system,
                          "logon_data": [to_dict(e) for e in entries]})
        return
    status = connections_pb2.IncidentStatus.Name(incident.status).removeprefix("INCIDENT_STATUS_")
    processor = f", processor {incident.processor}" if incident.processor else ""
    ctx.out.line(f"Incident {incident.name}: {incident.title} ({status}{processor})")
    ctx.out.line(f"System:   {incident.system}")
    ctx.out.line("")
    ctx.out.listing("logon_data", entries, COLUMNS, empty="(no logon data stored for this system)")
    if entries:
        ctx.out.line("")
        ctx.out.line("Reveal: rsctl logon reveal ENTRY --reason ...   Change: rsctl logon update ENTRY ...")
