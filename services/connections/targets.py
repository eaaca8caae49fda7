"""The network target of a set-up: the one "host:port" the customer's Service Connector may connect to for a
connection type, derived from the set-up's parameters (docs/CONNECTION_TYPES.md lists the rule per type).
Pure functions; no I/O.

- a type addressed by instance number (R/3 Support, SAP GUI, SAP NI, Solution Manager, TREX/BIA): the host and
  the instance's port: the type's port of instance 00 plus the instance number (32NN), or plus 100 times it for
  TREX/BIA (3NN01); SAP NI's explicit port wins when given;
- a type with a host and a port (SSH, Telnet, WTS, VNC, HANA, databases, debuggers, ...): the host and the port,
  or the type's standard port when the port is optional and omitted (SSH 22, HANA 30015, ...);
- a type with only a URL (HTTP Connect, Solution Manager Diagnostics, ...): the URL's host and port, or 443 for
  https and 80 for http;
- a type with nothing to reach (GoToAssist, started from the customer's desktop): no target.
"""
from __future__ import annotations

import ipaddress
import urllib.parse

from services.connections.connection_types import ConnectionTypeSpec

# the port step per instance number, where it is not 1 (port of instance NN = port of instance 00 + step * NN)
INSTANCE_STEP = {"TREX_BIA": 100}
SCHEME_PORTS = {"http": 80, "https": 443}


def host_port(host: str, port: int) -> str:
    """"host:port", with an IPv6 address in brackets."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def target_of(spec: ConnectionTypeSpec, params: dict[str, str]) -> str:
    """The set-up's target as "host:port", or "" when the type reaches nothing over the network. `params` are
    valid for `spec` (setup_parameters.validate_parameters found no problem)."""
    port = params.get("port", "")
    if params.get("host"):
        host = params["host"]
        if port:
            return host_port(host, int(port))
        if params.get("instance_number") and spec.default_port is not None:
            step = INSTANCE_STEP.get(spec.code, 1)
            return host_port(host, spec.default_port + step * int(params["instance_number"]))
        if spec.default_port is not None:
            return host_port(host, spec.default_port)
        return ""
    if params.get("url"):
        parts = urllib.parse.urlsplit(params["url"])
        return host_port(parts.hostname or "", parts.port or SCHEME_PORTS[parts.scheme.lower()])
    return ""
