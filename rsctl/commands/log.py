"""log list|verify|export: the depot's hash-chained log of a customer ("Show Log")."""
from __future__ import annotations

import argparse
import csv
import io
import re
from pathlib import Path

from remotesupport.depot.v1 import depot_pb2
from rsctl.args import TIME_HELP, positive_int, time_arg, timestamp
from rsctl.errors import DATA_LOSS, CliError, usage
from rsctl.output import col, field_text
from services.kit.secretfile import write_secret_file

COLUMNS = [col("sequence", "seq"), col("event_time", "time"), col("action"), col("outcome"), col("actor"),
           col("logon_data", "entry"), col("incident"), col("detail")]
CSV_FIELDS = ["sequence", "event_time", "action", "outcome", "actor", "system", "logon_data", "incident", "detail",
              "request_id", "name", "hash", "previous_hash"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HEAD = re.compile(r"([1-9][0-9]*):([0-9a-fA-F]{64})")
HEAD_HELP = "SEQ:HASH as verify prints it (an event's sequence and its 64-hex hash), or @FILE holding it"


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
    p = group.command("verify", verify, "verify the hash chain and print its head; exit 8 when it is broken or "
                                         "does not extend --since-head")
    p.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help="default: --customer or your own")
    head_options(p)
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


def head_options(parser) -> None:
    """--since-head and --save-head of a verify command (verify_chain reads them)."""
    parser.add_argument("--since-head", type=head_arg, metavar="HEAD",
                        help=f"a head you kept from an earlier verify: the log must still extend it; {HEAD_HELP}")
    parser.add_argument("--save-head", type=Path, metavar="FILE",
                        help="when the log verifies, write its head to FILE (read it back with --since-head @FILE)")


def head_arg(text: str) -> str:
    """--since-head's value as given: SEQ:HASH (checked here) or @FILE (read when the command runs)."""
    if not text.startswith("@") and not _HEAD.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a head; use {HEAD_HELP}")
    return text


def head_text(head) -> str:
    """A head (depot_pb2.LogHead, authz_pb2.IdentityLogHead) as --since-head and the head file take it: SEQ:HASH."""
    return f"{head.sequence}:{head.hash}"


def _kept_head(value: str, head_type):
    text = value.strip()
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise CliError("error", f"cannot read head file {path}: {exc.strerror}") from None
        if not _HEAD.fullmatch(text):
            raise usage(f"head file {path} does not hold a head: it must be one line SEQ:HASH, as --save-head "
                        "writes it")
    sequence, digest = _HEAD.fullmatch(text).groups()
    return head_type(sequence=int(sequence), hash=digest.lower())


def verify(ctx) -> int:
    parent = ctx.names.customer(ctx.args.customer_arg)
    return verify_chain(ctx, "depot", "VerifyLog", depot_pb2.VerifyLogRequest(parent=parent), parent,
                        f"The log of {parent}", "rsctl log verify")


def verify_chain(ctx, service: str, method: str, request, parent: str, label: str, command: str) -> int:
    """Verify one hash-chained log (the depot's log, an identity log of authz): `request` has `kept_head`, set
    from --since-head; its verdict has valid, events_checked, first_broken_sequence, problem and head. Prints the
    verdict and the head to keep (--save-head writes it); DATA_LOSS (exit 8) when the log does not verify."""
    a = ctx.args
    if a.since_head:
        request.kept_head.CopyFrom(_kept_head(a.since_head, type(request.kept_head)))
    verdict = ctx.call(service, method, request)
    has_head = verdict.HasField("head") and verdict.head.sequence > 0  # an empty log has no event to keep
    saved = ""
    if a.save_head and verdict.valid and has_head:
        try:
            write_secret_file(a.save_head, (head_text(verdict.head) + "\n").encode())
        except OSError as exc:
            raise CliError("error", f"cannot write head file {a.save_head}: {exc.strerror}") from None
        saved = str(a.save_head)
    elif a.save_head and verdict.valid:
        ctx.out.warn(f"the log has no event yet, so there is no head to save; {a.save_head} was not written")
    if ctx.out.json_mode:
        ctx.out.resource(verdict, extra={"customer": parent, **({"saved_head": saved} if saved else {})})
    elif verdict.valid:
        kept = f" It extends the head you kept (event {request.kept_head.sequence})." if a.since_head else ""
        ctx.out.line(f"{label} is intact: {verdict.events_checked} events verified.{kept}")
        if has_head:
            ctx.out.line(f"Head: {head_text(verdict.head)}")
            ctx.out.line(f"Saved the head to {saved}." if saved else
                         f"Keep it where the {service} service cannot change it; '{command} --since-head HEAD' later "
                         "finds a log rolled back before it.")
    else:
        ctx.out.line(f"{label} is BROKEN at event {verdict.first_broken_sequence} "
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


