"""What the depot's use cases work with: its store, keys, log sealer, clock, settings and connections client."""
from __future__ import annotations

from dataclasses import dataclass

from services.depot.barrier import LogSealer, WebhookSecrets
from services.depot.connections_client import Connections
from services.depot.keyring import KeyService
from services.depot.settings import DepotSettings
from services.depot.store import Store
from services.kit.clock import Clock


@dataclass
class Depot:
    store: Store
    keys: KeyService
    sealer: LogSealer  # seals every log head a write moves (barrier.LogSealer)
    clock: Clock
    settings: DepotSettings
    connections: Connections
    webhook_secrets: WebhookSecrets | None = None  # derives each webhook's signing secret (barrier.WebhookSecrets)
