"""The floor: a tiny server built with our own server kit (services.kit.server.create_server: the full
interceptor chain request id -> logging -> authentication -> authorization -> error mapping, JSON access log,
health, reflection) serving one empty method, `/bench.v1.ProbeService/Empty` (authz's empty LogoutRequest /
LogoutResponse messages as its wire types).

Its method policy is PUBLIC: the interceptors all run, but the authorization interceptor does not call authz
(an empty RPC has no resource to authorize). What the floor therefore measures is grpc.aio + the kit, without
the authz round trip; the authz Check scenario measures that round trip on its own.

With BENCH_PROBE_NEXT=<address> the method first calls the same method on the next probe (with the kit's
client helper, forwarding request id and deadline as the services do): three probes make the "chain of empty
RPCs with the same hops" as a gateway pass-through reveal (gateway -> depot -> authz).
With BENCH_PROBE_BARE=1 it is a plain grpc.aio server without the kit (a reference, not the floor).

Run: python -m bench.probe (BENCH_PROBE_PORT, BENCH_PROBE_NEXT, BENCH_PROBE_BARE)."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc

from remotesupport.authz.v1 import authz_pb2
from services.kit import auth, clients, eventloop, logs
from services.kit.config import ServiceConfig
from services.kit.server import ServerSpec, create_server, run_until_signalled

SERVICE = "bench.v1.ProbeService"
METHOD = f"/{SERVICE}/Empty"
Request, Response = authz_pb2.LogoutRequest, authz_pb2.LogoutResponse
logger = logging.getLogger(__name__)


class RefuseAll:
    """The probe's authorizer: never asked for a PUBLIC method, and refuses if it ever is (fail closed)."""

    async def check(self, token, permission, resource):
        return auth.Decision(False, False, "the probe authorizes nothing")

    async def check_bulk(self, token, items):
        return [await self.check(token, p, r) for p, r in items]


def handler(next_address: str) -> grpc.GenericRpcHandler:
    stub_call = None
    if next_address:
        channel = clients.channel(next_address)
        stub_call = channel.unary_unary(METHOD, request_serializer=Request.SerializeToString,
                                        response_deserializer=Response.FromString)

    async def empty(request, context):
        if stub_call is not None:
            await clients.call(stub_call, Request(), service="probe", default_timeout=10.0)
        return Response()

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Empty": grpc.unary_unary_rpc_method_handler(empty, request_deserializer=Request.FromString,
                                                     response_serializer=Response.SerializeToString)})


async def serve(port: int, next_address: str, bare: bool) -> None:
    if bare:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((handler(next_address),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(0.5)
        return
    config = ServiceConfig(service="probe", port=port)
    spec = ServerSpec(register=lambda _server: None, service_names=[SERVICE],
                      policies={METHOD: auth.PUBLIC}, generic_handlers=[handler(next_address)])
    server, _port, health = await create_server(config, spec, RefuseAll())
    await server.start()
    await run_until_signalled(server, health, spec.service_names, 0.5)


def main() -> None:
    logs.setup("probe")
    port = int(os.environ["BENCH_PROBE_PORT"])
    bare = os.environ.get("BENCH_PROBE_BARE") == "1"
    # the kit probe runs on the services' loop (services.kit.eventloop); the bare reference on asyncio's own
    run = asyncio.run if bare else eventloop.run
    run(serve(port, os.environ.get("BENCH_PROBE_NEXT", ""), bare))


if __name__ == "__main__":
    main()
