"""connector get|verify: the Service Connector file (the seed's stfk.oez) of a window."""
from __future__ import annotations

from pathlib import Path

from remotesupport.connections.v1 import connections_pb2
from rsctl.errors import BAD_REQUEST, DATA_LOSS, CliError
from rsctl.output import describe, iso, to_dict
from services.kit.secretfile import write_secret_file

MAX_FILE_BYTES = 1024 * 1024


def register(reg) -> None:
    group = reg.group("connector", "Service Connector files (stfk.oez)")
    p = group.command("get", get, "download a window's connector file (written with mode 0600)")
    p.add_argument("window", metavar="WINDOW")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default ./stfk.oez)")
    p = group.command("verify", verify, "check a connector file; exit 8 when it is not intact or not ours")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--require-usable", action="store_true", help="exit 6 unless its window is open now")


def write_connector(ctx, connector: connections_pb2.ServiceConnector, path: Path | None) -> Path:
    """Write the file atomically with mode 0600 and return where."""
    target = path or Path(connector.file_name or "stfk.oez")
    if target.is_dir():
        target = target / (connector.file_name or "stfk.oez")
    write_secret_file(target, connector.content)
    return target


def get(ctx) -> None:
    request = connections_pb2.GetServiceConnectorRequest(name=ctx.names.window(ctx.args.window))
    connector = ctx.call("connections", "GetServiceConnector", request).service_connector
    target = write_connector(ctx, connector, ctx.args.output)
    if ctx.out.json_mode:
        ctx.out.document({"file": str(target), "bytes": len(connector.content), "ticket": to_dict(connector.ticket)})
        return
    t = connector.ticket
    code = t.connection_type.removeprefix("connectionTypes/")
    ctx.out.line(f"Wrote {target} ({len(connector.content)} bytes): {t.connection}, {code}, "
                 f"valid {iso(t.not_before)} to {iso(t.not_after)}.")


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            content = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError("error", f"cannot read {path}: {exc.strerror}") from None
    if len(content) > MAX_FILE_BYTES:
        raise CliError("usage", f"{path} is larger than {MAX_FILE_BYTES} bytes; not a connector file", 2)
    return content


def verify(ctx) -> int:
    request = connections_pb2.VerifyServiceConnectorRequest(content=_read(ctx.args.file))
    verdict = ctx.call("connections", "VerifyServiceConnector", request)
    if ctx.out.json_mode:
        ctx.out.document({"file": str(ctx.args.file), **to_dict(verdict)})
    else:
        ctx.out.line(f"{ctx.args.file}: " + ("valid" if verdict.valid else "NOT VALID")
                     + (", usable now" if verdict.currently_usable else ", not usable now")
                     + (f" ({verdict.problem})" if verdict.problem else ""))
        if verdict.valid:
            for line in describe(verdict.ticket, "  "):
                ctx.out.line(line)
    if not verdict.valid:
        return DATA_LOSS
    if ctx.args.require_usable and not verdict.currently_usable:
        return BAD_REQUEST
    return 0
