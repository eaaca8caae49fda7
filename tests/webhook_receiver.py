"""A webhook receiver for tests: a real HTTP server on loopback (a thread of the test process) that records every
POST (headers and body) and answers as scripted: `fail_first` tries with 500, then 200; or `hang` (accept, never
answer, until stopped)."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered (0: nothing)


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_first = 0
        self.hang = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender went away mid-request (killed): nothing was delivered
                    return
                with receiver._lock:
                    if receiver.hang:
                        status = 0
                    elif receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        status = 500
                    else:
                        status = 200
                    receiver.received.append(Received(self.path, dict(self.headers.items()), body, status))
                if status == 0:
                    receiver._stopping.wait(30)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def answered(self, status: int = 200) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == status]

    async def wait_for(self, predicate, timeout: float = 15.0) -> None:
        """Until `predicate(received)` holds (polling without blocking the event loop: in-process servers run on
        it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.received)):
                    return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the receiver did not get what was expected; got {len(self.received)} requests")
