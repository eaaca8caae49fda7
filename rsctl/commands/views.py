"""views get|set: the restricted view of an incident (which system-user entries the vendor sees for it)."""
from __future__ import annotations

from remotesupport.depot.v1 import depot_pb2
from rsctl.errors import usage
from rsctl.names import Names
from rsctl.output import iso


def register(reg) -> None:
    group = reg.group("views", "restricted views (\"Maintain User Restricted View\")", aliases=["restricted-views"])
    p = group.command("get", get, "show the restricted view of an incident")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("incident", metavar="INCIDENT")
    p = group.command("set", set_, "set the complete restricted view of an incident")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("entries", nargs="*", metavar="ENTRY", help="logon data names (or ids of the system's entries)")
    p.add_argument("--clear", action="store_true", help="remove the restriction (no ENTRY)")


def view_name(ctx) -> tuple[str, str]:
    system = ctx.names.system(ctx.args.system)
    return system, f"{system}/restrictedViews/{Names.last(ctx.args.incident)}"


def _show(ctx, view: depot_pb2.RestrictedView) -> None:
    if ctx.out.json_mode or ctx.out.name_only:
        ctx.out.resource(view)
        return
    ctx.out.line(f"{view.name}: " + ("no restriction (the vendor sees every entry)" if not view.logon_data
                                     else f"{len(view.logon_data)} visible system-user entr"
                                          + ("y" if len(view.logon_data) == 1 else "ies")))
    for entry in view.logon_data:
        ctx.out.line(f"  {entry}")
    if view.updater:
        ctx.out.line(f"set by {view.updater} at {iso(view.update_time)}")


def get(ctx) -> None:
    _, name = view_name(ctx)
    _show(ctx, ctx.call("depot", "GetRestrictedView", depot_pb2.GetRestrictedViewRequest(name=name)).restricted_view)


def set_(ctx) -> None:
    if not ctx.args.entries and not ctx.args.clear:
        raise usage("give the visible ENTRY names, or --clear to remove the restriction")
    if ctx.args.entries and ctx.args.clear:
        raise usage("--clear takes no ENTRY")
    system, name = view_name(ctx)
    view = depot_pb2.RestrictedView(name=name, logon_data=[ctx.names.logon(e, system) for e in ctx.args.entries])
    response = ctx.call("depot", "SetRestrictedView", depot_pb2.SetRestrictedViewRequest(restricted_view=view))
    _show(ctx, response.restricted_view)
