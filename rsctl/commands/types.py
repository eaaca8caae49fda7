"""types list|get: the connection-type catalog (the seed's table)."""
from __future__ import annotations

from remotesupport.connections.v1 import connections_pb2
from rsctl.args import EnumArg
from rsctl.output import col

CATEGORY = EnumArg(connections_pb2.ConnectionCategory)
COLUMNS = [col("code"), col("display_name", "name"), col("category"), col("sap_note"), col("default_port", "port"),
           col("max_open_duration", "max open")]


def register(reg) -> None:
    group = reg.group("types", "connection types (read-only catalog)", aliases=["connection-types"])
    p = group.command("list", list_, "list the catalog in the seed's order")
    p.add_argument("--category", type=CATEGORY, default=0, help=f"one of: {CATEGORY.choices_text}")
    group.command("get", get, "show a connection type with its set-up parameters").add_argument(
        "code", metavar="CODE", help="e.g. R3_SUPPORT, r3-support or connectionTypes/R3_SUPPORT")


def list_(ctx) -> None:
    types = ctx.collect("connections", "ListConnectionTypes",
                        connections_pb2.ListConnectionTypesRequest(category=ctx.args.category), "connection_types")
    ctx.out.listing("connection_types", types, COLUMNS)


def get(ctx) -> None:
    request = connections_pb2.GetConnectionTypeRequest(name=ctx.names.connection_type(ctx.args.code))
    ctx.out.resource(ctx.call("connections", "GetConnectionType", request).connection_type)
