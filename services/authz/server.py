"""The authz service process: `python -m services.authz.server`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from remotesupport.authz.v1 import authz_pb2_grpc
from services.authz.bootstrap import bootstrap
from services.authz.decisions import DecisionService
from services.authz.kdf import KdfPool
from services.authz.policies import SERVICE, build_policies
from services.authz.servicer import AuthzServicer
from services.authz.settings import AuthzSettings
from services.authz.store import Store
from services.authz.throttle import LoginThrottle
from services.kit import app
from services.kit.db import Database, migrate
from services.kit.mail import Mailer, SmtpSettings
from services.kit.server import ServerSpec

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class AuthzApp:
    """The running service: its server spec, its in-process decision point (the kit's authorizer), its store
    and its password-hashing threads."""

    spec: ServerSpec
    authorizer: DecisionService
    store: Store
    kdf: KdfPool

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.kdf.close()
        await self.store.close()


async def build(deps: app.Deps, mail: SmtpSettings | None = None) -> AuthzApp:
    """The service; `mail` (tests) instead of the RS_SMTP_* settings."""
    settings = AuthzSettings.from_env()
    mailer = Mailer(mail or SmtpSettings.from_env())
    url = deps.config.database_url
    migrate(url, MIGRATIONS)
    store = Store(Database(url))
    await bootstrap(store, deps.clock, deps.config.var_dir, settings.admin_email)
    decisions = DecisionService(store, deps.clock)
    kdf = KdfPool(settings.kdf_log2_n, settings.kdf_workers, settings.kdf_queue)
    throttle = LoginThrottle(settings.user_logins, settings.peer_logins)
    servicer = AuthzServicer(store, deps.clock, decisions, settings, kdf, throttle, mailer)
    spec = ServerSpec(register=lambda server: authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, server),
                      service_names=[SERVICE], policies=build_policies(store))
    return AuthzApp(spec, decisions, store, kdf)


if __name__ == "__main__":
    app.main("authz", build)
