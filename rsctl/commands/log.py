"""log list|verify|export: the depot's hash-chained log of a customer ("Show Log")."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from remotesupport.depot.v1 import depot_pb2
from rsctl.args import TIME_HELP, positive_int, time_arg, timestamp
from rsctl.errors import DATA_LOSS
from rsctl.output import col, field_text
from services.kit.secretfile import write_secret_file

COLUMNS = [col("sequence", "seq"), col("event_time", "time"), col("action"), col("outcome"), col("actor"),
           col("logon_data", "entry"), col("incident"), col("detail")]
CSV_FIELDS = ["sequence", "event_time", "action", "outcome", "actor", "system", "logon_data", "incident", "detail",
              "request_id", "name", "hash", "previous_hash"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _filters(parser) -> None:
    parser.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help="default: --customer or your own")
    parser.add_argument("--system", default="", metavar="SYSTEM")
    parser.add_argument("--entry", default="", metavar="ENTRY", help="logon data name")
    parser.add_argument("--actor", default="", metavar="USER")
    parser.add_argument("--since", type=time_arg, metavar="TIME", help=f"events at or after; {TIME_HELP}")
    parser.add_argument("--until", type=time_arg, metavar="TIME", help="events before")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="at most N events")
    parser.add_argument("--newest-first", action="store_true",
                        help="newest event first (with --limit N: the latest N events)")


def register(reg) -> None:
    group = reg.group("log", "the depot log of a customer (every change and access)")
    _filters(group.command("list", list_, "list log events, oldest first (or --newest-first)"))
    group.command("verify", verify, "verify the hash chain; exit 8 when it is broken").add_argument(
        "customer_arg", nargs="?", metavar="CUSTOMER", help="default: --customer or your own")
    p = group.command("export", export, "export log events as CSV (header row first)")
    _filters(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="CSV file to write ('-': stdout)")


def _events(ctx) -> list:
    a, names = ctx.args, ctx.names
    request = depot_pb2.ListLogEventsRequest(
        parent=names.customer(a.customer_arg), system=names.system(a.system) if a.system else "",
        logon_data=names.logon(a.entry) if a.entry else "", actor=names.user(a.actor) if a.actor else "",
        page_size=min(a.limit or 1000, 1000), order_by="sequence desc" if a.newest_first else "")
    if a.since is not None:
        request.start_time.CopyFrom(timestamp(a.since))
    if a.until is not None:
        request.end_time.CopyFrom(timestamp(a.until))
    return ctx.collect("depot", "ListLogEvents", request, "events", a.limit)


def list_(ctx) -> None:
    ctx.out.listing("events", _events(ctx), COLUMNS, empty="(no events)")


def verify(ctx) -> int:
    parent = ctx.names.customer(ctx.args.customer_arg)
    verdict = ctx.call("depot", "VerifyLog", depot_pb2.VerifyLogRequest(parent=parent))
    if ctx.out.json_mode:
        ctx.out.resource(verdict, extra={"customer": parent})
    elif verdict.valid:
        ctx.out.line(f"The log of {parent} is intact: {verdict.events_checked} events verified.")
    else:
        ctx.out.line(f"The log of {parent} is BROKEN at event {verdict.first_broken_sequence} "
                     f"({verdict.events_checked} events checked): {verdict.problem}")
    return 0 if verdict.valid else DATA_LOSS


def _cell(text: str) -> str:
    """Spreadsheet-safe: a cell that would start a formula gets a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_value(event, name: str) -> str:
    if name == "event_time":  # full precision (RFC 3339) in the export, seconds in tables
        return event.event_time.ToJsonString() if event.HasField("event_time") else ""
    return field_text(event, name)


def csv_text(events: list) -> str:
    """The header row, then one row per event; enums by short name."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for event in events:
        writer.writerow([_cell(_csv_value(event, name)) for name in CSV_FIELDS])
    return buffer.getvalue()


def export(ctx) -> None:
    events = _events(ctx)
    text = csv_text(events)
    if ctx.args.output == "-":
        ctx.out.stdout.write(text)
        return
    target = Path(ctx.args.output)
    write_secret_file(target, text.encode())
    if ctx.out.json_mode:
        ctx.out.document({"file": str(target), "events": len(events)})
    else:
        ctx.out.line(f"Wrote {len(events)} events to {target}.")


