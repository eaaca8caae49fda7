"""Development certificates for mutual TLS: `python -m services.kit.certs --out var/certs` (`make certs`).

Writes a development CA (ca.pem, ca-key.pem), one certificate per service (<service>.pem, <service>-key.pem;
common name and DNS name = the service, plus DNS:localhost and IP:127.0.0.1), a client certificate for
operators and tests (client.pem), and, from a separate development CA (public-ca.pem), the certificate the
gateway shows its clients (gateway-public.pem). Private keys are written 0600. Never use these in production:
issue the same file names from your own CA."""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("gateway", "authz", "depot", "connections")
CLIENT = "client"
DEFAULT_DAYS = 825


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Remote Support Suite (development)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(common_name: str = "Remote Support Suite development CA", *, days: int = DEFAULT_DAYS,
            not_before: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca_cert: x509.Certificate, ca_key, common_name: str, *, dns: tuple[str, ...] = (),
          ips: tuple[str, ...] = ("127.0.0.1",), days: int = DEFAULT_DAYS,
          not_before: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate for both ends of a connection (server and client authentication)."""
    key = new_key()
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    names = [x509.DNSName(common_name), *(x509.DNSName(d) for d in dns if d != common_name),
             *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_pair(out: Path, stem: str, cert: x509.Certificate, key) -> None:
    """<stem>.pem (0644) and <stem>-key.pem (0600, never readable by others, not even for a moment)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.pem").write_bytes(cert_pem(cert))
    key_path = out / f"{stem}-key.pem"
    tmp = key_path.with_name(key_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem(key))
    os.replace(tmp, key_path)


def generate(out: Path, *, days: int = DEFAULT_DAYS, extra_dns: tuple[str, ...] = (),
             services: tuple[str, ...] = SERVICES) -> list[Path]:
    """Write the development CA and every certificate into `out`; returns the files written."""
    ca_cert, ca_key = make_ca(days=days)
    write_pair(out, "ca", ca_cert, ca_key)
    for service in services:
        cert, key = issue(ca_cert, ca_key, service, dns=(service, "localhost", *extra_dns), days=days)
        write_pair(out, service, cert, key)
    cert, key = issue(ca_cert, ca_key, CLIENT, dns=(), ips=(), days=days)
    write_pair(out, CLIENT, cert, key)
    public_ca, public_ca_key = make_ca("Remote Support Suite development public CA", days=days)
    write_pair(out, "public-ca", public_ca, public_ca_key)
    cert, key = issue(public_ca, public_ca_key, "gateway", dns=("gateway", "localhost", *extra_dns), days=days)
    write_pair(out, "gateway-public", cert, key)
    return sorted(out.iterdir())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.kit.certs",
        description="Write a development CA and one certificate per service for mutual TLS (RS_TLS=1).")
    parser.add_argument("--out", type=Path, default=Path("var/certs"), help="directory (default: var/certs)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity (default: {DEFAULT_DAYS})")
    parser.add_argument("--dns", action="append", default=[], help="an extra DNS name for every service")
    parser.add_argument("--force", action="store_true", help="overwrite an existing CA")
    args = parser.parse_args(argv)
    if (args.out / "ca.pem").exists() and not args.force:
        print(f"{args.out / 'ca.pem'} exists; keeping the existing certificates (--force to replace them)")
        return
    generate(args.out, days=args.days, extra_dns=tuple(args.dns))
    print(f"wrote a development CA and certificates for {', '.join(SERVICES)} and '{CLIENT}' to {args.out}/ "
          "(development only: keys are unencrypted, mode 0600)")


if __name__ == "__main__":
    sys.exit(main())
