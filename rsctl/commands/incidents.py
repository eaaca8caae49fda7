"""incidents create|get|list|status|assign|take."""
from __future__ import annotations

from remotesupport.connections.v1 import connections_pb2
from rsctl.args import EnumArg
from rsctl.names import Names
from rsctl.output import col

PRIORITY = EnumArg(connections_pb2.IncidentPriority)
STATUS = EnumArg(connections_pb2.IncidentStatus)
COLUMNS = [col("name"), col("system"), col("status"), col("priority"), col("processor"), col("title")]


def register(reg) -> None:
    group = reg.group("incidents", "incidents of a customer's systems", aliases=["incident"])
    p = group.command("create", create, "report an incident for a system")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("--title", required=True)
    p.add_argument("--priority", type=PRIORITY, required=True, help=f"one of: {PRIORITY.choices_text}")
    p.add_argument("--description", default="")
    group.command("get", get, "show an incident").add_argument("incident", metavar="INCIDENT")
    p = group.command("list", list_, "list the customer's incidents, newest first")
    p.add_argument("--status", type=STATUS, default=0, help=f"one of: {STATUS.choices_text}")
    p.add_argument("--system", default="", metavar="SYSTEM")
    p = group.command("status", status, "move an incident along its life cycle")
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("status", type=STATUS, metavar="STATUS", help=f"one of: {STATUS.choices_text}")
    p.add_argument("--etag", default="")
    p = group.command("assign", assign, "make a support engineer the processor (in process at vendor)")
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("engineer", metavar="ENGINEER", help="user id of a support engineer")
    group.command("take", take, "become the processor yourself (support engineers)").add_argument(
        "incident", metavar="INCIDENT")


def create(ctx) -> None:
    system = ctx.names.system(ctx.args.system)
    incident = connections_pb2.Incident(system=system, title=ctx.args.title, priority=ctx.args.priority,
                                        description=ctx.args.description)
    parent = Names.customer_of(system) or ctx.names.customer(None)
    response = ctx.call("connections", "CreateIncident",
                        connections_pb2.CreateIncidentRequest(parent=parent, incident=incident))
    ctx.out.resource(response.incident)


def get(ctx) -> None:
    request = connections_pb2.GetIncidentRequest(name=ctx.names.incident(ctx.args.incident))
    ctx.out.resource(ctx.call("connections", "GetIncident", request).incident)


def list_(ctx) -> None:
    names = ctx.names
    system = names.system(ctx.args.system) if ctx.args.system else ""
    parent = Names.customer_of(system) if system and not ctx.args.customer else names.customer(None)
    request = connections_pb2.ListIncidentsRequest(parent=parent, status=ctx.args.status, system=system)
    ctx.out.listing("incidents", ctx.collect("connections", "ListIncidents", request, "incidents"), COLUMNS)


def status(ctx) -> None:
    request = connections_pb2.UpdateIncidentStatusRequest(name=ctx.names.incident(ctx.args.incident),
                                                          status=ctx.args.status, etag=ctx.args.etag)
    ctx.out.resource(ctx.call("connections", "UpdateIncidentStatus", request).incident)


def _assign(ctx, processor: str) -> None:
    request = connections_pb2.AssignProcessorRequest(name=ctx.names.incident(ctx.args.incident), processor=processor)
    ctx.out.resource(ctx.call("connections", "AssignProcessor", request).incident)


def assign(ctx) -> None:
    _assign(ctx, ctx.names.user(ctx.args.engineer))


def take(ctx) -> None:
    _assign(ctx, "")
