"""First start: the platform admin, the service accounts, and their tokens in 0600 files under var/."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from services.authz import sessions
from services.authz.model import ADMIN_ID, SERVICE_ACCOUNTS, email_key
from services.authz.store import DuplicateKey, Store
from services.authz.tables import PrincipalRow
from services.kit.clock import Clock
from services.kit.principals import PLATFORM_ADMIN, SERVICE_ACCOUNT
from services.kit.secretfile import write_secret_file

logger = logging.getLogger(__name__)
ADMIN_TTL = dt.timedelta(days=30)
SERVICE_TTL = dt.timedelta(days=365)
RENEW_WITHIN = dt.timedelta(days=1)  # a token file whose token expires sooner gets a new token


async def _ensure_principal(store: Store, clock: Clock, user_id: str, kind: str, display_name: str,
                            email: str = "") -> bool:
    """Create the principal unless it exists; a replica starting at the same moment may win the race."""
    try:
        async with store.write() as queries:
            if await queries.principal(user_id) is not None:
                return False
            now = clock.now()
            queries.add(PrincipalRow(user_id=user_id, kind=kind, customer=None, display_name=display_name,
                                     email=email, email_key=email_key(email) if email else None, disabled=False,
                                     password_hash=None, created_at=now, updated_at=now))
    except DuplicateKey:
        return False
    return True


async def _token_file_still_valid(store: Store, clock: Clock, path: Path) -> bool:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return False
    return await sessions.token_valid_beyond(store, token, clock.now() + RENEW_WITHIN)


async def _ensure_token(store: Store, clock: Clock, user_id: str, path: Path, ttl: dt.timedelta) -> bool:
    if await _token_file_still_valid(store, clock, path):
        return False
    token, _ = await sessions.mint_token(store, clock, user_id, ttl)
    write_secret_file(path, (token + "\n").encode())
    return True


async def bootstrap(store: Store, clock: Clock, var_dir: Path, admin_email: str = "") -> None:
    """Idempotent: a second start reuses every principal and every still-valid token file."""
    if await _ensure_principal(store, clock, ADMIN_ID, PLATFORM_ADMIN, "Platform administrator", admin_email):
        logger.warning("first start: created the platform admin users/%s", ADMIN_ID)
    admin_file = var_dir / "admin.token"
    if await _ensure_token(store, clock, ADMIN_ID, admin_file, ADMIN_TTL):
        print(f"authz: the platform admin's token is in {admin_file} (mode 0600)", flush=True)
        logger.warning("wrote the platform admin's token to %s (mode 0600)", admin_file)
    for service, user_id in SERVICE_ACCOUNTS.items():
        await _ensure_principal(store, clock, user_id, SERVICE_ACCOUNT, f"{service} service")
        await _ensure_token(store, clock, user_id, var_dir / "secrets" / f"{service}.token", SERVICE_TTL)
