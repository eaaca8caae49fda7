"""Mutual TLS between the services of the suite.

With TLS on (RS_TLS=1) every server asks for a client certificate issued by the suite's CA (ca.pem in
RS_TLS_DIR) and every channel between services presents the calling service's own certificate
(<service>.pem, <service>-key.pem). A certificate from another CA, an expired one or none at all fails the
handshake (the client sees UNAVAILABLE). On top of that, a call made with a service account's token
(users/svc-<service>) is accepted only over a connection whose client certificate names that service
(`require_service_peer`), so a stolen service token is useless without the service's key.

The gateway can serve its clients over TLS with a separate certificate (RS_GATEWAY_PUBLIC_TLS_CERT/KEY);
that port does not ask clients for a certificate (they authenticate with their bearer token)."""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc

from services.kit.config import identity_of
from services.kit.errors import PermissionDenied
from services.kit.principals import SERVICE_ACCOUNT

SERVICE_ACCOUNT_PREFIX = "users/svc-"


class TlsConfigError(SystemExit):
    """TLS is on but a file it needs is missing or unreadable (raised at start, with the file to fix)."""


class PeerCertificateMismatch(PermissionDenied):
    reason = "PEER_CERTIFICATE_MISMATCH"


@dataclass(frozen=True)
class Identity:
    """What one service presents and trusts: its certificate and key, and the suite's CA."""

    service: str
    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def load(cls, certs_dir: Path, service: str) -> "Identity":
        return cls(service, _read(certs_dir / "ca.pem"), _read(certs_dir / f"{service}.pem"),
                   _read(certs_dir / f"{service}-key.pem"))

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve with this certificate; require a client certificate issued by the suite's CA."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Verify the server against the suite's CA and present this certificate."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TlsConfigError(f"configuration error: TLS is on (RS_TLS=1) but {path} cannot be read "
                             f"({err.strerror}); run `make certs` or set RS_TLS_DIR") from None


def identity_for(config) -> Identity | None:
    """The service's own identity when mutual TLS is on (config: services.kit.config.ServiceConfig)."""
    if not getattr(config, "tls", False):
        return None
    return Identity.load(config.certs_dir, identity_of(config.service))


def public_server_credentials(cert_file: Path, key_file: Path) -> grpc.ServerCredentials:
    """The gateway's client-facing port: TLS with its public certificate, no client certificate asked."""
    return grpc.ssl_server_credentials([(_read(key_file), _read(cert_file))], require_client_auth=False)


def server_credentials(config) -> grpc.ServerCredentials | None:
    """How this service's port is secured: public TLS (gateway, relay), mutual TLS, or None for plaintext."""
    cert, key = getattr(config, "public_tls_cert", None), getattr(config, "public_tls_key", None)
    if (cert is None) != (key is None):
        up = getattr(config, "service", "gateway").upper()
        raise TlsConfigError(f"configuration error: set both RS_{up}_PUBLIC_TLS_CERT and "
                             f"RS_{up}_PUBLIC_TLS_KEY, or neither")
    if cert is not None:
        return public_server_credentials(cert, key)
    identity = identity_for(config)
    return identity.server_credentials() if identity is not None else None


def requires_service_peer(config) -> bool:
    """Whether service-account calls must come over a connection whose certificate names the service.
    True under mutual TLS; also on the gateway's public TLS port, where service tokens have no business."""
    return bool(getattr(config, "tls", False) or getattr(config, "public_tls_cert", None))


# --- the identity outgoing channels present -------------------------------------------------------------
# Set by services.kit.app while a service is built and started (in-process tests run several services in one
# process, each with its own certificate); the process default is set once by app.main.
_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("tls_identity", default=None)
_process_default: list[Identity | None] = [None]


@contextlib.contextmanager
def using(identity: Identity | None) -> Iterator[None]:
    """Channels made inside this block (clients.channel) present `identity`."""
    token = _current.set(identity)
    try:
        yield
    finally:
        _current.reset(token)


def set_process_identity(identity: Identity | None) -> None:
    _process_default[0] = identity


def current_identity() -> Identity | None:
    return _current.get() or _process_default[0]


# --- the peer's certificate ------------------------------------------------------------------------------
def peer_names(context: grpc.aio.ServicerContext) -> set[str]:
    """The names in the verified client certificate (common name and subject alternative names)."""
    try:
        props = context.auth_context() or {}
    except Exception:  # noqa: BLE001 - a context without an auth context has no certificate
        return set()
    names: set[str] = set()
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in props.get(key, ()):
            names.add(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return names


def service_of(user: str) -> str | None:
    """'users/svc-depot' -> 'depot'; None for anyone who is not a service account."""
    return user[len(SERVICE_ACCOUNT_PREFIX):] if user.startswith(SERVICE_ACCOUNT_PREFIX) else None


def require_service_peer(context: grpc.aio.ServicerContext, subject_user: str, subject_kind: str) -> None:
    """Refuse a service account's call unless the client certificate names that service."""
    if subject_kind != SERVICE_ACCOUNT:
        return
    service = service_of(subject_user) or subject_user
    if service not in peer_names(context):
        raise PeerCertificateMismatch(
            f"a call with the {service} service's token must come over a connection whose client certificate "
            f"names '{service}'; refused")
