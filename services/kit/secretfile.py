"""Writing secret files (tokens, keys): mode 0600 from the first byte, complete or not at all."""
from __future__ import annotations

import os
from pathlib import Path


def write_secret_file(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write `data` to `path` with mode 0600 through a temporary file. With `replace=False` an existing file
    wins (first writer wins between racing processes) and False is returned."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if tmp.exists():
            os.unlink(tmp)
