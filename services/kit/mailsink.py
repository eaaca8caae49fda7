"""The local mail server of `make run` and of the tests: an SMTP server (aiosmtpd) on loopback that writes every
message it receives to a folder, one 0600 file per message and recipient (the messages carry one-time codes).

    python -m services.kit.mailsink      # RS_SMTP_PORT (8025) on RS_SMTP_BIND (127.0.0.1), into $RS_VAR_DIR/mail

`Sink` runs it in a thread of the calling process (tests); `read_messages` reads a folder back."""
from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import re
import signal
import socket
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from services.kit.config import env, env_int, var_dir
from services.kit.mail import DEFAULT_SMTP_PORT
from services.kit.secretfile import write_secret_file

_SAFE = re.compile(r"[^A-Za-z0-9@._+-]")
_serial = itertools.count(1)


class FolderHandler:
    """aiosmtpd handler: each accepted message to `folder`, as <time>-<n>-<recipient>.eml; `written` lists the
    files per recipient, in order (what this handler wrote, for a sink read in the same process)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: dict[str, list[Path]] = {}

    async def handle_DATA(self, server, session, envelope) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for rcpt in envelope.rcpt_tos:
            path = self.folder / _file_name(stamp, next(_serial), rcpt)
            write_secret_file(path, envelope.original_content or envelope.content)
            self.written.setdefault(rcpt, []).append(path)
        return "250 OK"


def _file_name(stamp: str, serial: int, rcpt: str) -> str:
    return f"{stamp}-{serial:06d}-{_SAFE.sub('_', rcpt)[:120]}.eml"


def read_messages(folder: Path, to: str | None = None) -> list[EmailMessage]:
    """The messages in `folder`, oldest first; only those to `to` when given (found by their file names)."""
    suffix = _file_name("", 0, to)[7:] if to is not None else ".eml"
    out = []
    for path in sorted(Path(folder).glob("*.eml")):
        if path.name.endswith(suffix):
            out.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """The sink on a thread of this process, on a free loopback port: `start()`, `.port`, `.folder`, `stop()`."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.handler = FolderHandler(self.folder)
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> "Sink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        """The messages this sink received (for `to`), oldest first; for one recipient without reading the
        folder (it holds every message of a long test run)."""
        if to is None:
            return read_messages(self.folder)
        return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                for path in list(self.handler.written.get(to, ()))]


async def _serve(folder: Path, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(FolderHandler(folder)), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"mailsink: SMTP on {host}:{port}, every message to {folder}/", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    folder = var_dir() / "mail"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    asyncio.run(_serve(folder, env("RS_SMTP_BIND", "127.0.0.1"), env_int("RS_SMTP_PORT", DEFAULT_SMTP_PORT)))


if __name__ == "__main__":
    main()
