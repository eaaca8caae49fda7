"""Depot encryption barrier (DESIGN.md section 5, "Depot key hierarchy").

Modelled on HashiCorp Vault's ``barrier_aes_gcm.go``. Every use of key material in the suite passes through
this module, and no plaintext key leaves it: callers hand in and get back blobs, plaintext secrets and the
opaque :class:`MasterKey`, :class:`KeyRing` and :class:`LogSealer` (whose ``repr`` shows no key and which
refuse to be pickled)::

    master key (outside the DB: its file's contents are parsed here, read and written by masterkeyfile.py)
      └─ wraps ring keys v1, v2, ...      AAD = b"rs-ring|v=<version>"
           └─ ring key v wraps each entry's data key   AAD binds entry + version
                └─ data key encrypts each secret field  AAD binds entry + field + version
      └─ derives (HKDF-SHA256) the log seal key: HMAC-SHA256 of each customer's log head

The log's events are hash-chained (``chain.py``); the seal on a customer's head (last sequence and hash) is
what an attacker with write access to the database but not the master key cannot recompute, so a rewritten
chain does not verify.

Every encryption is AES-256-GCM (``cryptography``'s AESGCM) with a fresh random 96-bit nonce. Blob format:
``0x01 || nonce(12) || ciphertext || tag(16)``. Anything that fails to authenticate raises
:class:`DecryptionFailed`, whose message never contains key bytes or plaintext, and which is raised ``from None``
so no underlying exception (which could carry bytes) is chained.

With random nonces one key must not encrypt more than :data:`USAGE_BOUND` times (NIST SP 800-38D section 8.3).
The depot counts the encryptions under a ring key in its database, claimed in the transaction that stores what
they made and never past the key's usage limit (services/depot/store.py: a conditional claim), and rotates the
ring at that limit, :data:`DEFAULT_USAGE_LIMIT` unless RS_DEPOT_KEY_USAGE_LIMIT says otherwise. An encryption
whose transaction rolls back is not counted: its ciphertext is never stored or sent, so its nonce can meet no
other ciphertext an attacker sees. A data key encrypts its entry's secret once per write.

Python cannot reliably wipe ``bytes`` from memory; unwrapped keys live in process memory for the lifetime of
the objects holding them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass
from typing import Mapping, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.kit import tracing

__all__ = [
    "BarrierError",
    "DecryptionFailed",
    "MasterKeyError",
    "MasterKeyFileMalformed",
    "KEY_SIZE",
    "BLOB_VERSION",
    "NONCE_SIZE",
    "TAG_SIZE",
    "USAGE_BOUND",
    "DEFAULT_USAGE_LIMIT",
    "MasterKey",
    "master_key_from_bytes",
    "master_key_from_file",
    "new_dev_master_key",
    "KeyRing",
    "EntryContext",
    "Sealed",
    "seal_secret",
    "open_secret",
    "reseal_secret",
    "opens_ring_key",
    "rewrap_ring_key",
    "LogSealer",
    "WebhookSecrets",
]

KEY_SIZE = 32  # AES-256
BLOB_VERSION = 0x01
NONCE_SIZE = 12  # 96-bit random nonce
TAG_SIZE = 16
_MIN_BLOB = 1 + NONCE_SIZE + TAG_SIZE

USAGE_BOUND = 2**32  # encryptions under one key with random nonces (NIST SP 800-38D section 8.3)
DEFAULT_USAGE_LIMIT = 2**30  # where the depot rotates a ring key: a 4x margin below the bound


class BarrierError(Exception):
    """Base class of every barrier error."""


class DecryptionFailed(BarrierError):
    """Authentication failed: tampered, truncated or moved ciphertext, wrong key or wrong AAD."""


class MasterKeyError(BarrierError):
    """Master key missing, malformed, wrong size, badly protected, or dev key in production."""


class MasterKeyFileMalformed(MasterKeyError):
    """A master key file's contents are not one line in its format (the message says which, never the key)."""


# --------------------------------------------------------------------------- #
# AES-GCM primitive
# --------------------------------------------------------------------------- #


def _check_key(key: object, what: str) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise BarrierError(f"{what} must be bytes")
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise BarrierError(f"{what} must be {KEY_SIZE} bytes")
    return key


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BarrierError("key version must be a positive integer")
    return version


def _seal(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return bytes([BLOB_VERSION]) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, aad: bytes, blob: object) -> bytes:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise DecryptionFailed("ciphertext is not bytes")
    blob = bytes(blob)
    if len(blob) < _MIN_BLOB:
        raise DecryptionFailed("ciphertext is truncated")
    if blob[0] != BLOB_VERSION:
        raise DecryptionFailed("unknown ciphertext format version")
    nonce, body = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise DecryptionFailed("ciphertext failed authentication") from None


# --------------------------------------------------------------------------- #
# Master key
# --------------------------------------------------------------------------- #


class MasterKey:
    """The root key. Never printed: ``repr`` shows only ``key_id`` and flags."""

    __slots__ = ("_key", "is_dev", "generated", "key_id")

    def __init__(self, key: bytes, *, is_dev: bool, generated: bool = False) -> None:
        self._key = _check_key(key, "master key")
        self.is_dev = bool(is_dev)
        self.generated = bool(generated)
        self.key_id = hashlib.sha256(
            hashlib.sha256(b"rs-master-key-id\x00" + self._key).digest()
        ).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r}, is_dev={self.is_dev}, generated={self.generated})"

    __str__ = __repr__

    def __reduce__(self):  # refuse pickling key material by accident
        raise TypeError("MasterKey cannot be pickled")


def master_key_from_bytes(key: bytes, *, is_dev: bool = False, generated: bool = False) -> MasterKey:
    """The :class:`MasterKey` of 32 raw bytes (e.g. fetched from a KMS)."""
    try:
        return MasterKey(key, is_dev=is_dev, generated=generated)
    except BarrierError as exc:
        raise MasterKeyError(str(exc)) from None


# A master key's file: one line, the prefix then the base64 of the key's 32 bytes.
_PRODUCTION_KEY_PREFIX, _DEV_KEY_PREFIX = "rsmk1:", "rsdev1:"


def master_key_from_file(contents: bytes) -> MasterKey:
    """The :class:`MasterKey` a key file holds: one line ``rsmk1:<base64 of 32 bytes>`` (production) or
    ``rsdev1:...`` (dev). :class:`MasterKeyFileMalformed` if it is not such a line, :class:`MasterKeyError` if
    the key is not 32 bytes."""
    malformed = MasterKeyFileMalformed(f"expected one line '{_PRODUCTION_KEY_PREFIX}<base64 of {KEY_SIZE} bytes>'")
    try:
        text = bytes(contents).decode("ascii").rstrip("\r\n")
    except (TypeError, UnicodeDecodeError):
        raise malformed from None
    if "\n" in text or "\r" in text:
        raise malformed
    text = text.strip()
    prefix = next((p for p in (_PRODUCTION_KEY_PREFIX, _DEV_KEY_PREFIX) if text.startswith(p)), None)
    if prefix is None:
        raise malformed
    try:
        key = base64.b64decode(text[len(prefix):], validate=True)
    except (binascii.Error, ValueError):
        raise malformed from None
    return master_key_from_bytes(key, is_dev=prefix == _DEV_KEY_PREFIX)


def _master_key_file(key: MasterKey) -> bytes:
    """The contents of the file that holds ``key``, as :func:`master_key_from_file` reads them."""
    prefix = _DEV_KEY_PREFIX if key.is_dev else _PRODUCTION_KEY_PREFIX
    return (prefix + base64.b64encode(key._key).decode("ascii") + "\n").encode("ascii")


def new_dev_master_key() -> tuple[MasterKey, bytes]:
    """A freshly generated dev master key (``generated``) and the contents of the file to keep it in."""
    key = MasterKey(os.urandom(KEY_SIZE), is_dev=True, generated=True)
    return key, _master_key_file(key)


# --------------------------------------------------------------------------- #
# Key ring
# --------------------------------------------------------------------------- #


def _ring_aad(version: int) -> bytes:
    return b"rs-ring|v=%d" % version


def _wrap_ring_key(master: MasterKey, version: int, ring_key: bytes) -> bytes:
    return _seal(master._key, _ring_aad(_check_version(version)), _check_key(ring_key, "ring key"))


def _unwrap_ring_key(master: MasterKey, version: int, blob: object) -> bytes:
    key = _open(master._key, _ring_aad(_check_version(version)), blob)
    if len(key) != KEY_SIZE:
        raise DecryptionFailed("unwrapped ring key has wrong size")
    return key


def opens_ring_key(master: MasterKey, version: int, blob: bytes) -> bool:
    """Whether ``blob`` is ring key ``version`` wrapped by ``master``."""
    try:
        _unwrap_ring_key(master, version, blob)
    except BarrierError:
        return False
    return True


def rewrap_ring_key(current: MasterKey, new: MasterKey, version: int, blob: bytes) -> bytes:
    """Ring key ``version``, wrapped by ``current`` in ``blob``, wrapped by ``new`` instead (proven to open with
    it); :class:`DecryptionFailed` if ``current`` does not open ``blob``."""
    ring_key = _unwrap_ring_key(current, version, blob)
    wrapped = _wrap_ring_key(new, version, ring_key)
    if _unwrap_ring_key(new, version, wrapped) != ring_key:  # never hand out what cannot be opened
        raise BarrierError(f"ring key version {version} did not survive re-wrapping")
    return wrapped


class KeyRing:
    """Versioned ring keys, stored wrapped by the master key. Unwraps lazily and keeps the unwrapped keys in
    memory, where only this module's functions use them. Thread-safe."""

    def __init__(self, master: MasterKey, wrapped: Optional[Mapping[int, bytes]] = None) -> None:
        if not isinstance(master, MasterKey):
            raise BarrierError("master must be a MasterKey")
        self._master = master
        self._lock = threading.Lock()
        self._wrapped: dict[int, bytes] = {}
        self._keys: dict[int, bytes] = {}
        for version, blob in (wrapped or {}).items():
            self._wrapped[_check_version(version)] = bytes(blob)

    def __repr__(self) -> str:
        return f"KeyRing(master={self._master.key_id!r}, versions={self.versions()})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("KeyRing cannot be pickled")

    def __len__(self) -> int:
        with self._lock:
            return len(self._wrapped)

    def __contains__(self, version: object) -> bool:
        with self._lock:
            return version in self._wrapped

    def versions(self) -> list[int]:
        with self._lock:
            return sorted(self._wrapped)

    @property
    def current_version(self) -> int:
        """Highest version; the one new data keys are wrapped with."""
        with self._lock:
            if not self._wrapped:
                raise BarrierError("key ring is empty")
            return max(self._wrapped)

    def new_ring_key(self, next_version: int) -> bytes:
        """Generate a ring key for ``next_version`` and return it wrapped.

        Does NOT add it: persist the blob first, then call :meth:`add`, so a key is never used before it is
        durably stored.
        """
        next_version = _check_version(next_version)
        with self._lock:
            highest = max(self._wrapped, default=0)
        if next_version <= highest:
            raise BarrierError(f"new ring key version must be greater than {highest}")
        return _wrap_ring_key(self._master, next_version, os.urandom(KEY_SIZE))

    def add(self, version: int, wrapped: bytes) -> None:
        """Add a wrapped ring key; it is unwrapped now to prove it is usable."""
        version = _check_version(version)
        blob = bytes(wrapped)
        key = _unwrap_ring_key(self._master, version, blob)
        with self._lock:
            existing = self._wrapped.get(version)
            if existing is not None and existing != blob:
                raise BarrierError(f"ring key version {version} already exists")
            self._wrapped[version] = blob
            self._keys[version] = key

    def _key(self, version: int) -> bytes:
        version = _check_version(version)
        with self._lock:
            key = self._keys.get(version)
            if key is not None:
                return key
            blob = self._wrapped.get(version)
        if blob is None:
            raise BarrierError(f"unknown key ring version {version}")
        key = _unwrap_ring_key(self._master, version, blob)
        with self._lock:
            self._keys.setdefault(version, key)
        return key


# --------------------------------------------------------------------------- #
# Entries' secrets: a data key per entry, wrapped by a ring key
# --------------------------------------------------------------------------- #


def _check_text(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise BarrierError(f"{what} must be a non-empty string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise BarrierError(f"{what} is not valid text") from None


@dataclass(frozen=True)
class EntryContext:
    """Identity of a logon-data entry; bound into every ciphertext's AAD."""

    entry_id: str
    customer: str
    system: str

    def __post_init__(self) -> None:
        _check_text(self.entry_id, "entry_id")
        _check_text(self.customer, "customer")
        _check_text(self.system, "system")


@dataclass(frozen=True)
class Sealed:
    """A secret as stored: its ciphertext, and the entry's data key wrapped by ring key ``key_version``."""

    key_version: int
    wrapped_data_key: bytes
    ciphertext: bytes


def _entry_aad(purpose: bytes, ctx: EntryContext, field: str, key_version: int) -> bytes:
    """Canonical AAD: tag, then each part as 4-byte big-endian length + bytes."""
    if not isinstance(ctx, EntryContext):
        raise BarrierError("context must be an EntryContext")
    parts = [
        purpose,
        _check_text(ctx.entry_id, "entry_id"),
        _check_text(ctx.customer, "customer"),
        _check_text(ctx.system, "system"),
        field.encode("utf-8") if purpose == b"data-key" else _check_text(field, "field"),
        str(_check_version(key_version)).encode("ascii"),
    ]
    return b"rs-aad-v1" + b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _wrap_data_key(ring: KeyRing, version: int, data_key: bytes, ctx: EntryContext) -> bytes:
    return _seal(ring._key(version), _entry_aad(b"data-key", ctx, "", version), data_key)


def _unwrap_data_key(ring: KeyRing, version: int, blob: object, ctx: EntryContext) -> bytes:
    key = _open(ring._key(version), _entry_aad(b"data-key", ctx, "", version), blob)
    if len(key) != KEY_SIZE:
        raise DecryptionFailed("unwrapped data key has wrong size")
    return key


def _encrypt_field(data_key: bytes, ctx: EntryContext, field: str, key_version: int, plaintext: str) -> bytes:
    aad = _entry_aad(b"field", ctx, field, key_version)
    if not isinstance(plaintext, str):
        raise BarrierError("plaintext must be a string")
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise BarrierError("plaintext is not valid text") from None
    return _seal(data_key, aad, data)


def _decrypt_field(data_key: bytes, ctx: EntryContext, field: str, key_version: int, blob: object) -> str:
    data = _open(data_key, _entry_aad(b"field", ctx, field, key_version), blob)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed("decrypted field is not valid text") from None


def seal_secret(ring: KeyRing, version: int, ctx: EntryContext, field: str, plaintext: str) -> Sealed:
    """Encrypt ``plaintext`` as the entry's ``field`` under a fresh data key, wrapped by ring key ``version``
    (two encryptions under fresh nonces: the field by the data key, the data key by the ring key)."""
    with tracing.leaf("barrier seal", _span_attributes(field, version)):
        ring._key(version)  # an unknown version fails before anything is encrypted
        data_key = os.urandom(KEY_SIZE)
        return Sealed(version, _wrap_data_key(ring, version, data_key, ctx),
                      _encrypt_field(data_key, ctx, field, version, plaintext))


def open_secret(ring: KeyRing, ctx: EntryContext, field: str, sealed: Sealed) -> str:
    """The plaintext of a sealed ``field``; :class:`DecryptionFailed` if it or its wrapped data key was moved
    or altered, :class:`BarrierError` if its ring key version is not in the ring."""
    with tracing.leaf("barrier open", _span_attributes(field, sealed.key_version)):
        data_key = _unwrap_data_key(ring, sealed.key_version, sealed.wrapped_data_key, ctx)
        return _decrypt_field(data_key, ctx, field, sealed.key_version, sealed.ciphertext)


def reseal_secret(ring: KeyRing, ctx: EntryContext, field: str, sealed: Sealed, to_version: int) -> Sealed:
    """A sealed ``field`` moved to ring key ``to_version``: its data key re-wrapped and the field re-encrypted
    with the new version bound in (both authenticate on the way: :class:`DecryptionFailed` if either was
    altered or moved)."""
    with tracing.leaf("barrier reseal", {**_span_attributes(field, sealed.key_version),
                                         "remotesupport.key.to_version": to_version}):
        ring._key(to_version)
        data_key = _unwrap_data_key(ring, sealed.key_version, sealed.wrapped_data_key, ctx)
        plaintext = _decrypt_field(data_key, ctx, field, sealed.key_version, sealed.ciphertext)
        return Sealed(to_version, _wrap_data_key(ring, to_version, data_key, ctx),
                      _encrypt_field(data_key, ctx, field, to_version, plaintext))


def _span_attributes(field: str, version: object) -> dict:
    """What a barrier operation's span may say: the field's name and the ring key's version, nothing else."""
    return {"remotesupport.barrier.field": field,
            "remotesupport.key.version": version if isinstance(version, int) else -1}


# --------------------------------------------------------------------------- #
# Log head seal
# --------------------------------------------------------------------------- #

_LOG_SEAL_INFO = b"rs-log-head-seal|v=1"


class LogSealer:
    """Seals a customer's log head: HMAC-SHA256, under a key derived from the master key, of the customer, the
    last sequence and the last hash. The hash chain makes that hash stand for every event up to it, so the seal
    covers the whole log; without the master key nobody can seal a rewritten one."""

    __slots__ = ("_key", "key_id")

    def __init__(self, master: MasterKey) -> None:
        if not isinstance(master, MasterKey):
            raise BarrierError("master must be a MasterKey")
        self._key = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None,
                         info=_LOG_SEAL_INFO).derive(master._key)
        self.key_id = master.key_id

    def __repr__(self) -> str:
        return f"LogSealer(key_id={self.key_id!r})"

    __str__ = __repr__

    def __reduce__(self):  # refuse pickling key material by accident
        raise TypeError("LogSealer cannot be pickled")

    def seal(self, customer: str, last_sequence: int, last_hash: str) -> str:
        """The hex seal of a head (64 characters). The customer is length-prefixed, so no two heads share a
        message."""
        message = f"{len(customer)}:{customer}|{int(last_sequence)}|{last_hash}".encode("utf-8")
        return hmac.digest(self._key, message, "sha256").hex()

    def verifies(self, customer: str, last_sequence: int, last_hash: str, seal: object) -> bool:
        """True if `seal` is this head's seal (compared in constant time)."""
        return isinstance(seal, str) and hmac.compare_digest(self.seal(customer, last_sequence, last_hash), seal)


_WEBHOOK_SECRET_INFO = b"rs-webhook-secret|v=1"


class WebhookSecrets:
    """The signing secret of each webhook: HMAC-SHA256, under a key derived from the master key, of the
    customer, the webhook's id and a random nonce stored with it. Nothing secret is stored: an attacker with the
    database but not the master key cannot recompute a secret, and the depot can, to sign each delivery."""

    __slots__ = ("_key",)

    def __init__(self, master: MasterKey) -> None:
        if not isinstance(master, MasterKey):
            raise BarrierError("master must be a MasterKey")
        self._key = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None,
                         info=_WEBHOOK_SECRET_INFO).derive(master._key)

    def __repr__(self) -> str:
        return "WebhookSecrets()"

    __str__ = __repr__

    def __reduce__(self):  # refuse pickling key material by accident
        raise TypeError("WebhookSecrets cannot be pickled")

    @staticmethod
    def new_nonce() -> str:
        """A webhook's nonce (stored with it; nothing without the master key)."""
        return os.urandom(16).hex()

    def secret(self, customer: str, webhook_id: str, nonce: str) -> str:
        """"whsec_" and 43 base64url characters (32 bytes)."""
        message = f"{len(customer)}:{customer}|{len(webhook_id)}:{webhook_id}|{nonce}".encode("utf-8")
        digest = hmac.digest(self._key, message, "sha256")
        return "whsec_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def signature(self, customer: str, webhook_id: str, nonce: str, timestamp: int, body: bytes) -> str:
        """The RemoteSupport-Signature header of `body` sent at `timestamp` (unix seconds): "t=<timestamp>,v1=<hex
        HMAC-SHA256 under the secret (its UTF-8 string) of b"<timestamp>." + body>" (docs/WEBHOOKS.md)."""
        secret = self.secret(customer, webhook_id, nonce).encode("utf-8")
        return f"t={int(timestamp)},v1={hmac.digest(secret, f'{int(timestamp)}.'.encode('ascii') + body, 'sha256').hex()}"
