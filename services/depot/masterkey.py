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

from services.depot import barrier
from services.depot.masterkeyfile import load_master_key
from services.depot.settings import DepotSettings
from services.depot.store import OfflineTx, offline_transaction
from services.kit.config import ServiceConfig


@dataclass(frozen=True)
class Rewrapped:
    rewrapped: list[int]  # ring key versions moved to the new master key
    already: list[int]    # ring key versions that were under it already
    resealed: int = 0     # log heads sealed anew under the new master key
    unsealed: tuple[str, ...] = ()  # customers whose head the current key did not confirm (left as they were)


def rewrap(database_url: str, current: barrier.MasterKey, new: barrier.MasterKey) -> Rewrapped:
    """Every ring key of the database re-wrapped from `current` to `new`, and every log head sealed by `current`
    sealed anew by `new`, in one transaction."""
    if current.key_id == new.key_id:
        raise SystemExit("the new master key is the current one: nothing to do")
    with offline_transaction(database_url) as tx:
        stored = tx.ring_keys()
        if stored is None:
            raise SystemExit(f"no depot database at {tx.where} (start the depot once first)")
        if not stored:
            raise SystemExit("the depot's database holds no ring key yet (start the depot once first)")
        moved, already = [], []
        for version, blob in stored:
            if barrier.opens_ring_key(current, version, blob):
                try:
                    tx.set_wrapped_key(version, barrier.rewrap_ring_key(current, new, version, blob))
                except barrier.BarrierError:
                    raise SystemExit(f"ring key version {version} did not survive re-wrapping; nothing was "
                                     "changed") from None
                moved.append(version)
            elif barrier.opens_ring_key(new, version, blob):
                already.append(version)
            else:
                raise SystemExit(f"ring key version {version} opens with neither the current master key "
                                 f"(id {current.key_id}) nor the new one (id {new.key_id}); nothing was changed")
        resealed, unsealed = _reseal(tx, barrier.LogSealer(current), barrier.LogSealer(new))
    return Rewrapped(moved, already, resealed, unsealed)


def _reseal(tx: OfflineTx, current: barrier.LogSealer, new: barrier.LogSealer) -> tuple[int, tuple[str, ...]]:
    """Every log head the current key's seal confirms, sealed under the new key (in the caller's transaction)."""
    heads = tx.log_heads()
    if heads is None:
        raise SystemExit("the depot's database predates sealed log heads: start the depot once with this version "
                         "first (it seals them); nothing was changed")
    resealed, unsealed = 0, []
    for customer, sequence, last_hash, seal in heads:
        if current.verifies(customer, sequence, last_hash, seal):
            tx.set_seal(customer, new.seal(customer, sequence, last_hash))
            resealed += 1
        elif not new.verifies(customer, sequence, last_hash, seal):
            unsealed.append(customer)
    return resealed, tuple(unsealed)


def _load(path: Path, profile: str, what: str) -> barrier.MasterKey:
    try:
        return load_master_key(path, profile=profile, create_if_missing=False)
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
