"""Write the secrets docker-compose.yml mounts, if missing: `python deploy/make_secrets.py [--out deploy/secrets]`.

  postgres_password, authz_db_password, depot_db_password, connections_db_password   random, one per role
  depot_master_key          a production-format master key (rsmk1:<base64 of 32 bytes>)
  connections_signing_key   the connector files' Ed25519 signing key (PKCS#8 PEM)
  gateway_evidence_key      the incident evidence documents' Ed25519 signing key (PKCS#8 PEM)
  compose.env               RS_UID=<owner>: the uid the images are built to run as (docker compose --env-file)

Every file is mode 0600 and never overwritten (replacing the master key makes every stored secret unreadable;
rotate it with the depot's procedure instead, see docs/PRODUCTION.md). Run as root, the files (and the TLS
private keys in --certs) are handed to uid 10001, the containers' default user. Development and single-host
use only: in production the same files come from your secret store."""
from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path

DEFAULT_CONTAINER_UID = 10001
PASSWORDS = ("postgres_password", "authz_db_password", "depot_db_password", "connections_db_password")


def _write_new(path: Path, data: bytes) -> bool:
    """Create `path` with mode 0600 (never readable by others, not even for a moment); False if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def master_key() -> bytes:
    return b"rsmk1:" + base64.b64encode(secrets.token_bytes(32)) + b"\n"


def signing_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def generate(out: Path) -> list[str]:
    """Create the missing secret files; returns the names of those created."""
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    made = []
    for name in PASSWORDS:
        if _write_new(out / name, secrets.token_urlsafe(32).encode() + b"\n"):
            made.append(name)
    if _write_new(out / "depot_master_key", master_key()):
        made.append("depot_master_key")
    for name in ("connections_signing_key", "gateway_evidence_key"):
        if _write_new(out / name, signing_key()):
            made.append(name)
    return made


def hand_over(out: Path, certs: Path, uid: int) -> None:
    """Give the secrets and the TLS private keys to `uid` (the containers' user), keeping mode 0600."""
    paths = [p for p in out.iterdir() if p.is_file() and p.name not in ("README.md", ".gitignore")]
    paths += sorted(certs.glob("*-key.pem")) if certs.is_dir() else []
    for path in paths:
        os.chown(path, uid, uid)
        os.chmod(path, 0o600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/make_secrets.py", description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--out", type=Path, default=here / "secrets")
    parser.add_argument("--certs", type=Path, default=here.parent / "var" / "certs",
                        help="where `make certs` wrote the TLS files (their private keys are handed over too)")
    args = parser.parse_args(argv)
    made = generate(args.out)
    uid = os.getuid()
    if uid == 0:
        uid = DEFAULT_CONTAINER_UID
        hand_over(args.out, args.certs, uid)
    (args.out / "compose.env").write_text(f"RS_UID={uid}\n")
    if made:
        print(f"wrote {', '.join(made)} to {args.out}/ (mode 0600, owner uid {uid}); keep them, and back up "
              "depot_master_key apart from the database backups")
    else:
        print(f"secrets in {args.out}/ exist already (owner uid {uid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
