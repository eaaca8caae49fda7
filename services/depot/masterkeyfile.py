"""The master key's file: reading it (and writing a generated dev one) with the right modes, and loading it at
start.

The file is one line, ``rsmk1:<base64 of 32 bytes>`` for a production key or ``rsdev1:...`` for a dev key; its
contents are opaque here: the barrier parses them (barrier.master_key_from_file) and makes a dev key's
(barrier.new_dev_master_key), and what comes back is an opaque barrier.MasterKey."""
from __future__ import annotations

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
_MAX_KEY_FILE = 4096
logger = logging.getLogger(__name__)


def _parse_master_key_file(data: bytes, path: Path) -> barrier.MasterKey:
    try:
        return barrier.master_key_from_file(data)
    except barrier.MasterKeyFileMalformed as exc:
        raise MasterKeyError(f"master key file {path} is malformed ({exc})") from None
    except MasterKeyError:  # one line in the format, but not a key of the right size
        raise MasterKeyError(f"master key in {path} must be {KEY_SIZE} bytes") from None


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
    key, contents = barrier.new_dev_master_key()
    try:
        created = write_secret_file(path, contents, replace=False)
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
                f"master key file {path} holds a DEV key (rsdev1:...); the production "
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
