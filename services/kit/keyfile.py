"""Ed25519 signing keys kept in a file (PKCS#8 PEM, mode 0600), generated there on first start: the one loader
of the connections service's connector signing key and the gateway's evidence key."""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.kit.secretfile import write_secret_file

logger = logging.getLogger(__name__)
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileError(RuntimeError):
    """The key file is unusable; the message names the file, never its content."""


def load_or_create(path: Path, what: str, generated: str) -> Ed25519PrivateKey:
    """The private key in `path`, generated there when there is none (the first of racing processes wins; then
    `generated` is logged as a warning); KeyFileError naming `what` ("connector signing key") when the file is
    not a regular file only its owner can read, or holds no unencrypted PEM Ed25519 key."""
    path = Path(path)
    for _ in range(2):
        data = _read_owner_only(path, what)
        if data is None:
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            try:
                made = write_secret_file(path, pem, replace=False)
            except OSError as exc:
                raise KeyFileError(f"{what} file {path} cannot be created ({exc.strerror})") from None
            if made:
                logger.warning("generated a new %s in %s; %s", what, path, generated)
            continue
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{what} file {path} is not an unencrypted PEM Ed25519 private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{what} file {path} does not hold an Ed25519 key")
        return key
    raise KeyFileError(f"{what} file {path} could not be created or read")


def _read_owner_only(path: Path, what: str) -> bytes | None:
    """The file's content, None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a pipe must not block
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyFileError(f"{what} file {path} cannot be read ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"{what} file {path} is not a regular file")
        if mode & 0o077:
            raise KeyFileError(f"{what} file {path} is readable by group or others (mode "
                               f"{stat.S_IMODE(mode):04o}); chmod 600 it")
        return os.read(fd, MAX_KEY_FILE_BYTES)
    finally:
        os.close(fd)
