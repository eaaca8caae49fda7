"""connector get|verify|run: the Service Connector file (the seed's stfk.oez) of a window, and the connector
itself (rsctl/connector_agent.py), which runs in the customer's network and dials out to the relays."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from remotesupport.connections.v1 import connections_pb2
from rsctl import connector_agent, connector_check
from rsctl.errors import BAD_REQUEST, DATA_LOSS, CliError, usage
from rsctl.output import describe, iso, to_dict
from rsctl.tunnel_pump import Lines
from services.kit.secretfile import write_secret_file

MAX_FILE_BYTES = 1024 * 1024


def register(reg) -> None:
    group = reg.group("connector", "Service Connector files (stfk.oez)")
    p = group.command("get", get, "download a window's connector file (written with mode 0600)")
    p.add_argument("window", metavar="WINDOW")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default ./stfk.oez)")
    p.add_argument("--public-key-out", type=Path, metavar="FILE",
                   help="where to write the signing public key the connector pins (default: <FILE>.pub)")
    p = group.command("verify", verify, "check a connector file; exit 8 when it is not intact or not ours")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--require-usable", action="store_true", help="exit 6 unless its window is open now")
    p = group.command("run", run, "run the Service Connector of a file: dial out to its relays and carry the "
                                  "window's sessions to its target (never listens)", epilog=RUN_EPILOG)
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--public-key", type=Path, metavar="PEM",
                   help="the signing public key to verify the file with (default: <FILE>.pub)")
    p.add_argument("--window", metavar="WINDOW", help="refuse the file unless it is for this window")
    p.add_argument("--relay", action="append", metavar="HOST:PORT",
                   help="dial this relay instead of the file's (repeatable)")


RUN_EPILOG = """\
Before dialing anything the file is checked locally: exit 8 when it is not an intact STFK1 file or its
signature does not match the pinned public key; exit 2 when there is no public key; exit 6 when it is for
another window (--window), not valid yet, expired, or of a connection type with no network target.
Then it stays attached to every relay (reconnecting after a lost connection) until the window ends (exit 0),
a relay detaches it for good (exit 0), a relay refuses the file (the relay's code: 6 or 4), or SIGINT/SIGTERM
(exit 0). It connects only to the file's target."""


def write_connector(ctx, connector: connections_pb2.ServiceConnector, path: Path | None) -> Path:
    """Write the file atomically with mode 0600 and return where."""
    target = path or Path(connector.file_name or "stfk.oez")
    if target.is_dir():
        target = target / (connector.file_name or "stfk.oez")
    write_secret_file(target, connector.content)
    return target


def _checked_public_key(connector: connections_pb2.ServiceConnector) -> bytes:
    """The PEM the service sent, once the file verifies with it (so a pinned key fits the file it came with)."""
    pem = connector.signing_public_key.encode()
    try:
        key = load_pem_public_key(pem)
        connector_check.open_signed(connector.content, key)
    except (ValueError, TypeError, CliError):
        raise CliError("DATA_LOSS", "the connector file does not verify with the public key the service sent; "
                                    "nothing was written", DATA_LOSS) from None
    return pem


def write_public_key(pem: bytes, path: Path) -> None:
    """Write the public key atomically; mode 0644 (it is public)."""
    write_secret_file(path, pem)
    os.chmod(path, 0o644)


def get(ctx) -> None:
    request = connections_pb2.GetServiceConnectorRequest(name=ctx.names.window(ctx.args.window))
    connector = ctx.call("connections", "GetServiceConnector", request).service_connector
    pem = _checked_public_key(connector) if connector.signing_public_key else b""
    target = write_connector(ctx, connector, ctx.args.output)
    key_path = None
    if pem:
        key_path = ctx.args.public_key_out or target.with_name(target.name + ".pub")
        write_public_key(pem, key_path)
    else:
        ctx.out.warn("the service sent no signing public key; 'rsctl connector run' needs one (--public-key)")
    if ctx.out.json_mode:
        ctx.out.document({"file": str(target), "bytes": len(connector.content),
                          "public_key_file": str(key_path) if key_path else "", "ticket": to_dict(connector.ticket)})
        return
    t = connector.ticket
    code = t.connection_type.removeprefix("connectionTypes/")
    ctx.out.line(f"Wrote {target} ({len(connector.content)} bytes): {t.connection}, {code}, "
                 f"valid {iso(t.not_before)} to {iso(t.not_after)}.")
    if key_path:
        ctx.out.line(f"Wrote {key_path}: the signing public key (key {t.key_id}) that 'rsctl connector run' "
                     "verifies the file with.")


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


def run(ctx) -> int:
    """The customer's Service Connector: check the file, then attach to the relays until the window ends."""
    if ctx.out.json_mode or ctx.out.name_only:
        raise usage("'connector run' prints progress lines; --json and --name-only do not apply")
    checked = connector_check.check_file(ctx.args.file, ctx.args.public_key, ctx.args.window,
                                           connector_agent.wall_clock())
    relays = ctx.args.relay or list(checked.ticket.relay_addresses)
    if not relays:
        raise usage("the file names no relay to dial; give --relay HOST:PORT")
    for relay in relays:
        try:
            connector_agent.split_host_port(relay)
        except ValueError:
            raise usage(f"relay {relay!r} is not HOST:PORT") from None
    agent = connector_agent.Connector(checked, relays, Lines(ctx.out), tls=ctx.tls)
    return asyncio.run(agent.run())
