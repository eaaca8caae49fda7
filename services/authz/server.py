"""The authz service process: `python -m services.authz.server`."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from remotesupport.authz.v1 import authz_pb2_grpc
from services.authz.bootstrap import bootstrap
from services.authz.decisions import DecisionService
from services.authz.handlers import LoginLock
from services.authz.passwords import DEFAULT_LOG2_N
from services.authz.servicer import SERVICE, AuthzServicer
from services.kit import app
from services.kit.config import env_int
from services.kit.db import Database, migrate
from services.kit.server import ServerSpec

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class AuthzApp:
    spec: ServerSpec
    authorizer: DecisionService
    db: Database

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.authorizer.close()  # the decisions' local connections
        await self.db.close()


async def build(deps: app.Deps, *, run_bootstrap: bool = True) -> AuthzApp:
    max_failed, lock_s = env_int("RS_AUTHZ_MAX_FAILED_LOGINS", 5), env_int("RS_AUTHZ_LOGIN_LOCK_S", 900)
    if max_failed < 0 or lock_s < 1:
        raise SystemExit("configuration error: RS_AUTHZ_MAX_FAILED_LOGINS must be 0 (never lock) or more, "
                         "and RS_AUTHZ_LOGIN_LOCK_S at least 1")
    url = deps.config.database_url
    migrate(url, MIGRATIONS)
    db = Database(url)
    if run_bootstrap:
        await bootstrap(db, deps.clock, deps.config.var_dir)
    decisions = DecisionService(db, deps.clock)
    servicer = AuthzServicer(db, deps.clock, decisions,
                             token_ttl=dt.timedelta(seconds=env_int("RS_AUTHZ_TOKEN_TTL_S", 12 * 3600)),
                             kdf_log2_n=env_int("RS_AUTHZ_KDF_LOG2_N", DEFAULT_LOG2_N),
                             login_lock=LoginLock(max_failed, dt.timedelta(seconds=lock_s)))
    spec = ServerSpec(register=lambda server: authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, server),
                      service_names=[SERVICE], policies=servicer.policies())
    return AuthzApp(spec, decisions, db)


if __name__ == "__main__":
    app.main("authz", build)
