"""rsctl - the Remote Support Suite's command-line tool, built on the generated gRPC stubs.

Getting started::

    rsctl login --token-file var/admin.token           # adopt the platform admin's token (make run wrote it)
    rsctl customers create 1234 "ACME Corp"
    rsctl users create S0000000001 --name "Ada Admin" --email ada@acme.example --customer 1234
    rsctl auth grant S0000000001 USER_ADMIN             # authz mailed Ada a one-time code (make run: var/mail/)
    rsctl users set-password S0000000001 --code CODE    # Ada sets her password (prompted, or --password-stdin)
    rsctl login S0000000001                             # prompts for the password (or --password-stdin)
    rsctl systems create 100 --sid PRD --installation 20012345 --description "ERP production"
    rsctl setups set 100 R3_SUPPORT host=erp.example.com instance=00
    rsctl windows open 100 R3_SUPPORT --hours 4 --reason "incident 7"
    rsctl connector get systems/100/connections/<id> -o stfk.oez
    rsctl logon add 100 --kind system-user --user SUPPORT1 --client 001 --days 7 --secret-stdin < secret.txt
    rsctl log export -o log.csv

Every command: `rsctl COMMAND --help`. Results are aligned tables or "field: value" blocks; with --json,
stdout holds exactly one JSON document (protobuf JSON mapping, proto field names); with --name-only, just the
name of each resource printed, one a line (WINDOW=$(rsctl windows open ... --name-only)). Timestamps are
ISO 8601 UTC. Options that take a time accept 2026-12-01T08:00:00Z, 2026-12-01, now, or +N[smhd].

Where it talks to: --address (else $RSCTL_ADDRESS, else the gateway at 127.0.0.1:50051). Every method is
served by the gateway; --authz-address, --connections-address, --depot-address, --gateway-address (or
$RSCTL_<SERVICE>_ADDRESS) send one service's methods elsewhere, e.g. straight to a service. The relay (the
data plane `rsctl tunnel` talks to; the gateway does not serve it) is --relay-address, else
$RSCTL_RELAY_ADDRESS, else 127.0.0.1:50055; `rsctl connector run` dials the relays its file names. Plaintext
gRPC unless --tls (or --ca-file, e.g. var/certs/public-ca.pem for the gateway's public port); a service
that asks for a client certificate (RS_TLS=1) gets --cert-file/--key-file (e.g. var/certs/client.pem).

Session: `rsctl login` keeps the bearer token in <config dir>/session.json, mode 0600, written atomically;
the config dir is --config-dir, else $RSCTL_CONFIG_DIR, else $XDG_CONFIG_HOME/rsctl or ~/.config/rsctl.
$RSCTL_TOKEN, when set, is used instead. Every call sends "authorization: Bearer <token>". Passwords and
secrets are read from a prompt without echo or from the first line of standard input (--password-stdin,
--secret-stdin), never from an option value. No command prints a token or a one-time code; only `logon reveal`
prints a secret.

Short names: resource names are accepted in full (customers/1/systems/2) everywhere; short forms resolve
against the default customer (--customer, else your own): 2 or systems/2, incidents/7 or 7, users by id,
connection types by code (r3-support), authorizations by name (edit-all-login-data).

Errors: one line on stderr, `rsctl: <gRPC code>: <message>`, then the field violations and the ErrorInfo
reason (required authorization, request id) indented below; never a traceback (RSCTL_DEBUG=1 shows one for
internal faults of rsctl itself).
"""
from __future__ import annotations

import os
import sys

if "grpc" not in sys.modules:  # rsctl's own process: no gRPC C-core info lines among its messages
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TextIO  # noqa: E402

from rsctl import commands  # noqa: E402
from rsctl.client import SERVICES, Addresses, Tls  # noqa: E402
from rsctl.config import SessionStore, default_config_dir  # noqa: E402
from rsctl.context import Context  # noqa: E402
from rsctl.errors import EXIT_CODES_HELP, FAILURE, INTERRUPTED, OK, USAGE, CliError  # noqa: E402
from rsctl.output import Output  # noqa: E402

DEFAULT_TIMEOUT = 10.0
ENVIRONMENT_HELP = """\
environment:
  RSCTL_ADDRESS       default --address
  RSCTL_<SERVICE>_ADDRESS, --<service>-address
                      send one service's methods (authz, connections, depot, gateway) elsewhere
  RSCTL_RELAY_ADDRESS default --relay-address (the relay, for 'tunnel'; 127.0.0.1:50055)
  RSCTL_CONFIG_DIR    default --config-dir
  RSCTL_TOKEN         a bearer token to use instead of the stored session
  RSCTL_TIMEOUT       default --timeout
  RSCTL_TLS=1, RSCTL_CA_FILE, RSCTL_CERT_FILE, RSCTL_KEY_FILE
                      defaults of --tls, --ca-file, --cert-file, --key-file
  RSCTL_DEBUG=1       show a traceback for internal faults of rsctl itself

'rsctl COMMAND --help' for each command; 'python -m pydoc rsctl.cli' for the full guide."""
_streams = threading.local()


class ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that writes to the streams main() was given and raises instead of exiting."""

    def _print_message(self, message, file=None):
        if message:
            stream = getattr(_streams, "out", sys.stdout) if file in (None, sys.stdout) else getattr(
                _streams, "err", sys.stderr)
            stream.write(message)

    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise ParserExit(status)


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=34)


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command accepts, before or after the command name."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("global options")
    group.add_argument("--address", default=default, metavar="HOST:PORT",
                       help="where to call (default: $RSCTL_ADDRESS or 127.0.0.1:50051, the gateway)")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                       help="print one JSON document instead of tables")
    group.add_argument("--name-only", action="store_true", default=argparse.SUPPRESS,
                       help="print only the resource name(s), one a line (for $(...) in scripts)")
    group.add_argument("--timeout", type=float, default=default, metavar="SECONDS",
                       help=f"deadline of each call (default {DEFAULT_TIMEOUT:g})")
    group.add_argument("--config-dir", type=Path, default=default, metavar="DIR",
                       help="where the session is kept (default: $RSCTL_CONFIG_DIR, $XDG_CONFIG_HOME/rsctl, "
                            "~/.config/rsctl)")
    group.add_argument("--customer", default=default, metavar="CUSTOMER",
                       help="default customer for short names (default: your own)")
    group.add_argument("--tls", action="store_true", default=argparse.SUPPRESS,
                       help="use TLS (default: plaintext; on with $RSCTL_TLS=1 or any of the files below)")
    group.add_argument("--ca-file", type=Path, default=default, metavar="PEM",
                       help="CA to verify the server with (default: the system's roots)")
    group.add_argument("--cert-file", type=Path, default=default, metavar="PEM",
                       help="client certificate, for services that ask for one (mutual TLS)")
    group.add_argument("--key-file", type=Path, default=default, metavar="PEM", help="its private key")
    group.add_argument("--relay-address", default=default, metavar="HOST:PORT",
                       help="the relay, for 'tunnel' (default: $RSCTL_RELAY_ADDRESS or 127.0.0.1:50055; "
                            "--address does not move it)")
    for service in SERVICES:
        group.add_argument(f"--{service}-address", dest=f"{service}_address", default=default,
                           metavar="HOST:PORT", help=argparse.SUPPRESS)


_GLOBAL_DEFAULTS = {"address": None, "json": False, "name_only": False, "timeout": None, "config_dir": None,
                    "customer": None, "relay_address": None,
                    "tls": False, "ca_file": None, "cert_file": None, "key_file": None,
                    **{f"{s}_address": None for s in SERVICES}}


def build_parser() -> Parser:
    common = Parser(add_help=False)
    _add_global_options(common, suppress=True)
    parser = Parser(prog="rsctl", description="Command-line tool of the Remote Support Suite.",
                    epilog=EXIT_CODES_HELP + "\n\n" + ENVIRONMENT_HELP,
                    formatter_class=Formatter)
    _add_global_options(parser, suppress=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    registrar = commands.Registrar(subparsers, common, Formatter)
    for module in commands.modules():
        module.register(registrar)
    return parser


def parse_args(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for key, value in _GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    if args.timeout is None:
        try:
            args.timeout = float(environ.get("RSCTL_TIMEOUT") or DEFAULT_TIMEOUT)
        except ValueError:
            raise CliError("usage", f"RSCTL_TIMEOUT={environ['RSCTL_TIMEOUT']!r} is not a number", USAGE) from None
    if args.json and args.name_only:
        raise CliError("usage", "--json and --name-only exclude each other", USAGE)
    if args.timeout <= 0:
        raise CliError("usage", "--timeout must be positive", USAGE)
    if args.config_dir is None:
        args.config_dir = default_config_dir(environ)
    return args


def _context(args: argparse.Namespace, environ, stdin, stdout, stderr) -> Context:
    addresses = Addresses.resolve(environ, args.address, {s: getattr(args, f"{s}_address") for s in SERVICES},
                                  relay=args.relay_address)
    tls = Tls.resolve(environ, tls=args.tls, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file)
    out = Output(stdout, stderr, args.json, args.name_only)
    return Context(args=args, out=out, store=SessionStore(args.config_dir), environ=environ, stdin=stdin,
                   addresses=addresses, tls=tls)


def _report(err: CliError, stderr: TextIO) -> int:
    for line in err.lines():
        print(line, file=stderr)
    return err.exit_code


def run(args: argparse.Namespace, ctx: Context, stderr: TextIO) -> int:
    """Run the chosen handler; every failure becomes one message and an exit code, never a traceback."""
    try:
        result = args.handler(ctx)
        return OK if result is None else int(result)
    except CliError as err:
        return _report(err, stderr)
    except KeyboardInterrupt:
        print("rsctl: interrupted", file=stderr)
        return INTERRUPTED
    except BrokenPipeError:
        return FAILURE
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"rsctl: error:{where}: {exc.strerror or exc}", file=stderr)
        return FAILURE
    except Exception as exc:  # noqa: BLE001 - the one place an unexpected fault becomes a message
        if ctx.environ.get("RSCTL_DEBUG"):
            traceback.print_exc(file=stderr)
        print(f"rsctl: internal error: {type(exc).__name__}: {exc} (RSCTL_DEBUG=1 shows details)", file=stderr)
        return FAILURE
    finally:
        ctx.close()


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None, environ: dict[str, str] | None = None) -> int:
    """The console script `rsctl`; returns the exit code (see `rsctl --help`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    environ = dict(os.environ) if environ is None else environ
    _streams.out, _streams.err = stdout, stderr
    try:
        args = parse_args(argv, environ)
    except ParserExit as exit_:
        return exit_.status
    except CliError as err:
        return _report(err, stderr)
    finally:
        _streams.out, _streams.err = sys.stdout, sys.stderr
    try:
        ctx = _context(args, environ, stdin, stdout, stderr)
    except CliError as err:
        return _report(err, stderr)
    return run(args, ctx, stderr)


def _console() -> None:
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `rsctl log list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or FAILURE
    sys.exit(code)


if __name__ == "__main__":
    _console()
