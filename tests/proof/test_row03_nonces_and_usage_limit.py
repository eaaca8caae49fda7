"""Row 3: 100,000 encryptions under one ring key give 100,000 different nonces (the barrier draws a fresh
96-bit nonce for each); every nonce stored in the depot's database is unique too; and the configurable
per-key usage limit (RS_DEPOT_KEY_USAGE_LIMIT) rotates the ring before a key passes it, also under
concurrent writes."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from services.depot import barrier
from tests.proof.figures import size
from tests.proof.world import new_customer, planted, sql

ROW = 3
ENCRYPTIONS = size(2_000, 100_000)
LIMIT = size(10, 50)
LIMITED_WRITES = size(45, 500)
WRITERS = 8


def nonce(blob: bytes) -> bytes:
    return bytes(blob[1:1 + barrier.NONCE_SIZE])


def test_no_nonce_repeats_under_one_key(live, actors, rec):
    master = barrier.master_key_from_bytes(bytes(range(32)))
    ring = barrier.KeyRing(master)
    ring.add(1, ring.new_ring_key(1))
    ring.add(2, ring.new_ring_key(2))
    ctx = barrier.EntryContext(entry_id="proof-row-3", customer="customers/1", system="customers/1/systems/1")
    # each seal wraps a fresh data key under ring key 1; each reseal of one sealed secret encrypts the field
    # again under its one data key (the entry keeps its data key when it moves to ring key 2)
    wrapped = {nonce(barrier.seal_secret(ring, 1, ctx, "secret", "s").wrapped_data_key) for _ in range(ENCRYPTIONS)}
    sealed = barrier.seal_secret(ring, 1, ctx, "secret", "s")
    fields = {nonce(barrier.reseal_secret(ring, ctx, "secret", sealed, 2).ciphertext) for _ in range(ENCRYPTIONS)}
    # and what the running depot stored: every nonce of every blob in its database
    c = new_customer(actors)
    for _ in range(size(50, 1000)):
        actors.entry(c.creator, c.system, secret=planted("row3"))
    rows = sql(live.suite.db_url["depot"], "SELECT wrapped_data_key, secret_ciphertext FROM logon_data")
    ring_rows = sql(live.suite.db_url["depot"], "SELECT wrapped_key FROM ring_keys")
    stored = [nonce(r.wrapped_data_key) for r in rows] + [nonce(r.secret_ciphertext) for r in rows] + \
        [nonce(r.wrapped_key) for r in ring_rows]
    repeats = (ENCRYPTIONS - len(wrapped)) + (ENCRYPTIONS - len(fields)) + (len(stored) - len(set(stored)))
    passed = repeats == 0
    rec(f"{ENCRYPTIONS:,} data-key wraps under one ring key and {ENCRYPTIONS:,} field encryptions under one "
        f"data key: {len(wrapped):,} and {len(fields):,} distinct nonces; {len(stored):,} nonces stored in the "
        f"depot database: {len(set(stored)):,} distinct; {repeats} repeated", passed, part="nonces",
        encryptions=ENCRYPTIONS, stored=len(stored), repeats=repeats)
    assert passed


def test_the_usage_limit_rotates_the_ring(live, actors, rec):
    c = new_customer(actors)
    first = actors.key_status().active_version
    live.restart_depot(key_usage_limit=LIMIT)
    try:
        def write(i: int) -> int:
            return actors.entry(c.creator, c.system, secret=planted(f"limit{i}")).key_version

        with ThreadPoolExecutor(WRITERS) as pool:
            versions = list(pool.map(write, range(LIMITED_WRITES)))
    finally:
        live.restart_depot()
    status = {v.version: v for v in actors.key_status().versions if v.version > first}  # made by this test
    over = {v: s.encryptions for v, s in status.items() if s.encryptions > LIMIT}
    idle = [v for v, s in status.items() if s.encryptions == 0]  # a rotation nobody needed (a burst)
    rotations = len(status)
    needed = -(-LIMITED_WRITES // LIMIT)  # the key in use at the start is worn at once (its earlier use)
    passed = not over and not idle and rotations >= needed and set(versions) == set(status)
    rec(f"limit {LIMIT} encryptions per ring key, {LIMITED_WRITES} writes by {WRITERS} concurrent writers: "
        f"{rotations} automatic rotations ({needed} needed), most encryptions under one key "
        f"{max(s.encryptions for s in status.values())}, {len(over)} keys over the limit, {len(idle)} "
        "rotated without use", passed,
        part="usage limit", limit=LIMIT, writes=LIMITED_WRITES, rotations=rotations, over=over, idle=idle)
    assert passed, (over, idle, rotations, needed)
