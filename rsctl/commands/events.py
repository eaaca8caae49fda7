"""events watch: the live event feed of a customer (the gateway's WatchEvents: logon data, windows,
incidents, tunnel sessions), one line per event as it happens, each shown only if its service's lists would
show it to you."""
from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format

from remotesupport.common.v1 import events_pb2
from remotesupport.gateway.v1 import gateway_pb2
from rsctl.args import EnumArg, positive_int
from rsctl.output import enum_name
from services.kit.secretfile import write_secret_file

TYPE = EnumArg(events_pb2.EventType)


def register(reg) -> None:
    group = reg.group("events", "the live event feed of a customer: watch")
    p = group.command("watch", watch, "print a customer's events as they happen, until interrupted (Ctrl-C) "
                                      "or --count events were printed")
    p.add_argument("customer_arg", nargs="?", metavar="CUSTOMER", help="default: --customer or your own")
    p.add_argument("--type", dest="types", type=TYPE, action="append", default=[], metavar="TYPE",
                   help=f"only events of this type (repeatable); one of: {TYPE.choices_text}")
    p.add_argument("--cursor", default="", metavar="CURSOR",
                   help="resume after the events a watch printed (its last cursor); default: from now")
    p.add_argument("--cursor-file", type=Path, metavar="FILE",
                   help="resume from the cursor in FILE if it exists, and keep the latest cursor there (mode 0600) "
                        "so the next watch misses nothing and repeats nothing")
    p.add_argument("--count", type=positive_int, metavar="N",
                   help="stop once N events were printed (the batch that reaches N is printed whole, so the "
                        "cursor kept is exact)")


def _line(event: events_pb2.Event) -> str:
    kind = enum_name(events_pb2.EventType.DESCRIPTOR, event.type)
    time = event.time.ToDatetime().isoformat(timespec="seconds") + "Z"
    where = event.resource or event.system
    text = f"{time}  {event.source}#{event.position}  {kind}  {event.actor}  {where}"
    return text + (f"  {event.detail}" if event.detail else "")


def watch(ctx) -> None:
    a = ctx.args
    cursor = a.cursor
    if not cursor and a.cursor_file is not None and a.cursor_file.exists():
        cursor = a.cursor_file.read_text().strip()
    request = gateway_pb2.WatchEventsRequest(parent=ctx.names.customer(a.customer_arg), types=a.types, cursor=cursor)
    printed = 0
    for response in ctx.stream("gateway", "WatchEvents", request):
        for event in response.events:
            if ctx.args.json:  # one JSON document per line (JSON lines): a stream has no end to close one
                ctx.out.line(json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True),
                                        ensure_ascii=False))
            else:
                ctx.out.line(_line(event))
            printed += 1
        ctx.out.stdout.flush()
        if a.cursor_file is not None and response.cursor:
            write_secret_file(a.cursor_file, (response.cursor + "\n").encode())
        if a.count is not None and printed >= a.count:
            return
