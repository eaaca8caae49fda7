"""Service Connector files (the seed's stfk.oez): a ConnectorTicket signed with the connections service's
own Ed25519 key, and the check that a file is one this service issued, unaltered. The format is the kit's
(services/kit/stfk.py), which the customer's connector reads too."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remotesupport.connections.v1 import connections_pb2
from services.kit import keyfile, stfk
from services.kit.validate import to_timestamp


FILE_NAME = "stfk.oez"
MAX_FILE_BYTES = stfk.MAX_FILE_BYTES


ConnectorInvalid = stfk.StfkInvalid  # a file that is not an intact file of this service


SigningKeyError = keyfile.KeyFileError  # the signing key file cannot be used


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


class ConnectorSigner:
    """Issues and checks connector files with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.key_id = stfk.key_id_of(self._public_key)
        self.public_key_pem = self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def __repr__(self) -> str:
        return f"ConnectorSigner(key_id={self.key_id!r})"

    def issue(self, ticket: connections_pb2.ConnectorTicket) -> bytes:
        """The file content for `ticket` (its key_id is set to this signer's)."""
        ticket.key_id = self.key_id
        body = ticket.SerializeToString(deterministic=True)
        return stfk.join(body, self._private_key.sign(stfk.SIGNING_CONTEXT + body))

    def open(self, content: bytes) -> connections_pb2.ConnectorTicket:
        """The ticket of an intact file this signer issued, or ConnectorInvalid."""
        return stfk.open_signed(content, self._public_key)


# --- the key file ----------------------------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> ConnectorSigner:
    """The signer whose private key is in `path` (PKCS#8 PEM, mode 0600); generated on first start."""
    return ConnectorSigner(keyfile.load_or_create(path, "connector signing key",
                                                  "files signed with any earlier key no longer verify"))
