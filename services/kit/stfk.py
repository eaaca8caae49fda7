"""The Service Connector file format (the seed's stfk.oez), shared by the connections service that signs it and
the customer's connector (rsctl) that checks it before dialing. Version 1: three ASCII lines, each ending "\\n":

    STFK1
    <standard base64 of the serialized remotesupport.connections.v1.ConnectorTicket>
    <standard base64 of the 64-byte Ed25519 signature over SIGNING_CONTEXT + the ticket bytes>

A ticket's `key_id` is the first 16 hex digits of SHA-256 over the raw 32-byte public key."""
from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from remotesupport.connections.v1 import connections_pb2

MAGIC = b"STFK1"
SIGNING_CONTEXT = b"remotesupport stfk.oez v1\n"
MAX_FILE_BYTES = 16 * 1024


class StfkInvalid(Exception):
    """Not an intact file of the signer; `problem` says why (no secret in it)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def split(content: bytes) -> tuple[bytes, bytes]:
    """The ticket bytes and the signature of an STFK1 file, or StfkInvalid (not the format, or damaged)."""
    if len(content) > MAX_FILE_BYTES:
        raise StfkInvalid("the file is too large to be a service connector")
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != 3 or lines[0] != MAGIC:
        raise StfkInvalid("this is not a service connector file (expected the STFK1 format)")
    try:
        body = base64.b64decode(lines[1], validate=True)
        signature = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        raise StfkInvalid("the file is damaged (its content is not valid base64)") from None
    if len(signature) != 64:
        raise StfkInvalid("the file is damaged (the signature has the wrong length)")
    return body, signature


def parse_ticket(body: bytes) -> connections_pb2.ConnectorTicket | None:
    ticket = connections_pb2.ConnectorTicket()
    try:
        ticket.ParseFromString(body)
    except DecodeError:
        return None
    return ticket


def join(body: bytes, signature: bytes) -> bytes:
    return b"\n".join([MAGIC, base64.b64encode(body), base64.b64encode(signature), b""])


def open_signed(content: bytes, public_key: Ed25519PublicKey, whose: str = "this service's key",
                ) -> connections_pb2.ConnectorTicket:
    """The ticket of an intact file signed with `public_key`, or StfkInvalid saying what is wrong (`whose`
    names the key in the messages)."""
    body, signature = split(content)
    key_id = key_id_of(public_key)
    try:
        public_key.verify(signature, SIGNING_CONTEXT + body)
    except InvalidSignature:
        inside = parse_ticket(body)
        if inside is not None and inside.key_id and inside.key_id != key_id:
            raise StfkInvalid(f"the signature does not match {whose}: the file was signed with key "
                              f"{inside.key_id}, not with {key_id}") from None
        raise StfkInvalid(f"the signature does not match {whose} {key_id}: the file was altered or not issued "
                          "with it") from None
    ticket = parse_ticket(body)
    if ticket is None or ticket.key_id != key_id:
        raise StfkInvalid("the ticket names another signing key")
    return ticket
