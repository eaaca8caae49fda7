"""sessions list|show|terminate: the relay sessions (tunnels) of a system. A customer user sees every session of
its systems; a support engineer only its own."""
from __future__ import annotations

from remotesupport.connections.v1 import connections_pb2
from rsctl.args import EnumArg
from rsctl.output import col, enum_name

STATE = EnumArg(connections_pb2.SessionState)


def why(session: connections_pb2.Session) -> str:
    """Why it ended or was refused; for a live one, whether its termination was asked for."""
    if session.state == connections_pb2.SESSION_STATE_REFUSED:
        return session.refusal_reason
    if session.end_reason:
        return enum_name(connections_pb2.SessionEndReason.DESCRIPTOR, session.end_reason)
    return f"terminating (by {session.terminated_by})" if session.terminated_by else ""


COLUMNS = [col("name"), col("state"), col("principal"),
           ("type", lambda s: s.connection_type.removeprefix("connectionTypes/")), col("target"),
           col("start_time", "start"), col("end_time", "end"), col("bytes_to_target", "to_target"),
           col("bytes_from_target", "from_target"), ("why", why)]


def register(reg) -> None:
    group = reg.group("sessions", "relay sessions (tunnels) of a system: list, show, terminate")
    p = group.command("list", list_, "list a system's sessions, newest first (an engineer: its own)")
    p.add_argument("system", metavar="SYSTEM")
    p.add_argument("--state", type=STATE, default=0, help=f"one of: {STATE.choices_text}")
    p.add_argument("--window", default="", metavar="WINDOW",
                   help="only the sessions through this window (its name, or its id under SYSTEM)")
    p = group.command("show", show, "show a session", aliases=["get"])
    p.add_argument("session", metavar="SESSION")
    p = group.command("terminate", terminate, "cut a live session (its relay cuts it within 2 s)")
    p.add_argument("session", metavar="SESSION")


def list_(ctx) -> None:
    system = ctx.names.system(ctx.args.system)
    window = ctx.names.child(ctx.args.window, "connections", system) if ctx.args.window else ""
    request = connections_pb2.ListSessionsRequest(parent=system, state=ctx.args.state, connection=window)
    ctx.out.listing("sessions", ctx.collect("connections", "ListSessions", request, "sessions"), COLUMNS)


def show(ctx) -> None:
    request = connections_pb2.GetSessionRequest(name=ctx.names.session(ctx.args.session))
    ctx.out.resource(ctx.call("connections", "GetSession", request).session)


def terminate(ctx) -> None:
    request = connections_pb2.TerminateSessionRequest(name=ctx.names.session(ctx.args.session))
    session = ctx.call("connections", "TerminateSession", request).session
    ctx.out.resource(session)
    ctx.out.note("Termination requested: the relay carrying the session cuts it within 2 s.")
