"""Depot encryption barrier (DESIGN.md section 5, "Depot key hierarchy").

Modelled on HashiCorp Vault's ``barrier_aes_gcm.go``. This is the only code in
the suite that touches key material::

    master key (outside the DB: dev file / mounted secret / KMS)
      └─ wraps ring keys v1, v2, ...      AAD = b"rs-ring|v=<version>"
           └─ ring key v wraps each entry's data key   AAD binds entry + version
                └─ data key encrypts each secret field  AAD binds entry + field + version
      └─ derives (HKDF-SHA256) the log seal key: HMAC-SHA256 of each customer's log head

The log's events are hash-chained (``chain.py``); the seal on a customer's head
(last sequence and hash) is what an attacker with write access to the database
but not the master key cannot recompute, so a rewritten chain does not verify.

Every encryption is AES-256-GCM (``cryptography``'s AESGCM) with a fresh random
96-bit nonce. Blob format: ``0x01 || nonce(12) || ciphertext || tag(16)``.
Anything that fails to authenticate raises :class:`DecryptionFailed`, whose
message never contains key bytes or plaintext, and which is raised ``from None``
so no underlying exception (which could carry bytes) is chained.

Python cannot reliably wipe ``bytes`` from memory; unwrapped keys live in
process memory for the lifetime of the objects holding them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.kit.secretfile import write_secret_file

__all__ = [
    "BarrierError",
    "DecryptionFailed",
    "MasterKeyError",
    "KeyUsageExceeded",
    "KEY_SIZE",
    "BLOB_VERSION",
    "NONCE_SIZE",
    "TAG_SIZE",
    "DEFAULT_USAGE_LIMIT",
    "HARD_USAGE_LIMIT",
    "PROFILE_DEV",
    "PROFILE_PRODUCTION",
    "MasterKey",
    "master_key_from_bytes",
    "format_master_key_file",
    "load_master_key",
    "wrap_ring_key",
    "unwrap_ring_key",
    "KeyRing",
    "EntryContext",
    "new_data_key",
    "wrap_data_key",
    "unwrap_data_key",
    "rewrap_data_key",
    "encrypt_field",
    "decrypt_field",
    "LogSealer",
]

KEY_SIZE = 32  # AES-256
BLOB_VERSION = 0x01
NONCE_SIZE = 12  # 96-bit random nonce
TAG_SIZE = 16
_MIN_BLOB = 1 + NONCE_SIZE + TAG_SIZE

# AES-GCM with random 96-bit nonces must not be used for more than 2**32
# encryptions under one key (NIST SP 800-38D section 8.3). Ring keys are rotated
# well before that: record_use() signals "rotate now" at DEFAULT_USAGE_LIMIT
# (2**30, a 4x margin, leaving room for several processes whose in-memory
# counters are independent and reset on restart), and wrap_data_key refuses
# outright at HARD_USAGE_LIMIT for the in-process count.
DEFAULT_USAGE_LIMIT = 2**30
HARD_USAGE_LIMIT = 2**32

PROFILE_DEV = "dev"
PROFILE_PRODUCTION = "production"
_DEV_PREFIX = "rsdev1:"
_PROD_PREFIX = "rsmk1:"
_MAX_KEY_FILE = 4096


class BarrierError(Exception):
    """Base class of every barrier error."""


class DecryptionFailed(BarrierError):
    """Authentication failed: tampered, truncated or moved ciphertext, wrong key or wrong AAD."""


class MasterKeyError(BarrierError):
    """Master key missing, malformed, wrong size, badly protected, or dev key in production."""


class KeyUsageExceeded(BarrierError):
    """A ring key reached the hard AES-GCM usage bound; rotate the ring."""


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


def master_key_from_bytes(key: bytes, *, is_dev: bool = False) -> MasterKey:
    """Wrap 32 raw bytes (e.g. fetched from a KMS) as a :class:`MasterKey`."""
    try:
        return MasterKey(key, is_dev=is_dev)
    except BarrierError as exc:
        raise MasterKeyError(str(exc)) from None


def format_master_key_file(key: bytes, *, dev: bool) -> bytes:
    """File contents for a master key: ``rsdev1:<b64>\\n`` or ``rsmk1:<b64>\\n``."""
    key = _check_key(key, "master key")
    prefix = _DEV_PREFIX if dev else _PROD_PREFIX
    return (prefix + base64.b64encode(key).decode("ascii") + "\n").encode("ascii")


def _parse_master_key_file(data: bytes, path: Path) -> MasterKey:
    bad = MasterKeyError(f"master key file {path} is malformed (expected one line "
                         f"'{_PROD_PREFIX}<base64 of {KEY_SIZE} bytes>')")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise bad from None
    text = text.rstrip("\r\n")
    if "\n" in text or "\r" in text:
        raise bad
    text = text.strip()
    if text.startswith(_DEV_PREFIX):
        is_dev, b64 = True, text[len(_DEV_PREFIX):]
    elif text.startswith(_PROD_PREFIX):
        is_dev, b64 = False, text[len(_PROD_PREFIX):]
    else:
        raise bad
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
    if len(raw) != KEY_SIZE:
        raise MasterKeyError(f"master key in {path} must be {KEY_SIZE} bytes")
    return MasterKey(raw, is_dev=is_dev)


def _read_key_file(path: Path, *, production: bool) -> Optional[bytes]:
    """Return file contents, or None if the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MasterKeyError(f"cannot open master key file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyError(f"master key file {path} is not a regular file")
        if production and st.st_mode & 0o077:
            raise MasterKeyError(
                f"master key file {path} is accessible by group/other "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); production requires 0600 or 0400"
            )
        chunks = []
        total = 0
        while total <= _MAX_KEY_FILE:
            chunk = os.read(fd, _MAX_KEY_FILE + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > _MAX_KEY_FILE:
            raise MasterKeyError(f"master key file {path} is malformed (too large)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _create_dev_key_file(path: Path) -> Optional[MasterKey]:
    """Create a dev key file with mode 0600 (services.kit.secretfile): ``path`` either does not exist or is
    complete, and an existing file is never overwritten. Returns None if another process won the race (the
    caller then loads that file)."""
    key = MasterKey(os.urandom(KEY_SIZE), is_dev=True, generated=True)
    try:
        created = write_secret_file(path, format_master_key_file(key._key, dev=True), replace=False)
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {path}: {exc.strerror}") from None
    return key if created else None


def load_master_key(
    path: Union[str, Path], *, profile: str, create_if_missing: bool
) -> MasterKey:
    """Load the master key file at ``path``.

    ``profile="dev"``: accepts dev or production keys; if missing and
    ``create_if_missing``, generates a dev key (0600) and returns it with
    ``generated=True`` -- the caller must warn loudly.

    ``profile="production"``: refuses a missing file (never generates), a dev key,
    a malformed/short key and a file accessible by group/other.
    """
    path = Path(path)
    if profile not in (PROFILE_DEV, PROFILE_PRODUCTION):
        raise MasterKeyError(f"unknown profile {profile!r}")
    production = profile == PROFILE_PRODUCTION

    for _ in range(2):
        data = _read_key_file(path, production=production)
        if data is None:
            if production:
                raise MasterKeyError(
                    f"master key file {path} not found; the production profile never "
                    f"generates a master key (mount the secret)"
                )
            if not create_if_missing:
                raise MasterKeyError(f"master key file {path} not found")
            created = _create_dev_key_file(path)
            if created is not None:
                return created
            continue  # lost a creation race: load the winner's file
        key = _parse_master_key_file(data, path)
        if production and key.is_dev:
            raise MasterKeyError(
                f"master key file {path} holds a DEV key ({_DEV_PREFIX}...); the production "
                f"profile refuses dev keys"
            )
        return key
    raise MasterKeyError(f"master key file {path} could not be created or loaded")


# --------------------------------------------------------------------------- #
# Key ring
# --------------------------------------------------------------------------- #


def _ring_aad(version: int) -> bytes:
    return b"rs-ring|v=%d" % version


def wrap_ring_key(master: MasterKey, version: int, ring_key_bytes: bytes) -> bytes:
    """Encrypt a 32-byte ring key under the master key, bound to ``version``."""
    version = _check_version(version)
    ring_key = _check_key(ring_key_bytes, "ring key")
    return _seal(master._key, _ring_aad(version), ring_key)


def unwrap_ring_key(master: MasterKey, version: int, blob: bytes) -> bytes:
    """Decrypt a wrapped ring key; :class:`DecryptionFailed` on any mismatch."""
    version = _check_version(version)
    key = _open(master._key, _ring_aad(version), blob)
    if len(key) != KEY_SIZE:
        raise DecryptionFailed("unwrapped ring key has wrong size")
    return key


class KeyRing:
    """Versioned ring keys, stored wrapped by the master key.

    Unwraps lazily and caches unwrapped keys in memory. Thread-safe.
    """

    def __init__(
        self,
        master: MasterKey,
        wrapped: Optional[Mapping[int, bytes]] = None,
        *,
        usage_limit: int = DEFAULT_USAGE_LIMIT,
    ) -> None:
        if not isinstance(master, MasterKey):
            raise BarrierError("master must be a MasterKey")
        if isinstance(usage_limit, bool) or not isinstance(usage_limit, int) or not (
            1 <= usage_limit <= HARD_USAGE_LIMIT
        ):
            raise BarrierError(f"usage_limit must be an integer in 1..{HARD_USAGE_LIMIT}")
        self._master = master
        self._usage_limit = usage_limit
        self._lock = threading.Lock()
        self._wrapped: dict[int, bytes] = {}
        self._keys: dict[int, bytes] = {}
        self._uses: dict[int, int] = {}
        for version, blob in (wrapped or {}).items():
            self._wrapped[_check_version(version)] = bytes(blob)

    def __repr__(self) -> str:
        with self._lock:
            versions = sorted(self._wrapped)
        return f"KeyRing(master={self._master.key_id!r}, versions={versions})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("KeyRing cannot be pickled")

    def __len__(self) -> int:
        with self._lock:
            return len(self._wrapped)

    @property
    def usage_limit(self) -> int:
        return self._usage_limit

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

        Does NOT add it: persist the blob first, then call :meth:`add`, so a key
        is never used before it is durably stored.
        """
        next_version = _check_version(next_version)
        with self._lock:
            highest = max(self._wrapped, default=0)
        if next_version <= highest:
            raise BarrierError(f"new ring key version must be greater than {highest}")
        return wrap_ring_key(self._master, next_version, os.urandom(KEY_SIZE))

    def add(self, version: int, wrapped: bytes) -> None:
        """Add a wrapped ring key; it is unwrapped now to prove it is usable."""
        version = _check_version(version)
        blob = bytes(wrapped)
        key = unwrap_ring_key(self._master, version, blob)
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
        key = unwrap_ring_key(self._master, version, blob)
        with self._lock:
            self._keys.setdefault(version, key)
        return key

    def uses(self, version: int) -> int:
        with self._lock:
            return self._uses.get(version, 0)

    def record_use(self, version: int) -> bool:
        """Count one encryption under ring key ``version``.

        Returns True once the usage limit for that version is reached (the caller
        should rotate). Counts are per process and in memory only.
        """
        version = _check_version(version)
        with self._lock:
            n = self._uses.get(version, 0) + 1
            self._uses[version] = n
        return n >= self._usage_limit


# --------------------------------------------------------------------------- #
# Per-entry data keys and fields
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


def new_data_key() -> bytes:
    """A fresh random 32-byte data key for one entry."""
    return os.urandom(KEY_SIZE)


def wrap_data_key(ring: KeyRing, version: int, data_key: bytes, aad: EntryContext) -> bytes:
    """Wrap an entry's data key with ring key ``version`` (records one use)."""
    data_key = _check_key(data_key, "data key")
    ring_key = ring._key(version)
    if ring.uses(version) >= HARD_USAGE_LIMIT:
        raise KeyUsageExceeded(f"ring key version {version} reached its usage bound; rotate")
    blob = _seal(ring_key, _entry_aad(b"data-key", aad, "", version), data_key)
    ring.record_use(version)
    return blob


def unwrap_data_key(ring: KeyRing, version: int, blob: bytes, aad: EntryContext) -> bytes:
    """Unwrap an entry's data key; :class:`DecryptionFailed` if moved or altered."""
    ring_key = ring._key(version)
    key = _open(ring_key, _entry_aad(b"data-key", aad, "", version), blob)
    if len(key) != KEY_SIZE:
        raise DecryptionFailed("unwrapped data key has wrong size")
    return key


def rewrap_data_key(
    ring: KeyRing, from_version: int, blob: bytes, aad: EntryContext, to_version: Optional[int] = None
) -> bytes:
    """Re-wrap a data key under ``to_version`` (default: the current ring key)."""
    target = ring.current_version if to_version is None else to_version
    return wrap_data_key(ring, target, unwrap_data_key(ring, from_version, blob, aad), aad)


def encrypt_field(
    data_key: bytes, ctx: EntryContext, field: str, key_version: int, plaintext: str
) -> bytes:
    """Encrypt one secret field of an entry with its data key."""
    key = _check_key(data_key, "data key")
    aad = _entry_aad(b"field", ctx, field, key_version)
    if not isinstance(plaintext, str):
        raise BarrierError("plaintext must be a string")
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise BarrierError("plaintext is not valid text") from None
    return _seal(key, aad, data)


def decrypt_field(
    data_key: bytes, ctx: EntryContext, field: str, key_version: int, blob: bytes
) -> str:
    """Decrypt one secret field; :class:`DecryptionFailed` if moved or altered."""
    key = _check_key(data_key, "data key")
    data = _open(key, _entry_aad(b"field", ctx, field, key_version), blob)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed("decrypted field is not valid text") from None


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
