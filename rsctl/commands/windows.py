"""windows open|extend|close|list|get: a set-up connection type opened for a time frame."""
from __future__ import annotations

import argparse
import datetime as dt

from remotesupport.connections.v1 import connections_pb2
from rsctl.args import TIME_HELP, EnumArg, time_arg, timestamp
from rsctl.errors import usage
from rsctl.output import col

STATE = EnumArg(connections_pb2.ConnectionState)
COLUMNS = [col("name"), ("type", lambda c: c.connection_type.removeprefix("connectionTypes/")), col("state"),
           col("start_time", "start"), col("end_time", "end"), col("incident"), col("opener")]


def positive_hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def add_time_frame(parser) -> None:
    """--start, and --end or --hours, for opening a window."""
    parser.add_argument("--start", type=time_arg, metavar="TIME", help=f"default now; {TIME_HELP}")
    frame = parser.add_mutually_exclusive_group(required=True)
    frame.add_argument("--end", type=time_arg, metavar="TIME", help="when access ends by itself")
    frame.add_argument("--hours", type=positive_hours, metavar="N", help="or: the window lasts N hours")


def time_frame(args) -> tuple[dt.datetime | None, dt.datetime]:
    if args.end is not None:
        if args.start is not None and args.end <= args.start:
            raise usage("--end must be after --start")
        return args.start, args.end
    begin = args.start or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return args.start, begin + dt.timedelta(hours=args.hours)


def register(reg) -> None:
    group = reg.group("windows", "time-boxed openings of connection types", aliases=["connections"])
    p = group.command("open", open_, "open a set-up connection type for a time frame")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("code", metavar="CODE", help="connection type, e.g. R3_SUPPORT")
    add_time_frame(p)
    p.add_argument("--incident", default="", metavar="INCIDENT", help="the incident the window is for")
    p.add_argument("--reason", default="")
    p = group.command("extend", extend, "give an open or scheduled window a later end in one step (within the "
                                        "type's maximum window, as when it was opened); logged")
    p.add_argument("window", metavar="WINDOW")
    frame = p.add_mutually_exclusive_group(required=True)
    frame.add_argument("--end", type=time_arg, metavar="TIME", help=f"the new end; {TIME_HELP}")
    frame.add_argument("--hours", type=positive_hours, metavar="N", help="or: N hours later than its current end")
    group.command("close", close, "close a window early").add_argument("window", metavar="WINDOW")
    p = group.command("list", list_, "list a system's windows, newest first")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("--state", type=STATE, default=0, help=f"one of: {STATE.choices_text}")
    group.command("get", get, "show a window").add_argument("window", metavar="WINDOW")


def open_(ctx) -> None:
    start, end = time_frame(ctx.args)
    request = connections_pb2.OpenConnectionRequest(
        parent=ctx.names.system(ctx.args.system), connection_type=ctx.names.connection_type(ctx.args.code),
        end_time=timestamp(end), incident=ctx.names.incident(ctx.args.incident), reason=ctx.args.reason)
    if start is not None:
        request.start_time.CopyFrom(timestamp(start))
    ctx.out.resource(ctx.call("connections", "OpenConnection", request).connection)


def extend(ctx) -> None:
    name = ctx.names.window(ctx.args.window)
    end = ctx.args.end
    if end is None:
        current = ctx.call("connections", "GetConnection", connections_pb2.GetConnectionRequest(name=name))
        end = current.connection.end_time.ToDatetime(dt.timezone.utc) + dt.timedelta(hours=ctx.args.hours)
    request = connections_pb2.ExtendConnectionRequest(name=name, end_time=timestamp(end))
    ctx.out.resource(ctx.call("connections", "ExtendConnection", request).connection)
    ctx.out.note("A connector file downloaded before carries the old end: download a new one "
                 "(rsctl connector get) for the connector to run past it.")


def close(ctx) -> None:
    request = connections_pb2.CloseConnectionRequest(name=ctx.names.window(ctx.args.window))
    ctx.out.resource(ctx.call("connections", "CloseConnection", request).connection)


def list_(ctx) -> None:
    request = connections_pb2.ListConnectionsRequest(parent=ctx.names.system(ctx.args.system), state=ctx.args.state)
    ctx.out.listing("connections", ctx.collect("connections", "ListConnections", request, "connections"), COLUMNS)


def get(ctx) -> None:
    request = connections_pb2.GetConnectionRequest(name=ctx.names.window(ctx.args.window))
    ctx.out.resource(ctx.call("connections", "GetConnection", request).connection)
