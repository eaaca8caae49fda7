"""The gateway process: `python -m gateway.server`. It stores nothing: it serves every method of the authz,
depot and connections services by pass-through, and RemoteSupportService's composite flows."""
from __future__ import annotations

from dataclasses import dataclass

import grpc

from gateway.backends import Backends
from gateway.events import MergedFeed
from gateway.evidence import EvidenceExport
from gateway.passthrough import Passthrough, routes_for
from gateway.policies import SERVICE, build_policies
from gateway.servicer import RemoteSupportServicer
from gateway.settings import GatewaySettings
from remotesupport.authz.v1 import authz_pb2
from remotesupport.connections.v1 import connections_pb2, connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2, depot_pb2_grpc
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.kit import app, clients
from services.kit.evidence import KeyFileError, load_or_create_signing_key
from services.kit.server import ServerSpec

# The services served by pass-through: (config attribute of the owner's address, owner, service descriptor).
FORWARDED = (
    ("authz_addr", "authz", authz_pb2.DESCRIPTOR.services_by_name["AuthzService"]),
    ("depot_addr", "depot", depot_pb2.DESCRIPTOR.services_by_name["LogonDepotService"]),
    ("connections_addr", "connections", connections_pb2.DESCRIPTOR.services_by_name["ConnectionsService"]),
)


@dataclass
class GatewayApp:
    spec: ServerSpec
    backends: Backends
    evidence: EvidenceExport
    channels: list[grpc.aio.Channel]
    authorizer: None = None  # the kit asks authz, with the gateway's service token

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.backends.drain(self.backends.undo_timeout_s * 3)
        for channel in self.channels:
            await channel.close()


async def build(deps: app.Deps) -> GatewayApp:
    config = deps.config
    settings = GatewaySettings.from_env(config)
    missing = [attr for attr, _, _ in FORWARDED if not getattr(config, attr)]
    if missing:
        raise SystemExit(f"configuration error: the gateway needs {', '.join(missing)}")
    try:
        signer = load_or_create_signing_key(settings.evidence_key_file)
    except KeyFileError as error:
        raise SystemExit(f"configuration error: RS_GATEWAY_EVIDENCE_KEY_FILE: {error}") from None
    channels = {owner: clients.channel(getattr(config, attr), config.max_message_bytes)
                for attr, owner, _ in FORWARDED}
    # the forwarded services' health is watched on connections of its own (services.kit.healthmirror)
    health_channels = {owner: clients.channel(getattr(config, attr), own_connection=True)
                       for attr, owner, _ in FORWARDED}
    routes = {}
    for _, owner, descriptor in FORWARDED:
        routes.update(routes_for(descriptor, owner, channels[owner]))
    passthrough = Passthrough(routes, config.call_deadline_s)
    backends = Backends(connections=connections_pb2_grpc.ConnectionsServiceStub(channels["connections"]),
                        depot=depot_pb2_grpc.LogonDepotServiceStub(channels["depot"]),
                        clock=deps.clock, call_deadline_s=settings.call_deadline_s,
                        undo_timeout_s=settings.undo_timeout_s)
    # the event feeds on connections of their own: long-lived watches never take the pass-through's streams
    feed_channels = {owner: clients.channel(getattr(config, attr), config.max_message_bytes, own_connection=True)
                     for attr, owner, _ in FORWARDED if owner in ("depot", "connections")}
    evidence = EvidenceExport(backends, signer, config.max_message_bytes)
    servicer = RemoteSupportServicer(backends, MergedFeed({
        "depot": depot_pb2_grpc.LogonDepotServiceStub(feed_channels["depot"]),
        "connections": connections_pb2_grpc.ConnectionsServiceStub(feed_channels["connections"])}), evidence)
    spec = ServerSpec(
        register=lambda server: gateway_pb2_grpc.add_RemoteSupportServiceServicer_to_server(servicer, server),
        service_names=[SERVICE] + [descriptor.full_name for _, _, descriptor in FORWARDED],
        policies=build_policies(backends, passthrough),
        generic_handlers=[passthrough],
        # a forwarded service is as healthy as the service that owns it
        mirrored_health={descriptor.full_name: health_channels[owner] for _, owner, descriptor in FORWARDED},
    )
    return GatewayApp(spec, backends, evidence,
                      [*channels.values(), *health_channels.values(), *feed_channels.values()])


if __name__ == "__main__":
    app.main("gateway", build)
