"""How each RPC of RelayService is authorized. The engineer's OpenTunnel names its window in the stream's
first message, so its handler asks authz itself (`handler_decides`); the connector's two streams carry no
bearer token: AttachConnector is authenticated by the signed connector file and its attach key (stored hashed),
AcceptTunnel by the one-time dial key the relay sent on the connector's attach stream."""
from __future__ import annotations

from remotesupport.connections.v1 import relay_pb2
from services.kit import permissions as p
from services.kit.auth import PUBLIC, MethodPolicy, policy_table

SERVICE = relay_pb2.DESCRIPTOR.services_by_name["RelayService"].full_name


def build_policies() -> dict[str, MethodPolicy]:
    return policy_table(SERVICE, {
        "AttachConnector": PUBLIC,
        "AcceptTunnel": PUBLIC,
        "OpenTunnel": MethodPolicy(p.RELAY_TUNNEL, handler_decides=True),
    })
