"""Replacing the depot's master key: `python -m services.depot.masterkey --new-key-file PATH`.

The master key wraps the ring keys stored in the depot's database (every entry's data key is wrapped by a ring
key) and seals each customer's log head (barrier.LogSealer), so replacing it means re-wrapping each ring key
and re-sealing each head under the new master key; no entry or event is touched. A head whose seal the
current key does not confirm is left as it is: it was changed outside the depot, and VerifyLog keeps saying so.

Stop every depot replica first, run this with the depot's own environment (RS_DEPOT_DATABASE_URL,
RS_DEPOT_MASTER_KEY_FILE: the current key, RS_PROFILE), then point RS_DEPOT_MASTER_KEY_FILE at the new key
and start the depot; it proves at start that the key opens every ring key.

All or nothing, in one transaction: a ring key that opens with neither key stops the command with nothing
changed. Running it again is harmless: ring keys and heads already under the new key are left as they are
(so it also finishes a run that was interrupted, or a ring key a depot added with the old key meanwhile).
No key material is ever printed."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from services.depot import barrier
from services.depot.settings import DepotSettings
from services.depot.tables import LogHeadRow, RingKeyRow
from services.kit.config import ServiceConfig
from services.kit.db import sync_url


@dataclass(frozen=True)
class Rewrapped:
    rewrapped: list[int]  # ring key versions moved to the new master key
    already: list[int]    # ring key versions that were under it already
    resealed: int = 0     # log heads sealed anew under the new master key
    unsealed: tuple[str, ...] = ()  # customers whose head the current key did not confirm (left as they were)


def rewrap(database_url: str, current: barrier.MasterKey, new: barrier.MasterKey) -> Rewrapped:
    """Every ring key of the database re-wrapped from `current` to `new`, in one transaction."""
    if current.key_id == new.key_id:
        raise SystemExit("the new master key is the current one: nothing to do")
    ring = RingKeyRow.__table__
    engine = sa.create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            try:
                rows = conn.execute(sa.select(ring.c.version, ring.c.wrapped_key).order_by(ring.c.version)
                                    .with_for_update()).all()
            except sa.exc.DBAPIError:
                raise SystemExit(f"no depot database at {engine.url.render_as_string(hide_password=True)} "
                                 "(start the depot once first)") from None
            if not rows:
                raise SystemExit("the depot's database holds no ring key yet (start the depot once first)")
            moved, already = [], []
            for version, blob in rows:
                try:
                    ring_key = barrier.unwrap_ring_key(current, version, blob)
                except barrier.BarrierError:
                    if _opens(new, version, blob):
                        already.append(version)
                        continue
                    raise SystemExit(f"ring key version {version} opens with neither the current master key "
                                     f"(id {current.key_id}) nor the new one (id {new.key_id}); nothing was "
                                     "changed") from None
                wrapped = barrier.wrap_ring_key(new, version, ring_key)
                if barrier.unwrap_ring_key(new, version, wrapped) != ring_key:  # never store what cannot be opened
                    raise SystemExit(f"ring key version {version} did not survive re-wrapping; nothing was changed")
                conn.execute(sa.update(ring).where(ring.c.version == version).values(wrapped_key=wrapped))
                moved.append(version)
            resealed, unsealed = _reseal(conn, barrier.LogSealer(current), barrier.LogSealer(new))
    finally:
        engine.dispose()
    return Rewrapped(moved, already, resealed, unsealed)


def _reseal(conn, current: barrier.LogSealer, new: barrier.LogSealer) -> tuple[int, tuple[str, ...]]:
    """Every log head the current key's seal confirms, sealed under the new key (in the caller's transaction)."""
    heads = LogHeadRow.__table__
    resealed, unsealed = 0, []
    try:
        stored = conn.execute(sa.select(heads.c.customer, heads.c.last_sequence, heads.c.last_hash, heads.c.seal)
                              .order_by(heads.c.customer).with_for_update()).all()
    except sa.exc.DBAPIError:
        raise SystemExit("the depot's database predates sealed log heads: start the depot once with this version "
                         "first (it seals them); nothing was changed") from None
    for customer, sequence, last_hash, seal in stored:
        if current.verifies(customer, sequence, last_hash, seal):
            conn.execute(sa.update(heads).where(heads.c.customer == customer)
                         .values(seal=new.seal(customer, sequence, last_hash)))
            resealed += 1
        elif not new.verifies(customer, sequence, last_hash, seal):
            unsealed.append(customer)
    return resealed, tuple(unsealed)


def _opens(master: barrier.MasterKey, version: int, blob: bytes) -> bool:
    try:
        barrier.unwrap_ring_key(master, version, blob)
    except barrier.BarrierError:
        return False
    return True


def _load(path: Path, profile: str, what: str) -> barrier.MasterKey:
    try:
        return barrier.load_master_key(path, profile=profile, create_if_missing=False)
    except barrier.MasterKeyError as exc:
        raise SystemExit(f"the {what} master key cannot be used: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.depot.masterkey",
                                     description="Re-wrap the depot's ring keys and re-seal its log heads under a new master key.",
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-key-file", required=True, type=Path, metavar="PATH",
                        help="the new master key (one line rsmk1:<base64 of 32 bytes>, mode 0400 or 0600)")
    args = parser.parse_args(argv)
    config = ServiceConfig.from_env("depot")
    settings = DepotSettings.from_env(config)
    current = _load(settings.master_key_file, settings.profile, "current")
    new = _load(args.new_key_file, settings.profile, "new")
    done = rewrap(config.database_url, current, new)
    print(f"re-wrapped {len(done.rewrapped)} ring key(s) from master key {current.key_id} to {new.key_id}"
          + (f"; {len(done.already)} were under the new key already" if done.already else "")
          + f"; re-sealed {done.resealed} log head(s)"
          + (f"; left {len(done.unsealed)} log head(s) whose seal the current key does not confirm (VerifyLog "
             f"reports them): customers {', '.join(done.unsealed)}" if done.unsealed else "")
          + f". Now set RS_DEPOT_MASTER_KEY_FILE={args.new_key_file} for every depot replica and start them; "
            "keep the old key until they run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
