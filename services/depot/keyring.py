"""The depot's key hierarchy around the barrier: the master key, the ring stored in the database, and sealing
and opening entries' secrets. The only module that calls the barrier; plaintext keys never leave it."""
from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.depot import barrier
from services.depot.model import SECRET_FIELD
from services.depot.settings import DepotSettings
from services.depot.store import Store
from services.kit.localsqlite import FALLBACK
from services.depot.tables import EntryRow, RingKeyRow
from services.kit.errors import Conflict, KeyUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
SEAL_ATTEMPTS = 20  # a write that met a worn key rotates it and runs again; concurrent writers may meet several

ACTIVE, DECRYPT_ONLY, RETIRED = "ACTIVE", "DECRYPT_ONLY", "RETIRED"


class SecretUnreadable(Exception):
    """A stored ciphertext or wrapped data key failed authentication, or names a ring key that does not exist."""


class KeyWorn(Exception):
    """Sealing found the active ring key at its usage limit; the write is rolled back, the key rotated, and the
    write run again (see KeyService.write_sealing)."""

    def __init__(self, version: int) -> None:
        super().__init__(f"ring key version {version} reached its usage limit")
        self.version = version


@dataclass(frozen=True)
class Sealed:
    """An entry's secret as stored: ciphertext, its data key wrapped by ring key `key_version`."""

    key_version: int
    wrapped_data_key: bytes
    ciphertext: bytes


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


def load_master_key(settings: DepotSettings) -> barrier.MasterKey:
    """The master key from its file; in dev a missing one is generated (loudly), production never does."""
    try:
        key = barrier.load_master_key(settings.master_key_file, profile=settings.profile,
                                      create_if_missing=settings.profile == barrier.PROFILE_DEV)
    except barrier.MasterKeyError as exc:
        raise SystemExit(f"depot: refusing to start, no usable master key, so no secret can be served: {exc}") \
            from None
    if key.generated:
        warning = (f"GENERATED A DEV MASTER KEY (id {key.key_id}) in {settings.master_key_file}: every secret in the "
                   "depot depends on this file. Fine on a laptop; never in production (RS_PROFILE=production "
                   "refuses it) - mount a real master key and set RS_DEPOT_MASTER_KEY_FILE.")
        logger.warning(warning)
        print(f"WARNING depot: {warning}", file=sys.stderr, flush=True)
    elif key.is_dev:
        logger.warning("the depot runs with a DEV master key (id %s); production refuses it", key.key_id)
    return key


class KeyService:
    """The ring keys (wrapped in the database, unwrapped in memory on use) and what is done with them."""

    def __init__(self, master: barrier.MasterKey, settings: DepotSettings) -> None:
        self.master = master
        self.settings = settings
        self.ring = barrier.KeyRing(master, usage_limit=settings.key_usage_limit)

    @property
    def master_key_id(self) -> str:
        return self.master.key_id

    async def load(self, store: Store, now: dt.datetime) -> None:
        """At start: read the ring (creating version 1 on first start) and prove the master key opens every
        ring key, else refuse to start."""
        async with store.read() as session:
            rows = list((await session.execute(select(RingKeyRow).order_by(RingKeyRow.version))).scalars())
        if not rows:
            try:
                await self.rotate(store, now)
            except Conflict:  # another process created version 1 at the same moment
                pass
            async with store.read() as session:
                rows = list((await session.execute(select(RingKeyRow).order_by(RingKeyRow.version))).scalars())
        for row in rows:
            try:
                self.ring.add(row.version, row.wrapped_key)
            except barrier.BarrierError:
                raise SystemExit(
                    f"depot: refusing to start: the master key (id {self.master.key_id}) cannot open ring key "
                    f"version {row.version} stored in the database; start with the master key the ring was "
                    "created with") from None

    async def _add_missing(self, session: AsyncSession, above: int) -> None:
        """Ring keys another process added since we last looked."""
        rows = (await session.execute(select(RingKeyRow).where(RingKeyRow.version > above)
                                      .order_by(RingKeyRow.version))).scalars()
        for row in rows:
            self.ring.add(row.version, row.wrapped_key)

    async def active_version(self, session: AsyncSession) -> int:
        newest = (await session.execute(select(func.max(RingKeyRow.version)))).scalar() or 0
        known = self.ring.current_version if len(self.ring) else 0
        if newest > known:
            await self._add_missing(session, known)
        return self.ring.current_version

    async def seal(self, session: AsyncSession, customer: str, system: str, entry_id: str, secret: str) -> Sealed:
        """Encrypt a secret under a fresh data key wrapped by the active ring key, in the caller's transaction,
        which also claims the encryption against the key's usage limit (KeyWorn when the key is worn: run the
        write through write_sealing, which rotates and runs it again)."""
        version = await self.active_version(session)
        await self._claim(session, version, 1)
        return self.seal_claimed(version, customer, system, entry_id, secret)

    def seal_claimed(self, version: int, customer: str, system: str, entry_id: str, secret: str) -> Sealed:
        """The encryption `seal` makes, once the caller's transaction has claimed it against ring key `version`
        (which must be loaded)."""
        ctx = entry_context(customer, system, entry_id)
        data_key = barrier.new_data_key()
        return Sealed(version, barrier.wrap_data_key(self.ring, version, data_key, ctx),
                      barrier.encrypt_field(data_key, ctx, SECRET_FIELD, version, secret))

    async def _claim(self, session: AsyncSession, version: int, encryptions: int) -> None:
        """Count `encryptions` under ring key `version` only if that keeps it within the usage limit. One
        conditional UPDATE: on PostgreSQL its row lock orders concurrent writers of every process, and each
        re-reads the count it is checked against, so no key is used past the limit; SQLite has one writer."""
        claimed = await session.execute(
            update(RingKeyRow).where(RingKeyRow.version == version,
                                     RingKeyRow.encryptions + encryptions <= self.settings.key_usage_limit)
            .values(encryptions=RingKeyRow.encryptions + encryptions))
        if claimed.rowcount != 1:
            raise KeyWorn(version)

    async def write_sealing(self, store: Store, now: Callable[[], dt.datetime],
                            work: Callable[[AsyncSession], Awaitable[T]],
                            local: Callable[[], T | object] | None = None) -> T:
        """Run a write that seals secrets; when it meets a worn ring key, rotate that key (once, whoever is
        first) and run the write again. `local`, if given, is the same write on the store's local SQLite
        connection (services.depot.local), tried first; FALLBACK from it runs `work` on the engine."""
        for _ in range(SEAL_ATTEMPTS):
            try:
                if local is not None:
                    done = await store.write_local(local)
                    if done is not FALLBACK:
                        return done  # type: ignore[return-value]
                return await store.write(work)
            except KeyWorn as worn:
                await self.rotate_worn(store, now(), worn.version)
        raise KeyUnavailable("the ring key was worn out by concurrent writes faster than it could be rotated; "
                             "try again")

    async def open(self, session: AsyncSession, row: EntryRow) -> str:
        """The plaintext secret of an entry; SecretUnreadable if anything about it fails authentication."""
        try:
            await self._ensure(session, row.key_version)
        except barrier.BarrierError:
            raise SecretUnreadable("the stored secret failed authentication") from None
        return self.open_loaded(row)

    def has_loaded(self, version: int) -> bool:
        """Whether ring key `version` is in memory (open_loaded needs no database read for it)."""
        return version in self.ring.versions()

    def open_loaded(self, row: EntryRow) -> str:
        """`open` for an entry whose ring key is already loaded (see has_loaded)."""
        try:
            ctx = entry_context(row.customer, row.system_number, row.entry_id)
            data_key = barrier.unwrap_data_key(self.ring, row.key_version, row.wrapped_data_key, ctx)
            return barrier.decrypt_field(data_key, ctx, SECRET_FIELD, row.key_version, row.secret_ciphertext)
        except barrier.BarrierError:
            raise SecretUnreadable("the stored secret failed authentication") from None

    async def reseal(self, session: AsyncSession, row: EntryRow, to_version: int) -> Sealed:
        """Move an entry to ring key `to_version`: its data key re-wrapped, its secret re-encrypted with the
        new version bound in (both authenticate on the way, so damage is found here)."""
        try:
            await self._ensure(session, row.key_version)
            ctx = entry_context(row.customer, row.system_number, row.entry_id)
            data_key = barrier.unwrap_data_key(self.ring, row.key_version, row.wrapped_data_key, ctx)
            secret = barrier.decrypt_field(data_key, ctx, SECRET_FIELD, row.key_version, row.secret_ciphertext)
            return Sealed(to_version, barrier.wrap_data_key(self.ring, to_version, data_key, ctx),
                          barrier.encrypt_field(data_key, ctx, SECRET_FIELD, to_version, secret))
        except barrier.DecryptionFailed:
            raise SecretUnreadable("the stored secret failed authentication") from None

    async def count(self, session: AsyncSession, version: int, encryptions: int) -> None:
        """Record encryptions made under ring key `version` (its usage limit and GetKeyStatus read them)."""
        await session.execute(update(RingKeyRow).where(RingKeyRow.version == version)
                              .values(encryptions=RingKeyRow.encryptions + encryptions))

    async def _ensure(self, session: AsyncSession, version: int) -> None:
        if version in self.ring.versions():
            return
        row = await session.get(RingKeyRow, version)
        if row is None:
            raise SecretUnreadable(f"ring key version {version} does not exist")
        self.ring.add(row.version, row.wrapped_key)

    async def rotate(self, store: Store, now: dt.datetime) -> RingKeyRow:
        """Add the next ring key; it becomes active. Stored first, used after."""
        row = await self._rotate(store, now, None)
        assert row is not None
        return row

    async def _rotate(self, store: Store, now: dt.datetime, replacing: int | None) -> RingKeyRow | None:
        """Add the next ring key; with `replacing`, only while that version is still the active one (None if
        another writer rotated it meanwhile)."""

        async def add(session: AsyncSession) -> tuple[RingKeyRow, bytes] | None:
            active = await self.active_version(session) if len(self.ring) else 0
            if replacing is not None and active != replacing:
                return None
            version = active + 1
            wrapped = self.ring.new_ring_key(version)
            row = RingKeyRow(version=version, wrapped_key=wrapped, create_time=now, encryptions=0)
            session.add(row)
            await session.flush()
            return row, wrapped

        try:
            added = await store.write(add)
        except IntegrityError:
            raise Conflict("another key rotation happened at the same moment; read the key status") from None
        if added is None:
            return None
        row, wrapped = added
        self.ring.add(row.version, wrapped)
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
        async with store.read() as session:
            active = await self.active_version(session)
            rows = list((await session.execute(select(RingKeyRow).order_by(RingKeyRow.version))).scalars())
            counts = dict((await session.execute(
                select(EntryRow.key_version, func.count()).group_by(EntryRow.key_version))).all())
        out = []
        for row in rows:
            entries = counts.get(row.version, 0)
            state = ACTIVE if row.version == active else DECRYPT_ONLY if entries else RETIRED
            out.append(KeyStatus(row.version, state, row.create_time, entries, row.encryptions))
        return out, active
