"""Evidence documents (the gateway's ExportIncidentEvidence, docs/EVIDENCE.md): their canonical form, their
Ed25519 signature and its offline check, shared by the gateway that signs them and rsctl that verifies them.
A document is UTF-8 JSON, written in its canonical form (sorted keys, no whitespace, non-ASCII as it is):

    {"evidence": {"format": "remotesupport.evidence.v1", ...},
     "signature": {"algorithm": "Ed25519", "key_id": "<16 hex digits>", "value": "<standard base64>"}}

The signature is over SIGNING_CONTEXT + canonical(evidence). A key's id is the first 16 hex digits of SHA-256
over its raw 32-byte public key (as for connector files, services/kit/stfk.py). The signing key is a PKCS#8 PEM
file of mode 0600, generated on first start (load_or_create_signing_key)."""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.kit import keyfile
from services.kit.keyfile import KeyFileError  # noqa: F401 - the gateway's start names it from here
from services.kit.stfk import key_id_of


FORMAT = "remotesupport.evidence.v1"
ALGORITHM = "Ed25519"
SIGNING_CONTEXT = b"remotesupport evidence v1\n"
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_SIGNATURE_FIELDS = {"algorithm", "key_id", "value"}


class EvidenceInvalid(Exception):
    """Not an intact evidence document signed with the key given; `problem` says why (no secret in it)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem



def canonical(value: dict) -> bytes:
    """The bytes that are signed: JSON with sorted keys, no whitespace, UTF-8 (non-ASCII not escaped)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


class EvidenceSigner:
    """Signs evidence documents with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)
        self.public_key_pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def __repr__(self) -> str:
        return f"EvidenceSigner(key_id={self.key_id!r})"

    def sign(self, evidence: dict) -> bytes:
        """The document holding `evidence` and its signature, in canonical form."""
        value = self._private_key.sign(SIGNING_CONTEXT + canonical(evidence))
        return canonical({"evidence": evidence, "signature": {
            "algorithm": ALGORITHM, "key_id": self.key_id, "value": base64.b64encode(value).decode("ascii")}})


@dataclass(frozen=True)
class Verified:
    """What an intact document holds, and the id of the key it verified with."""

    evidence: dict
    key_id: str


def verify(document: bytes, public_key: Ed25519PublicKey) -> Verified:
    """The evidence of an intact document signed with `public_key`, or EvidenceInvalid saying what is wrong.
    Every byte counts: the document must be exactly the canonical form it was signed in (one line end after it
    is allowed)."""
    key_id = key_id_of(public_key)
    parsed = _parse(document)
    evidence, signature = parsed["evidence"], parsed["signature"]
    if signature["algorithm"] != ALGORITHM:
        raise EvidenceInvalid(f"the document is signed with {signature['algorithm']!r}, not {ALGORITHM}")
    if signature["key_id"] != key_id:
        raise EvidenceInvalid(f"the document was signed with another key: key {signature['key_id']}, "
                              f"not key {key_id}")
    try:
        public_key.verify(_signature_bytes(signature["value"]), SIGNING_CONTEXT + canonical(evidence))
    except InvalidSignature:
        raise EvidenceInvalid(f"the signature does not match key {key_id}: the document was altered after it "
                              "was signed") from None
    if canonical(parsed) not in (document, document.removesuffix(b"\n")):
        raise EvidenceInvalid("the document's bytes differ from the form it was signed in (it was reformatted "
                              "or altered outside the signed evidence); verify the file as it was exported")
    return Verified(evidence, key_id)


def _parse(document: bytes) -> dict:
    if len(document) > MAX_DOCUMENT_BYTES:
        raise EvidenceInvalid(f"not an evidence document: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        parsed = json.loads(document.decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_no_constant)
        canonical(parsed)  # lone surrogates (escaped in the text) cannot be signed bytes
    except (UnicodeError, ValueError) as exc:
        raise EvidenceInvalid(f"not an evidence document: not UTF-8 JSON ({_first_line(exc)})") from None
    if not isinstance(parsed, dict) or set(parsed) != {"evidence", "signature"}:
        raise EvidenceInvalid('not an evidence document: expected an object of "evidence" and "signature"')
    evidence, signature = parsed["evidence"], parsed["signature"]
    if not isinstance(signature, dict) or set(signature) != _SIGNATURE_FIELDS or not all(
            isinstance(v, str) for v in signature.values()):
        raise EvidenceInvalid('not an evidence document: "signature" must hold the strings algorithm, key_id '
                              "and value")
    if not isinstance(evidence, dict) or evidence.get("format") != FORMAT:
        raise EvidenceInvalid(f'not an evidence document: "evidence" must be an object of format {FORMAT}')
    return parsed


def _no_duplicates(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _signature_bytes(text: str) -> bytes:
    """The 64 signature bytes of their one canonical base64 form (so no two texts hold one signature)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceInvalid("the signature is damaged (not valid base64)") from None
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != text:
        raise EvidenceInvalid("the signature is damaged (not the base64 of 64 bytes)")
    return raw


# --- the signing key file ------------------------------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> EvidenceSigner:
    """The signer whose private key is in `path` (PKCS#8 PEM, mode 0600), generated there when there is none
    (the first of racing processes wins); KeyFileError when the file is unusable."""
    return EvidenceSigner(keyfile.load_or_create(path, "evidence signing key", "documents signed with an earlier key "
                                                                     "verify only with that key's public half"))
