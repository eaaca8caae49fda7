"""What one hop costs under three serving models, before any of our code runs (bench/README.md, "Two changes
of means, measured"): server CPU per request of an empty bytes-in/bytes-out call

- `aio-unary`: a unary call on a grpc.aio server on uvloop (what every service runs today);
- `threaded-unary`: a unary call on grpc's threaded server (`grpc.server` with 4 worker threads);
- `aio-stream`: one message each way on an already open bidirectional stream of a grpc.aio server on uvloop
  (the "streaming check channel" proposal: every request of a worker rides one long-lived stream).

Each is measured by the one load generator (bench.load.closed_loop) at 1 and 32 clients, `--reps` times
interleaved; the median is printed.

Run: python -m bench.serving [--reps 3] [--duration 4]"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
from concurrent import futures

import grpc

from bench import load

SERVICE = "bench.v1.Serving"
MODELS = ("aio-unary", "threaded-unary", "aio-stream")


def _same(data: bytes) -> bytes:
    return data


async def _unary(request, context):
    return b""


async def _echo(requests, context):
    async for message in requests:
        yield message


def _handlers(threaded: bool) -> grpc.GenericRpcHandler:
    if threaded:
        return grpc.method_handlers_generic_handler(SERVICE, {"Unary": grpc.unary_unary_rpc_method_handler(
            lambda request, context: b"", request_deserializer=_same, response_serializer=_same)})
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, request_deserializer=_same, response_serializer=_same),
        "Echo": grpc.stream_stream_rpc_method_handler(_echo, request_deserializer=_same, response_serializer=_same)})


def serve(port: int, threaded: bool) -> None:
    """The server side (a separate process, so its CPU is its own)."""
    if threaded:
        server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((_handlers(True),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()
        return

    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((_handlers(False),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    import uvloop
    uvloop.run(run())


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def measure(model: str, clients: int, duration_s: float) -> load.LoadResult:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.serving", "serve", str(port),
                               "threaded" if model == "threaded-unary" else "aio"])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 15)
            if model == "aio-stream":
                operation = _stream_operation(channel)
            else:
                call = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=_same,
                                           response_deserializer=_same)

                async def operation(_worker, _index):
                    await call(b"", timeout=10)
            return await load.closed_loop(operation, scenario="serving", side=model, clients=clients,
                                          duration_s=duration_s, warmup_s=1.0, processes={"server": server.pid})
    finally:
        server.terminate()
        server.wait(10)


def _stream_operation(channel):
    """Every request is one message out and its echo back on one open stream, matched by its 8-byte id."""
    stream = channel.stream_stream(f"/{SERVICE}/Echo", request_serializer=_same, response_deserializer=_same)()
    waiting: dict[bytes, asyncio.Future] = {}
    ids = itertools.count()
    writing = asyncio.Lock()  # one write at a time on a stream

    async def read() -> None:
        while (message := await stream.read()) is not grpc.aio.EOF:
            waiting.pop(message).set_result(None)

    reader = asyncio.get_running_loop().create_task(read())

    async def operation(_worker, _index):
        key = next(ids).to_bytes(8, "big")
        answered = waiting[key] = asyncio.get_running_loop().create_future()
        async with writing:
            await stream.write(key)
        await answered

    operation.reader = reader  # kept alive with the operation
    return operation


async def main(reps: int, duration_s: float) -> None:
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(reps):
        for clients in (32, 1):
            for model in MODELS:
                result = await measure(model, clients, duration_s)
                if result.errors:
                    raise SystemExit(f"{model} at {clients} clients: {result.errors} errors")
                results.setdefault((model, clients), []).append(result.cpu_us_per_request)
    print(f"server CPU µs per request, median of {reps} ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print("| model | 1 client | 32 clients | runs at 32 |")
    print("|---|---|---|---|")
    for model in MODELS:
        runs = results[(model, 32)]
        print(f"| {model} | {statistics.median(results[(model, 1)]):.0f} | {statistics.median(runs):.0f} | "
              + " / ".join(f"{value:.0f}" for value in runs) + " |")


def cli() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3] == "threaded")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    asyncio.run(main(args.reps, args.duration))


if __name__ == "__main__":
    cli()
