"""The gRPC side of rsctl: one channel per address, the generated stubs, the bearer token and request id
on every call, paging, and every grpc.RpcError turned into a CliError."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import grpc

from remotesupport.authz.v1 import authz_pb2_grpc
from remotesupport.connections.v1 import connections_pb2_grpc
from remotesupport.depot.v1 import depot_pb2_grpc
from remotesupport.gateway.v1 import gateway_pb2_grpc
from rsctl.errors import CliError, from_rpc_error, usage

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_RELAY_ADDRESS = "127.0.0.1:50055"
SERVICES = ("authz", "connections", "depot", "gateway")
STUBS = {
    "authz": authz_pb2_grpc.AuthzServiceStub,
    "connections": connections_pb2_grpc.ConnectionsServiceStub,
    "depot": depot_pb2_grpc.LogonDepotServiceStub,
    "gateway": gateway_pb2_grpc.RemoteSupportServiceStub,
}
MAX_PAGES = 10_000


@dataclass
class Addresses:
    """Where each service is reached: the gateway address for all, unless a service has its own."""

    default: str = DEFAULT_ADDRESS
    per_service: dict[str, str] = field(default_factory=dict)
    relay: str = DEFAULT_RELAY_ADDRESS

    def of(self, service: str) -> str:
        return self.per_service.get(service) or self.default

    @classmethod
    def resolve(cls, environ: dict[str, str], address: str | None, per_service: dict[str, str | None],
                relay: str | None = None) -> "Addresses":
        """Precedence: --<svc>-address, --address, RSCTL_<SVC>_ADDRESS, RSCTL_ADDRESS, 127.0.0.1:50051. The relay
        (the data plane, not served by the gateway) has its own: --relay-address, RSCTL_RELAY_ADDRESS,
        127.0.0.1:50055; --address never moves it."""
        resolved: dict[str, str] = {}
        for service in SERVICES:
            flag = per_service.get(service)
            env = environ.get(f"RSCTL_{service.upper()}_ADDRESS")
            if flag:
                resolved[service] = flag
            elif env and not address:
                resolved[service] = env
        return cls(address or environ.get("RSCTL_ADDRESS") or DEFAULT_ADDRESS, resolved,
                   relay or environ.get("RSCTL_RELAY_ADDRESS") or DEFAULT_RELAY_ADDRESS)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Tls:
    """TLS for the channels: off (plaintext, the default), server-verified, or mutual (client certificate)."""

    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def resolve(cls, environ: dict[str, str], *, tls: bool = False, ca_file: Path | None = None,
                cert_file: Path | None = None, key_file: Path | None = None) -> "Tls":
        """Flags first, then RSCTL_TLS, RSCTL_CA_FILE, RSCTL_CERT_FILE, RSCTL_KEY_FILE; any file turns TLS on."""
        def path(value, name):
            return Path(value) if value else (Path(environ[name]) if environ.get(name) else None)

        ca = path(ca_file, "RSCTL_CA_FILE")
        cert, key = path(cert_file, "RSCTL_CERT_FILE"), path(key_file, "RSCTL_KEY_FILE")
        if (cert is None) != (key is None):
            raise usage("--cert-file and --key-file go together")
        return cls(tls or _truthy(environ.get("RSCTL_TLS")) or any((ca, cert, key)), ca, cert, key)

    @staticmethod
    def _read(path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CliError("error", f"cannot read {path}: {exc.strerror}") from None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self._read(self.ca_file),
                                            private_key=self._read(self.key_file),
                                            certificate_chain=self._read(self.cert_file))


class Client:
    """Calls methods of the suite's services; `token` is asked for lazily, once, on the first call needing it."""

    def __init__(self, addresses: Addresses, timeout: float, token: Callable[[], str], tls: Tls = Tls()) -> None:
        self.addresses = addresses
        self.timeout = timeout
        self.tls = tls
        self._token_source = token
        self._token: str | None = None
        self._channels: dict[str, grpc.Channel] = {}

    def _channel(self, address: str) -> grpc.Channel:
        if not self.tls.enabled:
            return grpc.insecure_channel(address)
        return grpc.secure_channel(address, self.tls.credentials())

    def _stub(self, service: str):
        address = self.addresses.of(service)
        if address not in self._channels:
            self._channels[address] = self._channel(address)
        return STUBS[service](self._channels[address])

    def _metadata(self, authenticated: bool) -> list[tuple[str, str]]:
        metadata = [("x-request-id", f"rsctl-{uuid.uuid4().hex[:20]}")]
        if authenticated:
            if self._token is None:
                self._token = self._token_source()
            metadata.append(("authorization", f"Bearer {self._token}"))
        return metadata

    def call(self, service: str, method: str, request, *, authenticated: bool = True):
        """Call `service`.`method`; a failure raises CliError with the documented exit code."""
        stub = self._stub(service)
        metadata = self._metadata(authenticated)
        try:
            return getattr(stub, method)(request, metadata=metadata, timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err, f"{self.addresses.of(service)} ({service} service)") from None

    def stream(self, service: str, method: str, request) -> Iterator:
        """The responses of a server-streaming method, as they come, without a deadline (until the caller stops
        reading or the server ends it); a failure raises CliError like `call`."""
        call = getattr(self._stub(service), method)(request, metadata=self._metadata(True))
        try:
            yield from call
        except grpc.RpcError as err:
            raise from_rpc_error(err, f"{self.addresses.of(service)} ({service} service)") from None
        finally:
            call.cancel()

    def collect(self, service: str, method: str, request, items: str, limit: int | None = None) -> list:
        """Every item of a paged List method (following next_page_token), at most `limit`."""
        out: list = []
        for _ in range(MAX_PAGES):
            response = self.call(service, method, request)
            out.extend(getattr(response, items))
            if not response.next_page_token or (limit is not None and len(out) >= limit):
                break
            request.page_token = response.next_page_token
        return out[:limit] if limit is not None else out

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
