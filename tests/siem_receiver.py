"""A SIEM for tests: a TCP server on loopback that reads RFC 6587 octet-counted syslog frames or JSON lines, as
a syslog collector would, and keeps every message it received (in order, duplicates included)."""
from __future__ import annotations

import asyncio
import json
import re
import threading

RFC5424 = re.compile(rb'<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) '
                     rb'\[event@(?P<pen>\d+) (?P<sd>(?:[^\]\\]|\\.)*)\](?: \xef\xbb\xbf(?P<msg>.*))?$', re.S)
SD_PARAM = re.compile(rb'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_syslog(frame: bytes) -> dict:
    """One RFC 5424 message as the SIEM reads it: header fields, the event's structured data, the message."""
    match = RFC5424.match(frame)
    assert match, frame
    params = {k.decode(): re.sub(rb'\\(["\\\]])', rb"\1", v).decode() for k, v in SD_PARAM.findall(match["sd"])}
    return {"pri": int(match["pri"]), "time": match["time"].decode(), "app": match["app"].decode(),
            "type": match["msgid"].decode(), "pen": match["pen"].decode(), **params,
            "detail": (match["msg"] or b"").decode()}


class Receiver:
    """`messages` holds each message received: a dict (parse_syslog's, or the JSON object of a line)."""

    def __init__(self, jsonl: bool = False) -> None:
        self.jsonl = jsonl
        self.messages: list[dict] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop every connection (the SIEM is down)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                if self.jsonl:
                    line = await reader.readline()
                    if not line:
                        return
                    self.messages.append(json.loads(line))
                else:
                    length = await reader.readuntil(b" ")
                    self.messages.append(parse_syslog(await reader.readexactly(int(length))))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._connections.discard(writer)

    def ids(self, source: str | None = None) -> list[str]:
        return [m["id"] for m in self.messages if source is None or m["id"].startswith(source + "/")]


class ThreadedReceiver(Receiver):
    """A Receiver on its own event loop in a thread, for tests that drive real processes synchronously."""

    def start_in_thread(self) -> int:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(self.start(), self._loop).result(10)

    def stop_thread(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
