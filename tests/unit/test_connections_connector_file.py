"""Unit tests for the stfk.oez format and the signing key file (services/connections/connector_file.py)."""
from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remotesupport.connections.v1 import connections_pb2 as pb
from services.connections.connector_file import (
    ConnectorInvalid,
    ConnectorSigner,
    SigningKeyError,
    load_or_create_signing_key,
)
from services.kit.stfk import MAGIC


def _ticket() -> pb.ConnectorTicket:
    ticket = pb.ConnectorTicket(connection="customers/1/systems/2/connections/abc", system="customers/1/systems/2",
                                connection_type="connectionTypes/SSH", saprouter_route="/H/router/S/3299")
    ticket.not_before.FromSeconds(1_900_000_000)
    ticket.not_after.FromSeconds(1_900_003_600)
    ticket.issue_time.FromSeconds(1_899_999_000)
    return ticket


@pytest.fixture
def signer():
    return ConnectorSigner(Ed25519PrivateKey.generate())


def _problem(signer, content) -> str:
    with pytest.raises(ConnectorInvalid) as caught:
        signer.open(content)
    return caught.value.problem


def test_issued_file_opens_to_the_same_ticket(signer):
    content = signer.issue(_ticket())
    lines = content.split(b"\n")
    assert lines[0] == MAGIC and lines[3] == b"" and len(lines) == 4
    ticket = signer.open(content)
    expected = _ticket()
    expected.key_id = signer.key_id
    assert ticket == expected
    assert len(signer.key_id) == 16 and int(signer.key_id, 16) >= 0


def test_missing_final_newline_is_accepted(signer):
    assert signer.open(signer.issue(_ticket()).rstrip(b"\n")).connection.endswith("/abc")


def test_a_changed_ticket_fails(signer):
    magic, body, signature, _ = signer.issue(_ticket()).split(b"\n")
    ticket = pb.ConnectorTicket.FromString(base64.b64decode(body))
    ticket.not_after.FromSeconds(1_999_999_999)  # stretch the window
    forged = b"\n".join([magic, base64.b64encode(ticket.SerializeToString()), signature, b""])
    assert "altered" in _problem(signer, forged)


@pytest.mark.parametrize("position", [0, 10, -1])
def test_a_flipped_byte_of_the_ticket_fails(signer, position):
    magic, body, signature, _ = signer.issue(_ticket()).split(b"\n")
    raw = bytearray(base64.b64decode(body))
    raw[position] ^= 0x01
    content = b"\n".join([magic, base64.b64encode(bytes(raw)), signature, b""])
    assert _problem(signer, content)


def test_a_changed_signature_fails(signer):
    magic, body, signature, _ = signer.issue(_ticket()).split(b"\n")
    raw = bytearray(base64.b64decode(signature))
    raw[5] ^= 0x80
    assert "altered" in _problem(signer, b"\n".join([magic, body, base64.b64encode(bytes(raw)), b""]))


def test_a_file_of_another_key_names_both_keys(signer):
    other = ConnectorSigner(Ed25519PrivateKey.generate())
    problem = _problem(signer, other.issue(_ticket()))
    assert other.key_id in problem and signer.key_id in problem


@pytest.mark.parametrize("content", [
    b"garbage", b"STFK1\n", b"STFK2\nAAAA\nAAAA\n", b"STFK1\n!!!\n" + base64.b64encode(b"x" * 64) + b"\n",
    b"STFK1\nAAAA\nAAAA\n", b"STFK1\nAAAA\nAAAA\nAAAA\n", b"\x00" * 100, b"STFK1\n\n\n", b"x" * (16 * 1024 + 1),
])
def test_garbage_is_invalid_not_an_error(signer, content):
    assert _problem(signer, content)


def test_the_key_file_is_created_0600_and_reused(tmp_path):
    path = tmp_path / "secrets" / "connections-signing.key"
    first = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    second = load_or_create_signing_key(path)
    assert second.key_id == first.key_id
    assert second.open(first.issue(_ticket())).key_id == first.key_id
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_group_readable_key_file_is_refused(tmp_path):
    path = tmp_path / "k.key"
    load_or_create_signing_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_or_create_signing_key(path)


def test_a_key_file_without_a_key_is_refused(tmp_path):
    path = tmp_path / "k.key"
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM Ed25519"):
        load_or_create_signing_key(path)


def test_the_signer_does_not_show_its_key(signer):
    assert repr(signer) == f"ConnectorSigner(key_id={signer.key_id!r})"
