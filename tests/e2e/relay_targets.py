"""The customer's systems for the relay's end-to-end tests: real servers on loopback that the customer's Service
Connector reaches through the relay - an SSH server (asyncssh) with one password user that runs a few commands,
an HTTP server (http.server in a thread) that serves one page, and a TCP echo server that hashes what it
receives. The SSH and echo servers run on their own event loop in a background thread, so that the tests may
block (subprocesses, sync gRPC calls) without stalling them."""
from __future__ import annotations

import asyncio
import hashlib
import http.server
import threading
from dataclasses import dataclass, field

import asyncssh

SSH_USER = "support"
HTTP_MARKER = "relay-e2e-page-7f3a"


class TargetLoop:
    """An asyncio loop in a daemon thread; `run` executes a coroutine on it and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relay-targets", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# --- SSH ----------------------------------------------------------------------------------------------------


class _SshAuth(asyncssh.SSHServer):
    """Password authentication for one user."""

    def __init__(self, server: "SshServer") -> None:
        self.server = server

    def begin_auth(self, username: str) -> bool:
        return True  # every user must authenticate

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        ok = username == SSH_USER and password == self.server.password
        (self.server.logins if ok else self.server.failed_logins).append(username)
        return ok


@dataclass
class SshServer:
    """An SSH server on 127.0.0.1 with the user `support` and `password`; `whoami`, `hostname` and `echo ...`
    are the commands it runs (anything else exits 127)."""

    password: str
    hostname: str = "prd-app01"
    port: int = 0
    host_key: asyncssh.SSHKey | None = None
    logins: list[str] = field(default_factory=list)
    failed_logins: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    _acceptor: object = None

    async def start(self) -> int:
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._acceptor = await asyncssh.create_server(
            lambda: _SshAuth(self), "127.0.0.1", 0, server_host_keys=[self.host_key],
            process_factory=self._run, encoding="utf-8")
        self.port = self._acceptor.get_port()
        return self.port

    async def _run(self, process: asyncssh.SSHServerProcess) -> None:
        command = (process.command or "").strip()
        self.commands.append(command)
        user = process.get_extra_info("username")
        if command == "whoami":
            process.stdout.write(f"{user}\n")
        elif command == "hostname":
            process.stdout.write(f"{self.hostname}\n")
        elif command.startswith("echo "):
            process.stdout.write(command[len("echo "):] + "\n")
        else:
            process.stderr.write(f"sh: {command}: not found\n")
            process.exit(127)
            return
        process.exit(0)

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()


# --- TCP echo -----------------------------------------------------------------------------------------------


@dataclass
class EchoConnection:
    """What the echo server saw of one connection: bytes, their SHA-256, and whether the peer half-closed."""

    received: int = 0
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    eof: bool = False


@dataclass
class EchoServer:
    """A TCP server that sends back everything it receives and half-closes after the peer did."""

    port: int = 0
    connections: list[EchoConnection] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = EchoConnection()
        self.connections.append(seen)
        try:
            while data := await reader.read(65536):
                seen.received += len(data)
                seen.digest.update(data)
                writer.write(data)
                await writer.drain()
            seen.eof = True
            if writer.can_write_eof():
                writer.write_eof()
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# --- HTTP ---------------------------------------------------------------------------------------------------


class HttpServer:
    """An HTTP server on 127.0.0.1 (http.server in a thread): GET / answers a page with HTTP_MARKER and the
    request's Host header; every request's path is kept."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.paths.append(self.path)
                if self.path != "/":
                    self.send_error(404)
                    return
                body = (f"<html><body><h1>{HTTP_MARKER}</h1><p>host {self.headers.get('Host', '')}</p>"
                        "</body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="relay-http", daemon=True)

    def start(self) -> int:
        self.thread.start()
        return self.port

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


# --- all of them --------------------------------------------------------------------------------------------


class Targets:
    """The customer's three systems, started together and stopped together."""

    def __init__(self, ssh_password: str) -> None:
        self.loop = TargetLoop()
        self.ssh = SshServer(ssh_password)
        self.echo = EchoServer()
        self.http = HttpServer()

    def start(self) -> "Targets":
        self.loop.run(self.ssh.start())
        self.loop.run(self.echo.start())
        self.http.start()
        return self

    def stop(self) -> None:
        try:
            self.loop.run(self.ssh.stop())
            self.loop.run(self.echo.stop())
            self.http.stop()
        finally:
            self.loop.close()
