"""systems create|get|list|update|delete: a customer's systems."""
from __future__ import annotations

from google.protobuf import field_mask_pb2

from remotesupport.connections.v1 import connections_pb2
from rsctl.errors import usage
from rsctl.output import col

COLUMNS = [col("name"), col("system_id", "sid"), col("installation_number", "installation"), col("product"),
           col("description")]
# option -> System field, for create and update
FIELDS = {"sid": "system_id", "installation": "installation_number", "description": "description",
          "product": "product", "route": "saprouter_route"}


def _field_options(parser, required: bool) -> None:
    parser.add_argument("--sid", required=required, help="SAP system ID, e.g. PRD")
    parser.add_argument("--installation", required=required, metavar="N", help="installation number")
    parser.add_argument("--description")
    parser.add_argument("--product", help='e.g. "SAP S/4HANA 2023"')
    parser.add_argument("--route", metavar="ROUTE", help="SAProuter route string (no passwords)")


def register(reg) -> None:
    group = reg.group("systems", "a customer's systems")
    p = group.command("create", create, "register a system of the default customer (or a full name)")
    p.add_argument("number", metavar="SYSTEM_NUMBER", help="system number (or customers/C/systems/N)")
    _field_options(p, required=True)
    group.command("get", get, "show a system").add_argument("system", metavar="SYSTEM")
    p = group.command("list", list_, "list or search the customer's systems (\"Switch System\")")
    p.add_argument("--query", default="", help="substring of system ID, installation number or description")
    p = group.command("update", update, "change a system")
    p.add_argument("system", metavar="SYSTEM")
    _field_options(p, required=False)
    p.add_argument("--etag", default="", help="fail if the system changed since this etag")
    p = group.command("delete", delete, "delete a system with its set-ups (refused while a window is open)")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("--etag", default="")


def _fields(args) -> dict[str, str]:
    return {field: getattr(args, option) for option, field in FIELDS.items() if getattr(args, option) is not None}


def create(ctx) -> None:
    number = ctx.args.number
    parent = ctx.names.customer(None) if "/" not in number else number.rsplit("/systems/", 1)[0]
    system = connections_pb2.System(system_number=number.rsplit("/", 1)[-1], **_fields(ctx.args))
    response = ctx.call("connections", "CreateSystem", connections_pb2.CreateSystemRequest(parent=parent,
                                                                                           system=system))
    ctx.out.resource(response.system)


def get(ctx) -> None:
    name = ctx.names.system(ctx.args.system)
    ctx.out.resource(ctx.call("connections", "GetSystem", connections_pb2.GetSystemRequest(name=name)).system)


def list_(ctx) -> None:
    request = connections_pb2.ListSystemsRequest(parent=ctx.names.customer(None), query=ctx.args.query)
    ctx.out.listing("systems", ctx.collect("connections", "ListSystems", request, "systems"), COLUMNS)


def update(ctx) -> None:
    fields = _fields(ctx.args)
    if not fields:
        raise usage("nothing to change; give at least one of --sid --installation --description --product --route")
    system = connections_pb2.System(name=ctx.names.system(ctx.args.system), etag=ctx.args.etag, **fields)
    request = connections_pb2.UpdateSystemRequest(system=system,
                                                  update_mask=field_mask_pb2.FieldMask(paths=list(fields)))
    ctx.out.resource(ctx.call("connections", "UpdateSystem", request).system)


def delete(ctx) -> None:
    name = ctx.names.system(ctx.args.system)
    ctx.call("connections", "DeleteSystem", connections_pb2.DeleteSystemRequest(name=name, etag=ctx.args.etag))
    if ctx.out.json_mode:
        ctx.out.document({"deleted": name})
    else:
        ctx.out.line(f"Deleted {name}.")
