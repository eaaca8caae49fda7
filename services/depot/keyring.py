"""The depot's ring keys: stored wrapped in the database, opened by the barrier, and what the depot does with
them - seal and open entries' secrets, count the encryptions they store against the usage limit, rotate. Every key
operation is a barrier call; no key is seen here."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from services.depot import barrier
from services.depot.model import SECRET_FIELD
from services.depot.settings import DepotSettings
from services.depot.store import EngineTx, Entry, Store, Tx
from services.depot.tables import RingKeyRow
from services.kit.errors import Conflict, KeyUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
SEAL_ATTEMPTS = 20  # a write that met a worn key rotates it and runs again; concurrent writers may meet several

ACTIVE, DECRYPT_ONLY, RETIRED = "ACTIVE", "DECRYPT_ONLY", "RETIRED"
Sealed = barrier.Sealed


class SecretUnreadable(Exception):
    """A stored ciphertext or wrapped data key failed authentication, or names a ring key that does not exist."""


class KeyWorn(Exception):
    """Sealing found no room left under the active ring key's usage limit for the write's encryptions; the write
    is rolled back, the key rotated, and the write run again (see KeyService.write_sealing)."""

    def __init__(self, version: int) -> None:
        super().__init__(f"ring key version {version} reached its usage limit")
        self.version = version


@dataclass(frozen=True)
class KeyStatus:
    version: int
    state: str
    create_time: dt.datetime
    entry_count: int
    encryptions: int


def entry_context(customer: str, system: str, entry_id: str) -> barrier.EntryContext:
    """What every ciphertext of an entry is bound to (with the field and the key version)."""
    return barrier.EntryContext(entry_id=entry_id, customer=f"customers/{customer}",
                                system=f"customers/{customer}/systems/{system}")


def _sealed(row: Entry) -> barrier.Sealed:
    return barrier.Sealed(row.key_version, row.wrapped_data_key, row.secret_ciphertext)


class KeyService:
    """The ring (wrapped keys from the database, opened in memory by the barrier) and the usage limit."""

    def __init__(self, master: barrier.MasterKey, settings: DepotSettings) -> None:
        self.master_key_id = master.key_id
        self.settings = settings
        self.ring = barrier.KeyRing(master)

    async def load(self, store: Store, now: dt.datetime) -> None:
        """At start: read the ring (creating version 1 on first start) and prove the master key opens every
        ring key, else refuse to start."""
        async with store.read() as tx:
            stored = await tx.ring_keys_above(0)
        if not stored:
            try:
                await self.rotate(store, now)
            except Conflict:  # another process created version 1 at the same moment
                pass
            async with store.read() as tx:
                stored = await tx.ring_keys_above(0)
        for version, wrapped in stored:
            try:
                self.ring.add(version, wrapped)
            except barrier.BarrierError:
                raise SystemExit(
                    f"depot: refusing to start: the master key (id {self.master_key_id}) cannot open ring key "
                    f"version {version} stored in the database; start with the master key the ring was "
                    "created with") from None

    async def active_version(self, tx: Tx) -> int:
        """The newest ring key, loaded from the database if another process added it."""
        newest = await tx.newest_ring_version()
        known = self.ring.current_version if len(self.ring) else 0
        if newest > known:
            for version, wrapped in await tx.ring_keys_above(known):
                self.ring.add(version, wrapped)
        return self.ring.current_version

    async def seal(self, tx: Tx, customer: str, system: str, entry_id: str, secret: str) -> Sealed:
        """Encrypt a secret under a fresh data key wrapped by the active ring key, in the caller's transaction,
        which first claims the encryption against the key's usage limit (KeyWorn when the key is worn: run the
        write through write_sealing, which rotates and runs it again)."""
        version = await self.active_version(tx)
        if not await tx.claim(version, 1, self.settings.key_usage_limit):
            raise KeyWorn(version)
        return barrier.seal_secret(self.ring, version, entry_context(customer, system, entry_id), SECRET_FIELD,
                                   secret)

    async def open(self, tx: Tx, row: Entry) -> str:
        """The plaintext secret of an entry; SecretUnreadable if anything about it fails authentication."""
        await self._ensure(tx, row.key_version)
        try:
            return barrier.open_secret(self.ring, entry_context(row.customer, row.system_number, row.entry_id),
                                       SECRET_FIELD, _sealed(row))
        except barrier.BarrierError:
            raise SecretUnreadable("the stored secret failed authentication") from None

    async def reseal(self, tx: Tx, row: Entry, to_version: int) -> Sealed:
        """Move an entry to ring key `to_version` (loaded): its data key re-wrapped, its secret re-encrypted with
        the new version bound in (both authenticate on the way, so damage is found here). The caller claims the
        encryptions."""
        await self._ensure(tx, row.key_version)
        try:
            return barrier.reseal_secret(self.ring, entry_context(row.customer, row.system_number, row.entry_id),
                                         SECRET_FIELD, _sealed(row), to_version)
        except barrier.DecryptionFailed:
            raise SecretUnreadable("the stored secret failed authentication") from None

    async def _ensure(self, tx: Tx, version: int) -> None:
        """Ring key `version` in memory (SecretUnreadable if it does not exist or does not open)."""
        if version in self.ring:
            return
        wrapped = await tx.ring_key(version) if version >= 1 else None
        if wrapped is None:
            raise SecretUnreadable(f"ring key version {version} does not exist")
        try:
            self.ring.add(version, wrapped)
        except barrier.BarrierError:
            raise SecretUnreadable(f"ring key version {version} does not open") from None

    async def write_sealing(self, store: Store, now: Callable[[], dt.datetime], work: Callable[[Tx], Awaitable[T]],
                            *, local: bool = False, validate_only: bool = False) -> T:
        """Run a write that encrypts under the active ring key; when it meets a worn key, rotate that key (once,
        whoever is first) and run the write again. `local`, `validate_only`: as Store.write."""
        for _ in range(SEAL_ATTEMPTS):
            try:
                return await store.write(work, local=local, validate_only=validate_only)
            except KeyWorn as worn:
                await self.rotate_worn(store, now(), worn.version)
        raise KeyUnavailable("the ring key was worn out by concurrent writes faster than it could be rotated; "
                             "try again")

    async def rotate(self, store: Store, now: dt.datetime) -> KeyStatus:
        """Add the next ring key, as requested (RotateKey, first start); it becomes active, and re-wrapping moves
        every entry off the older keys. Stored first, used after. Returns the new key's status."""
        row = await self._rotate(store, now, None)
        assert row is not None
        return KeyStatus(row.version, ACTIVE, row.create_time, 0, row.encryptions)

    async def _rotate(self, store: Store, now: dt.datetime, replacing: int | None) -> RingKeyRow | None:
        """Add the next ring key; with `replacing` (a worn key), only while that version is still the active one
        (None if another writer rotated it meanwhile)."""

        async def add(tx: EngineTx) -> RingKeyRow | None:
            active = await self.active_version(tx) if len(self.ring) else 0
            if replacing is not None and active != replacing:
                return None
            return await tx.add_ring_key(active + 1, self.ring.new_ring_key(active + 1), now,
                                         requested=replacing is None)

        row = await store.write(add)
        if row is None:
            return None
        self.ring.add(row.version, row.wrapped_key)
        logger.info("ring key version %d added and active", row.version)
        return row

    async def rotate_worn(self, store: Store, now: dt.datetime, version: int) -> None:
        """Rotate away from ring key `version`, which reached its usage limit (AES-GCM's bound for random
        nonces), unless another writer (of this or another process) already did."""
        try:
            if await self._rotate(store, now, version) is not None:
                logger.warning("ring key version %d reached its usage limit (%d encryptions); rotated", version,
                               self.settings.key_usage_limit)
        except Conflict:
            pass  # another process rotated it at the same moment

    async def status(self, store: Store) -> tuple[list[KeyStatus], int]:
        """Every ring key with the entries it still protects, and the active version."""
        async with store.read() as tx:
            active = await self.active_version(tx)
            rows = await tx.ring_rows()
            counts = await tx.entry_counts_by_version()
        out = []
        for row in rows:
            entries = counts.get(row.version, 0)
            state = ACTIVE if row.version == active else DECRYPT_ONLY if entries else RETIRED
            out.append(KeyStatus(row.version, state, row.create_time, entries, row.encryptions))
        return out, active
