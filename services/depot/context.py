"""What the depot's handlers work with."""
from __future__ import annotations

from dataclasses import dataclass

from services.depot.keyring import KeyService
from services.depot.remote import Connections
from services.depot.settings import DepotSettings
from services.depot.store import Store
from services.kit.clock import Clock


@dataclass
class Depot:
    store: Store
    keys: KeyService
    clock: Clock
    settings: DepotSettings
    connections: Connections
