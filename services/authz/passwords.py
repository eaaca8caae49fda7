"""Password hashing with scrypt (a slow, memory-hard KDF from `cryptography`) and token hashing."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

DEFAULT_LOG2_N = 15  # 32 MiB, ~0.1 s per hash on a laptop core
_R, _P, _LEN = 8, 1, 32
MIN_PASSWORD, MAX_PASSWORD = 12, 128


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, log2_n: int = DEFAULT_LOG2_N) -> str:
    """`scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`; the cost travels with the hash."""
    salt = os.urandom(16)
    derived = Scrypt(salt=salt, length=_LEN, n=2**log2_n, r=_R, p=_P).derive(password.encode())
    return f"scrypt${log2_n}${_R}${_P}${_b64(salt)}${_b64(derived)}"


def verify_password(password: str, stored: str | None, log2_n: int = DEFAULT_LOG2_N) -> bool:
    """Constant-time check; a missing hash still costs one KDF run at `log2_n` (the cost the service hashes
    passwords with), so timing does not tell users apart."""
    if not stored:
        hash_password(password, log2_n)
        return False
    try:
        _, log2_n, r, p, salt, expected = stored.split("$")
        Scrypt(salt=_unb64(salt), length=_LEN, n=2 ** int(log2_n), r=int(r), p=int(p)).verify(
            password.encode(), _unb64(expected))
    except (InvalidKey, ValueError):
        return False
    return True


def new_token() -> str:
    return "rs_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens are stored only as this hash (SHA-256 suffices: tokens are 256-bit random)."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
