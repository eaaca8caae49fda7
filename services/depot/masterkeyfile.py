"""The master key's file: its format, reading it (and generating a dev one), and loading it at start.

One line, ``rsmk1:<base64 of 32 bytes>`` for a production key or ``rsdev1:...`` for a dev key. The bytes read
go straight to barrier.master_key_from_bytes; what comes back is an opaque barrier.MasterKey."""
from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Optional, Union

from services.depot import barrier
from services.depot.barrier import KEY_SIZE, MasterKeyError
from services.kit.secretfile import write_secret_file

PROFILE_DEV = "dev"
PROFILE_PRODUCTION = "production"
_DEV_PREFIX = "rsdev1:"
_PROD_PREFIX = "rsmk1:"
_MAX_KEY_FILE = 4096
logger = logging.getLogger(__name__)


def format_master_key_file(key: bytes, *, dev: bool) -> bytes:
    """File contents for a master key: ``rsdev1:<b64>\\n`` or ``rsmk1:<b64>\\n``."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise MasterKeyError(f"master key must be {KEY_SIZE} bytes")
    prefix = _DEV_PREFIX if dev else _PROD_PREFIX
    return (prefix + base64.b64encode(bytes(key)).decode("ascii") + "\n").encode("ascii")


def _parse_master_key_file(data: bytes, path: Path) -> barrier.MasterKey:
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
    return barrier.master_key_from_bytes(raw, is_dev=is_dev)


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


def _create_dev_key_file(path: Path) -> Optional[barrier.MasterKey]:
    """Create a dev key file with mode 0600 (services.kit.secretfile): ``path`` either does not exist or is
    complete, and an existing file is never overwritten. Returns None if another process won the race (the
    caller then loads that file)."""
    raw = os.urandom(KEY_SIZE)
    key = barrier.master_key_from_bytes(raw, is_dev=True, generated=True)
    try:
        created = write_secret_file(path, format_master_key_file(raw, dev=True), replace=False)
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {path}: {exc.strerror}") from None
    return key if created else None


def load_master_key(path: Union[str, Path], *, profile: str, create_if_missing: bool) -> barrier.MasterKey:
    """Load the master key file at ``path``.

    ``profile="dev"``: accepts dev or production keys; if missing and ``create_if_missing``, generates a dev key
    (0600) and returns it with ``generated=True`` -- the caller must warn loudly.

    ``profile="production"``: refuses a missing file (never generates), a dev key, a malformed/short key and a
    file accessible by group/other.
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


def load_at_start(path: Path, profile: str) -> barrier.MasterKey:
    """The depot's master key from its file; in dev a missing one is generated (loudly), production never
    does. No usable key: the depot does not start (SystemExit)."""
    try:
        key = load_master_key(path, profile=profile, create_if_missing=profile == PROFILE_DEV)
    except MasterKeyError as exc:
        raise SystemExit(f"depot: refusing to start, no usable master key, so no secret can be served: {exc}") \
            from None
    if key.generated:
        warning = (f"GENERATED A DEV MASTER KEY (id {key.key_id}) in {path}: every secret in the depot depends "
                   "on this file. Fine on a laptop; never in production (RS_PROFILE=production refuses it) - "
                   "mount a real master key and set RS_DEPOT_MASTER_KEY_FILE.")
        logger.warning(warning)
        print(f"WARNING depot: {warning}", file=sys.stderr, flush=True)
    elif key.is_dev:
        logger.warning("the depot runs with a DEV master key (id %s); production refuses it", key.key_id)
    return key
