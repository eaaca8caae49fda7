"""services/kit/evidence.py: the canonical form, the signature and its check (every single-byte change of a
document fails, and says why), and the signing key file (made once with mode 0600; an unusable one is a
configuration error that stops the gateway at start, naming the file and never its content)."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import gateway.server
from services.kit import evidence
from services.kit.app import Deps
from services.kit.clients import TokenFile
from services.kit.clock import ManualClock
from services.kit.config import ServiceConfig
from services.kit.stfk import key_id_of

EVIDENCE = {"format": evidence.FORMAT, "exported_at": "2026-12-08T10:00:00Z", "exported_by": "users/S0000000001",
            "incident": {"name": "customers/1/incidents/abc", "title": "Zahlläufe \u2603 \"quoted\"\n"},
            "windows": [], "sessions": [{"bytes_to_target": "12"}], "log_events": [{"sequence": "7", "hash": "ab"}],
            "log_verification": {"valid": True, "events_checked": "7"}}


@pytest.fixture(scope="module")
def signer() -> evidence.EvidenceSigner:
    return evidence.EvidenceSigner(Ed25519PrivateKey.generate())


def test_a_document_is_its_canonical_json_and_verifies(signer):
    document = signer.sign(EVIDENCE)
    parsed = json.loads(document)
    assert document == evidence.canonical(parsed)
    assert parsed["signature"]["algorithm"] == "Ed25519" and parsed["signature"]["key_id"] == signer.key_id
    assert "Zahlläufe \u2603".encode() in document, "non-ASCII as it is"
    raw = base64.b64decode(parsed["signature"]["value"])
    signer.public_key.verify(raw, b"remotesupport evidence v1\n" + json.dumps(
        EVIDENCE, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())  # as docs/EVIDENCE.md says
    verified = evidence.verify(document, signer.public_key)
    assert verified.evidence == EVIDENCE and verified.key_id == signer.key_id == key_id_of(signer.public_key)
    assert evidence.verify(document + b"\n", signer.public_key).evidence == EVIDENCE, "one line end is fine"


def test_every_single_byte_change_fails(signer):
    document = signer.sign(EVIDENCE)
    for position in range(len(document)):
        for bit in (0x01, 0x20, 0x80):
            changed = bytearray(document)
            changed[position] ^= bit
            with pytest.raises(evidence.EvidenceInvalid):
                evidence.verify(bytes(changed), signer.public_key)


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d.replace(b'"title":"Zahl', b'"title":"Zahn'), "signature does not match key .*altered"),
    (lambda d: d.replace(b'"7"', b'"8"', 1), "signature does not match"),
    (lambda d: b"not json", "not an evidence document: not UTF-8 JSON"),
    (lambda d: b"\xff\xfe" + d, "not UTF-8 JSON"),
    (lambda d: b"[]", 'expected an object of "evidence" and "signature"'),
    (lambda d: d[:-1] + b',"extra":1}', 'expected an object of "evidence" and "signature"'),
    (lambda d: d.replace(b'"format":"remotesupport.evidence.v1"', b'"format":"remotesupport.evidence.v2"'),
     "must be an object of format remotesupport.evidence.v1"),
    (lambda d: d.replace(b'"algorithm":"Ed25519"', b'"algorithm":"RS256"'), "signed with 'RS256', not Ed25519"),
    (lambda d: d.replace(b'"algorithm":"Ed25519"', b'"algorithm":1'), '"signature" must hold the strings'),
    (lambda d: d.replace(b'"value":"', b'"value":"!'), r"signature is damaged \(not valid base64\)"),
    (lambda d: d.replace(b'"value":"', b'"value":"AAAA'), r"signature is damaged \(not the base64 of 64 bytes\)"),
    (lambda d: d.replace(b'{"evidence":{', b'{"evidence":{"format":"x",', 1), "appears twice"),
    (lambda d: d.replace(b'"windows":[]', b'"windows":[NaN]'), "NaN is not a JSON number"),
    (lambda d: d.replace(b'"windows":[]', b'"windows": []'), "differ from the form it was signed in"),
    (lambda d: d.replace(b'"windows":[]', b'"windows":["\\ud800"]'), "not UTF-8 JSON"),
])
def test_what_is_wrong_is_said(signer, edit, problem):
    with pytest.raises(evidence.EvidenceInvalid, match=problem):
        evidence.verify(edit(signer.sign(EVIDENCE)), signer.public_key)


def test_the_same_content_reformatted_or_padded_is_refused(signer):
    document = signer.sign(EVIDENCE)
    pretty = json.dumps(json.loads(document), indent=2, ensure_ascii=False).encode()
    with pytest.raises(evidence.EvidenceInvalid, match="reformatted"):
        evidence.verify(pretty, signer.public_key)
    escaped = json.dumps(json.loads(document), sort_keys=True, separators=(",", ":")).encode()  # \u escapes
    with pytest.raises(evidence.EvidenceInvalid, match="reformatted"):
        evidence.verify(escaped, signer.public_key)
    with pytest.raises(evidence.EvidenceInvalid, match="reformatted"):
        evidence.verify(document + b"\n\n", signer.public_key)
    with pytest.raises(evidence.EvidenceInvalid, match="larger than"):
        evidence.verify(b" " * (evidence.MAX_DOCUMENT_BYTES + 1), signer.public_key)


def test_another_key_is_named(signer):
    other = evidence.EvidenceSigner(Ed25519PrivateKey.generate())
    with pytest.raises(evidence.EvidenceInvalid,
                       match=f"signed with another key: key {signer.key_id}, not key {other.key_id}"):
        evidence.verify(signer.sign(EVIDENCE), other.public_key)
    # another key's signature under this key's id: the signature does not match
    forged = json.loads(other.sign(EVIDENCE))
    forged["signature"]["key_id"] = signer.key_id
    with pytest.raises(evidence.EvidenceInvalid, match=f"signature does not match key {signer.key_id}"):
        evidence.verify(evidence.canonical(forged), signer.public_key)


def test_the_signer_shows_its_public_key_and_id_only(signer):
    public = serialization.load_pem_public_key(signer.public_key_pem.encode())
    assert signer.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id_of(public) == signer.key_id and len(signer.key_id) == 16
    assert repr(signer) == f"EvidenceSigner(key_id={signer.key_id!r})"


def test_the_key_file_is_made_once_with_mode_0600(tmp_path, caplog):
    path = tmp_path / "secrets" / "gateway-evidence.key"
    first = evidence.load_or_create_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert "generated a new evidence signing key" in caplog.text
    again = evidence.load_or_create_signing_key(path)
    assert again.key_id == first.key_id
    assert evidence.verify(first.sign(EVIDENCE), again.public_key).key_id == first.key_id


def _key_file(tmp_path, content: bytes, mode: int = 0o600):
    path = tmp_path / "evidence.key"
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


PEM = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())


@pytest.mark.parametrize("content, mode, problem", [
    (b"not a key", 0o600, "is not an unencrypted PEM Ed25519 private key"),
    (X25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600, "does not hold an Ed25519 key"),
    (PEM, 0o644, r"is readable by group or others \(mode 0644\); chmod 600 it"),
])
def test_an_unusable_key_file_stops_the_gateway_at_start(tmp_path, monkeypatch, content, mode, problem):
    path = _key_file(tmp_path, content, mode)
    with pytest.raises(evidence.KeyFileError, match=problem):
        evidence.load_or_create_signing_key(path)
    monkeypatch.setenv("RS_GATEWAY_EVIDENCE_KEY_FILE", str(path))
    with pytest.raises(SystemExit) as stopped:
        asyncio.run(gateway.server.build(_deps(tmp_path)))
    message = str(stopped.value)
    assert message.startswith(f"configuration error: RS_GATEWAY_EVIDENCE_KEY_FILE: evidence signing key file {path} ")
    assert "PRIVATE KEY" not in message and content.decode(errors="replace") not in message


def test_a_directory_a_pipe_or_a_path_through_a_file_is_no_key_file(tmp_path):
    with pytest.raises(evidence.KeyFileError, match="is not a regular file"):
        evidence.load_or_create_signing_key(tmp_path)
    os.mkfifo(tmp_path / "pipe")  # opened without blocking: nobody writes to it
    with pytest.raises(evidence.KeyFileError, match="is not a regular file"):
        evidence.load_or_create_signing_key(tmp_path / "pipe")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(evidence.KeyFileError, match=r"cannot be read \(Not a directory\)"):
        evidence.load_or_create_signing_key(tmp_path / "file" / "evidence.key")


def _deps(tmp_path) -> Deps:
    config = ServiceConfig(service="gateway", var_dir=tmp_path / "var", authz_addr="127.0.0.1:1",
                           depot_addr="127.0.0.1:1", connections_addr="127.0.0.1:1",
                           service_token_file=tmp_path / "gateway.token")
    return Deps(config, ManualClock(), TokenFile(config.service_token_file))
