"""Row 1: one bit flipped in the nonce, the ciphertext, the tag or the wrapped data key of each stored entry
(written straight into the depot's database, as an attacker with database access would) is refused with
DATA_LOSS, never revealed as an altered plaintext, and every refusal is in the customer's log."""
from __future__ import annotations

import collections
import random

import grpc
from sqlalchemy import text

from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import barrier
from tests.proof.figures import size
from tests.proof.world import engine, entry_id, new_customer, outcome, planted, reason_of

ROW = 1
ENTRIES = size(40, 1000)
NONCE = slice(1, 1 + barrier.NONCE_SIZE)
REGIONS = ("nonce", "ciphertext", "tag", "wrapped key")


def flip_bit(blob: bytes, region: str, rng: random.Random) -> bytes:
    """`blob` (0x01 || nonce || ciphertext || tag) with one bit flipped in `region`."""
    body_end = len(blob) - barrier.TAG_SIZE
    if region == "nonce":
        index = rng.randrange(NONCE.start, NONCE.stop)
    elif region == "ciphertext":
        index = rng.randrange(NONCE.stop, body_end)
    elif region == "tag":
        index = rng.randrange(body_end, len(blob))
    else:  # anywhere in the wrapped data key: its nonce, the key's ciphertext or its tag
        index = rng.randrange(1, len(blob))
    data = bytearray(blob)
    data[index] ^= 1 << rng.randrange(8)
    return bytes(data)


def test_one_flipped_bit_is_refused_with_data_loss_and_logged(live, actors, rec):
    rng = random.Random(20260601)
    c = new_customer(actors)
    secrets = {}
    for _ in range(ENTRIES):
        secret = planted("row1")
        secrets[actors.entry(c.creator, c.system, secret=secret).name] = secret
    url = live.suite.db_url["depot"]
    names = list(secrets)
    region_of = {name: REGIONS[i % len(REGIONS)] for i, name in enumerate(names)}
    with engine(url).begin() as conn:
        stored = {row.entry_id: row for row in conn.execute(text(
            "SELECT entry_id, wrapped_data_key, secret_ciphertext FROM logon_data WHERE customer = :c"),
            {"c": c.number})}
        changes = []
        for name in names:
            row = stored[entry_id(name)]
            region = region_of[name]
            wrapped, cipher = bytes(row.wrapped_data_key), bytes(row.secret_ciphertext)
            if region == "wrapped key":
                wrapped = flip_bit(wrapped, region, rng)
            else:
                cipher = flip_bit(cipher, region, rng)
            changes.append({"id": row.entry_id, "wrapped": wrapped, "cipher": cipher})
        conn.execute(text("UPDATE logon_data SET wrapped_data_key = :wrapped, secret_ciphertext = :cipher "
                          "WHERE entry_id = :id"), changes)

    refused = collections.Counter()
    other: list[str] = []
    altered = leaked = 0
    for name in names:
        code, answer = outcome(actors.reveal, c.edit_all, name, "row 1")
        if code == grpc.StatusCode.DATA_LOSS and reason_of(answer) == "DATA_LOSS":
            refused[region_of[name]] += 1
        elif code == grpc.StatusCode.OK:
            altered += answer.secret != secrets[name]
            leaked += answer.secret == secrets[name]
        else:
            other.append(f"{name}: {code.name}")
    events = actors.events(c.edit_all, c.number)
    failed = collections.Counter(e.logon_data for e in events if e.action == dp.LOG_ACTION_DECRYPT_FAILED
                                 and e.outcome == dp.LOG_OUTCOME_FAILED)
    logged = sum(1 for name in names if failed[name] == 1)
    revealed = sum(1 for e in events if e.action == dp.LOG_ACTION_REVEAL)
    chain = actors.verify(c.edit_all, c.number)
    total = sum(refused.values())
    passed = total == len(names) and not altered and not leaked and logged == len(names) and not revealed \
        and chain.valid
    rec(f"{total:,}/{len(names):,} refused with DATA_LOSS ("
        + ", ".join(f"{region} {refused[region]}" for region in REGIONS)
        + f"); {altered} altered plaintexts; {logged:,}/{len(names):,} refusals logged (DECRYPT_FAILED); "
          f"log chain valid: {chain.valid}", passed,
        entries=len(names), refused=total, altered=altered, unaltered_revealed=leaked, logged=logged,
        other=other[:5])
    for name in names:  # damaged entries can still be deleted; leave no damage behind for later rows
        actors.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=name), metadata=c.creator.md)
    assert passed, (refused, altered, leaked, logged, other[:5], revealed, chain)
