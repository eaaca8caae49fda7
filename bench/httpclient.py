"""A minimal HTTP/1.1 keep-alive client on asyncio streams, one connection per load worker, for OpenBao's API.

Small on purpose: the load generator should spend as little of the 2 shared cores on itself as it can, for the
HTTP peer as for our gRPC services. It handles Content-Length and chunked bodies; nothing else is needed."""
from __future__ import annotations

import asyncio
import json


class HttpError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class KeepAliveConnection:
    """One persistent connection; requests on it are sequential (a closed-loop worker owns it)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self.headers = dict(headers or {})
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self._writer = self._reader = None

    def _request_bytes(self, method: str, path: str, body: bytes | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    async def request(self, method: str, path: str, payload: object | None = None) -> tuple[int, bytes]:
        body = json.dumps(payload).encode() if payload is not None else None
        for attempt in (1, 2):  # a keep-alive connection the server closed is reopened once
            if self._writer is None:
                await self._connect()
            try:
                self._writer.write(self._request_bytes(method, path, body))
                await self._writer.drain()
                return await read_response(self._reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def json(self, method: str, path: str, payload: object | None = None) -> dict:
        status, body = await self.request(method, path, payload)
        if status >= 300:
            raise HttpError(status, body)
        return json.loads(body) if body else {}


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (without the final blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ConnectionError(f"not an HTTP/1.x response: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = parse_head(head[:-4])
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(chunks)
    length = int(headers.get("content-length", "0"))
    return status, (await reader.readexactly(length)) if length else b""
