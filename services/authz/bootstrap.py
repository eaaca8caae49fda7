"""First start: the platform admin, the service accounts, and their tokens in 0600 files under var/."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.authz import handlers, policy
from services.authz.passwords import token_hash
from services.authz.tables import PrincipalRow, TokenRow
from services.kit.clock import as_utc
from services.kit.secretfile import write_secret_file

logger = logging.getLogger(__name__)
ADMIN_ID = "admin"
ADMIN_TTL = dt.timedelta(days=30)
SERVICE_TTL = dt.timedelta(days=365)


async def _ensure_principal(db, clock, user_id: str, kind: str, display_name: str) -> bool:
    """Create the principal unless it exists; a replica starting at the same moment may win the race."""
    try:
        async with db.unit_of_work() as session:
            if await session.get(PrincipalRow, user_id) is not None:
                return False
            now = clock.now()
            session.add(PrincipalRow(user_id=user_id, kind=kind, customer=None, display_name=display_name,
                                     email="", disabled=False, password_hash=None, created_at=now, updated_at=now))
    except IntegrityError:
        return False
    return True


async def _token_still_valid(db, clock, path: Path) -> bool:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return False
    async with db.sessions() as session:
        row = (await session.execute(select(TokenRow).where(TokenRow.token_hash == token_hash(token)))).scalar()
    return row is not None and not row.revoked and as_utc(row.expires_at) > clock.now() + dt.timedelta(days=1)


async def _ensure_token(db, clock, user_id: str, path: Path, ttl: dt.timedelta) -> bool:
    if await _token_still_valid(db, clock, path):
        return False
    token, _ = await handlers.mint_token(db, clock, user_id, ttl)
    write_secret_file(path, (token + "\n").encode())
    return True


async def bootstrap(db, clock, var_dir: Path) -> None:
    """Idempotent: a second start reuses every principal and every still-valid token file."""
    if await _ensure_principal(db, clock, ADMIN_ID, policy.PLATFORM_ADMIN, "Platform administrator"):
        logger.warning("first start: created the platform admin users/%s", ADMIN_ID)
    admin_file = var_dir / "admin.token"
    if await _ensure_token(db, clock, ADMIN_ID, admin_file, ADMIN_TTL):
        print(f"authz: the platform admin's token is in {admin_file} (mode 0600)", flush=True)
        logger.warning("wrote the platform admin's token to %s (mode 0600)", admin_file)
    for service, user_id in policy.SERVICE_ACCOUNTS.items():
        await _ensure_principal(db, clock, user_id, policy.SERVICE_ACCOUNT, f"{service} service")
        await _ensure_token(db, clock, user_id, var_dir / "secrets" / f"{service}.token", SERVICE_TTL)
