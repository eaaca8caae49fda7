"""Service Connector files (the seed's stfk.oez): a ConnectorTicket signed with the connections service's
own Ed25519 key, and the check that a file is one this service issued, unaltered.

File format, version 1 (ASCII, three lines, each ending in "\\n"):

    STFK1
    <standard base64 of the serialized remotesupport.connections.v1.ConnectorTicket>
    <standard base64 of the 64-byte Ed25519 signature over SIGNING_CONTEXT + the ticket bytes>

The ticket's `key_id` is the first 16 hex digits of SHA-256 over the raw 32-byte public key.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from remotesupport.connections.v1 import connections_pb2
from services.kit.secretfile import write_secret_file
from services.kit.validate import to_timestamp

logger = logging.getLogger(__name__)

FILE_NAME = "stfk.oez"
MAGIC = b"STFK1"
SIGNING_CONTEXT = b"remotesupport stfk.oez v1\n"
MAX_FILE_BYTES = 16 * 1024


class ConnectorInvalid(Exception):
    """A connector file that is not an intact file of this service; `problem` says why (no secret in it)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class SigningKeyError(RuntimeError):
    """The signing key file cannot be used."""


def new_ticket(connection: str, system: str, connection_type: str, saprouter_route: str, not_before: dt.datetime,
               not_after: dt.datetime, issue_time: dt.datetime) -> connections_pb2.ConnectorTicket:
    """The ticket of a file for window `connection` (names), valid over [not_before, not_after); the signer sets
    its key_id."""
    return connections_pb2.ConnectorTicket(
        connection=connection, system=system, connection_type=connection_type, saprouter_route=saprouter_route,
        not_before=to_timestamp(not_before), not_after=to_timestamp(not_after), issue_time=to_timestamp(issue_time))


def attach_key_hash(attach_key: str) -> str:
    """What the suite stores of a file's attach key."""
    return hashlib.sha256(attach_key.encode()).hexdigest()


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class ConnectorSigner:
    """Issues and checks connector files with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.key_id = key_id_of(self._public_key)
        self.public_key_pem = self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def __repr__(self) -> str:
        return f"ConnectorSigner(key_id={self.key_id!r})"

    def issue(self, ticket: connections_pb2.ConnectorTicket) -> bytes:
        """The file content for `ticket` (its key_id is set to this signer's)."""
        ticket.key_id = self.key_id
        body = ticket.SerializeToString(deterministic=True)
        signature = self._private_key.sign(SIGNING_CONTEXT + body)
        return b"\n".join([MAGIC, base64.b64encode(body), base64.b64encode(signature), b""])

    def open(self, content: bytes) -> connections_pb2.ConnectorTicket:
        """The ticket of an intact file this signer issued, or ConnectorInvalid."""
        body, signature = _split(content)
        try:
            self._public_key.verify(signature, SIGNING_CONTEXT + body)
        except InvalidSignature:
            other = _key_id_inside(body)
            if other and other != self.key_id:
                raise ConnectorInvalid(f"the file was signed with key {other}, not with this service's key "
                                       f"{self.key_id}") from None
            raise ConnectorInvalid("the signature does not match: the file was altered or not issued by this "
                                   "service") from None
        ticket = connections_pb2.ConnectorTicket()
        ticket.ParseFromString(body)  # signed by us, so it is a ticket we serialized
        if ticket.key_id != self.key_id:
            raise ConnectorInvalid("the ticket names another signing key")
        return ticket


def _split(content: bytes) -> tuple[bytes, bytes]:
    if len(content) > MAX_FILE_BYTES:
        raise ConnectorInvalid("the file is too large to be a service connector")
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != 3 or lines[0] != MAGIC:
        raise ConnectorInvalid("this is not a service connector file (expected the STFK1 format)")
    try:
        body = base64.b64decode(lines[1], validate=True)
        signature = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        raise ConnectorInvalid("the file is damaged (its content is not valid base64)") from None
    if len(signature) != 64:
        raise ConnectorInvalid("the file is damaged (the signature has the wrong length)")
    return body, signature


def _key_id_inside(body: bytes) -> str:
    ticket = connections_pb2.ConnectorTicket()
    try:
        ticket.ParseFromString(body)
    except DecodeError:
        return ""
    return ticket.key_id


# --- the key file ----------------------------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> ConnectorSigner:
    """The signer whose private key is in `path` (PKCS#8 PEM, mode 0600); generated on first start."""
    for _ in range(2):
        data = _read_private_file(path)
        if data is None:
            if _create_key_file(path):
                logger.warning("generated a new connector signing key in %s; files signed with any earlier key "
                               "no longer verify", path)
            continue
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise SigningKeyError(f"signing key file {path} is not a PEM Ed25519 private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key file {path} does not hold an Ed25519 key")
        return ConnectorSigner(key)
    raise SigningKeyError(f"signing key file {path} could not be created or read")


def _read_private_file(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SigningKeyError(f"signing key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise SigningKeyError(f"signing key file {path} is readable by group or others "
                                  f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it")
        return os.read(fd, 64 * 1024)
    finally:
        os.close(fd)


def _create_key_file(path: Path) -> bool:
    """Write a new key atomically (temporary 0600 file, then a hard link, never overwriting).
    False when another process created the file first."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return write_secret_file(path, pem, replace=False)
