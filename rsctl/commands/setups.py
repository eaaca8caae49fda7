"""setups set|list|delete: the connection types set up for a system (once per system)."""
from __future__ import annotations

from remotesupport.connections.v1 import connections_pb2
from rsctl.args import key_value
from rsctl.output import col

COLUMNS = [("code", lambda s: s.connection_type.removeprefix("connectionTypes/")), col("parameters"),
           col("updater"), col("update_time", "updated")]


def register(reg) -> None:
    group = reg.group("setups", "connection set-ups of a system", aliases=["setup"])
    p = group.command("set", set_, "set up a connection type for a system (again: updates its parameters)")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("code", metavar="CODE", help="connection type, e.g. R3_SUPPORT")
    p.add_argument("parameters", nargs="*", type=key_value, metavar="KEY=VALUE",
                   help="parameters of the type (see: rsctl types get CODE)")
    group.command("list", list_, "list a system's set-ups").add_argument("system", metavar="SYSTEM")
    p = group.command("delete", delete, "remove a set-up (refused while a window of it is open or scheduled)")
    p.add_argument("system", metavar="SYSTEM", help="the system, or the set-up's full name")
    p.add_argument("code", nargs="?", metavar="CODE")


def set_(ctx) -> None:
    request = connections_pb2.SetUpConnectionRequest(
        parent=ctx.names.system(ctx.args.system), connection_type=ctx.names.connection_type(ctx.args.code),
        parameters=dict(ctx.args.parameters))
    response = ctx.call("connections", "SetUpConnection", request)
    ctx.out.note("Set up (new):" if response.created else "Set up (updated):")
    ctx.out.resource(response.connection_setup, extra={"created": response.created} if ctx.out.json_mode else None)


def list_(ctx) -> None:
    request = connections_pb2.ListConnectionSetupsRequest(parent=ctx.names.system(ctx.args.system))
    ctx.out.listing("connection_setups", ctx.collect("connections", "ListConnectionSetups", request,
                                                     "connection_setups"), COLUMNS)


def delete(ctx) -> None:
    if ctx.args.code:
        name = f"{ctx.names.system(ctx.args.system)}/connectionSetups/{ctx.names.type_code(ctx.args.code)}"
    else:
        name = ctx.names.child(ctx.args.system, "connectionSetups")
    ctx.call("connections", "DeleteConnectionSetup", connections_pb2.DeleteConnectionSetupRequest(name=name))
    if ctx.out.json_mode:
        ctx.out.document({"deleted": name})
    else:
        ctx.out.line(f"Deleted {name}.")
