"""The connector's own check of a Service Connector file (stfk.oez) before it dials anywhere: the STFK1 format,
the Ed25519 signature against a pinned public key, and the ticket's window, connection and target.

The format and its signature check are the kit's (services/kit/stfk.py), the same code the connections service
signs and checks with; tests/unit/test_rsctl_connector_agent.py checks that this accepts and refuses exactly what
the service's ConnectorSigner.open does.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from remotesupport.connections.v1 import connections_pb2
from rsctl.errors import BAD_REQUEST, DATA_LOSS, FAILURE, USAGE, CliError
from services.kit import stfk

MAX_FILE_BYTES = stfk.MAX_FILE_BYTES
MAX_KEY_BYTES = 64 * 1024
UTC = dt.timezone.utc


class Refused(CliError):
    """A file the connector will not run; `label` is the reason a relay would give for the same refusal."""


def _invalid(message: str) -> Refused:
    return Refused("CONNECTOR_FILE_INVALID", message, DATA_LOSS)


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed every local check: its bytes (sent to the relay as they are) and its ticket."""

    content: bytes
    ticket: connections_pb2.ConnectorTicket
    key_id: str

    def __repr__(self) -> str:  # the ticket holds the attach key: never shown
        return f"CheckedFile(connection={self.ticket.connection!r}, key_id={self.key_id!r})"


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file (as `rsctl connector get` writes it)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_BYTES)
    except OSError as exc:
        raise CliError("error", f"cannot read the public key {path}: {exc.strerror}", FAILURE) from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise CliError("error", f"{path} is not a PEM public key", FAILURE) from None
    if not isinstance(key, Ed25519PublicKey):
        raise CliError("error", f"{path} does not hold an Ed25519 public key", FAILURE)
    return key


def read_file(path: Path) -> bytes:
    """The bytes of a connector file (at most MAX_FILE_BYTES are worth reading)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError("error", f"cannot read {path}: {exc.strerror}", FAILURE) from None


def public_key_path(file: Path, given: Path | None) -> Path:
    """--public-key, else <FILE>.pub next to the file; neither: a usage error."""
    if given is not None:
        return given
    beside = file.with_name(file.name + ".pub")
    if beside.exists():
        return beside
    raise CliError("usage", f"no public key to verify the file with: give --public-key PEM or put it in {beside} "
                            "('rsctl connector get' writes it there)", USAGE)


def split(content: bytes) -> tuple[bytes, bytes]:
    """The ticket bytes and the signature of an STFK1 file, or Refused (not the format, or damaged)."""
    try:
        return stfk.split(content)
    except stfk.StfkInvalid as invalid:
        raise _invalid(invalid.problem) from None


def open_signed(content: bytes, public_key: Ed25519PublicKey) -> CheckedFile:
    """The ticket of an intact file signed with `public_key`, or Refused (exit 8) saying what is wrong."""
    try:
        ticket = stfk.open_signed(content, public_key, "the pinned public key")
    except stfk.StfkInvalid as invalid:
        raise _invalid(invalid.problem) from None
    return CheckedFile(content, ticket, stfk.key_id_of(public_key))


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_matches(connection: str, wanted: str) -> bool:
    """`wanted` is the full name, or a short form the full name ends with (systems/2/connections/9, 9)."""
    wanted = wanted.strip().strip("/")
    if wanted.startswith("customers/"):
        return connection == wanted
    return connection == wanted or connection.endswith("/" + wanted)


def check_ticket(checked: CheckedFile, now: dt.datetime, window: str | None) -> None:
    """Refused (exit 6) unless the file is for `window` (when given), valid now, and has a network target."""
    ticket = checked.ticket
    if window and not window_matches(ticket.connection, window):
        raise Refused("CONNECTOR_FILE_WRONG_WINDOW",
                      f"the file is for connection {ticket.connection}, not {window}", BAD_REQUEST)
    not_before = ticket.not_before.ToDatetime(UTC)
    not_after = ticket.not_after.ToDatetime(UTC)
    if now < not_before:
        raise Refused("CONNECTOR_FILE_NOT_YET_VALID",
                      f"the file is not valid yet: valid from {iso(not_before)} to {iso(not_after)} "
                      f"(now {iso(now)}); start the connector then", BAD_REQUEST)
    if now >= not_after:
        raise Refused("CONNECTOR_FILE_EXPIRED",
                      f"the file expired at {iso(not_after)}: its window is over; download a new one for a new "
                      "window", BAD_REQUEST)
    if not ticket.target:
        code = ticket.connection_type.removeprefix("connectionTypes/")
        raise Refused("FAILED_PRECONDITION",
                      f"connection type {code} has no network target: there is nothing for a connector to reach",
                      BAD_REQUEST)


def check_file(path: Path, public_key: Path | None, window: str | None, now: dt.datetime) -> CheckedFile:
    """Every local check of `rsctl connector run`, in order: the format, the key to verify with, the
    signature, the window, the validity period, the target."""
    content = read_file(path)
    split(content)  # a file that is not one needs no key to say so
    checked = open_signed(content, load_public_key(public_key_path(path, public_key)))
    check_ticket(checked, now, window)
    return checked
