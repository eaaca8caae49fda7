"""Writing secret files (tokens, keys, sessions, exported files): mode 0600 from the first byte, complete or
not at all. The one writer of such files, used by every service and by rsctl."""
from __future__ import annotations

import os
from pathlib import Path


def write_secret_file(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write `data` to `path` with mode 0600 through a temporary file (O_CREAT|O_EXCL, fsynced), then move it
    into place and fsync the directory. With `replace=False` an existing file wins (first writer wins between
    racing processes: the temporary file is hard-linked, never renamed over) and False is returned.
    OSError propagates; the temporary file never stays behind."""
    path = Path(path)
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
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _sync_directory(path.parent)
    return True


def _sync_directory(directory: Path) -> None:
    """Make the new name durable (best effort: some file systems cannot fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
