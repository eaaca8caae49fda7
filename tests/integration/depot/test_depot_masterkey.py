"""Replacing the depot's master key (`python -m services.depot.masterkey`): every ring key re-wrapped and every
log head re-sealed under the new key in one transaction, every secret readable and every log verifying with the
new key and none with the old one; a second run changes nothing; a key that opens nothing, or the same key,
stops it with nothing changed; a head the current key did not seal stays unsealed."""
from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import barrier, masterkey
from services.depot.masterkeyfile import load_master_key
from services.depot.settings import DepotSettings
from tests.integration.depot.world import World, fresh_customer, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]


def new_key_file(path: Path) -> Path:
    path.write_bytes(b"rsmk1:" + base64.b64encode(os.urandom(32)) + b"\n")
    os.chmod(path, 0o600)
    return path


def ring(world: World) -> dict[int, bytes]:
    rows = sql(world.suite, "SELECT version, wrapped_key FROM ring_keys")
    return {row.version: bytes(row.wrapped_key) for row in rows}


def run_tool(world: World, current: Path, new: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RS_DEPOT_DATABASE_URL=world.suite.db_url["depot"], RS_DEPOT_MASTER_KEY_FILE=str(current),
               RS_VAR_DIR=str(world.suite.var), RS_PROFILE="dev")
    return subprocess.run([sys.executable, "-m", "services.depot.masterkey", "--new-key-file", str(new)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def start_depot(world: World, key_file: Path) -> None:
    base = DepotSettings.from_env(world.suite.config("depot"))
    if "depot" in world.suite.running:
        await world.suite.stop_service("depot")
    await world.suite.start_service("depot", settings=dataclasses.replace(base, background=False,
                                                                          master_key_file=key_file))


async def test_the_master_key_is_replaced_and_every_secret_stays_readable(world, tmp_path):
    entries = [await world.create("creator", secret=f"Before-Rotation-{i}") for i in range(2)]
    await world.depot.RotateKey(dp.RotateKeyRequest(), metadata=world.md("platform_admin"))
    entries.append(await world.create("creator", secret="After-Rotation-2"))  # under ring key 2
    old = DepotSettings.from_env(world.suite.config("depot")).master_key_file
    new = new_key_file(tmp_path / "new-master.key")
    before = ring(world)
    assert len(before) >= 2
    await world.suite.stop_service("depot")  # every replica stopped first
    try:
        done = run_tool(world, old, new)
        assert done.returncode == 0, done.stderr
        assert f"re-wrapped {len(before)} ring key(s)" in done.stdout
        heads = len(sql(world.suite, "SELECT customer FROM log_heads"))
        assert heads >= 1 and f"re-sealed {heads} log head(s)" in done.stdout and "left" not in done.stdout
        new_key = load_master_key(new, profile="dev", create_if_missing=False)
        assert new_key.key_id in done.stdout and "rsmk1:" not in done.stdout + done.stderr  # no key material
        after = ring(world)
        assert after.keys() == before.keys() and all(after[v] != before[v] for v in before)

        again = run_tool(world, old, new)  # harmless: everything is under the new key already
        assert again.returncode == 0, again.stderr
        assert f"re-wrapped 0 ring key(s)" in again.stdout and f"{len(before)} were under the new key" in again.stdout
        assert "re-sealed 0 log head(s)" in again.stdout
        assert ring(world) == after

        with pytest.raises(SystemExit, match="cannot open ring key version 1"):  # the old key opens nothing now
            await start_depot(world, old)
        await start_depot(world, new)
        for i, entry in enumerate(entries):
            secret = (await world.reveal("creator", entry.name)).secret
            assert secret == (f"Before-Rotation-{i}" if i < 2 else "After-Rotation-2")
        verdict = await world.depot.VerifyLog(dp.VerifyLogRequest(parent=f"customers/{world.customer}"),
                                              metadata=world.md("edit_all"))
        assert verdict.valid and verdict.events_checked >= 6, verdict  # 3 creates, 2 reveals... under the new seal
    finally:
        if "depot" not in world.suite.running:
            await start_depot(world, new)
    # put the suite back on the key its other tests use: the tool works both ways
    await world.suite.stop_service("depot")
    back = run_tool(world, new, old)
    assert back.returncode == 0, back.stderr
    await start_depot(world, old)
    assert (await world.reveal("creator", entries[0].name)).secret == "Before-Rotation-0"


async def test_a_key_that_opens_nothing_or_the_same_key_changes_nothing(world, tmp_path):
    old = DepotSettings.from_env(world.suite.config("depot")).master_key_file
    stranger, target = new_key_file(tmp_path / "stranger.key"), new_key_file(tmp_path / "target.key")
    before = ring(world)
    wrong = run_tool(world, stranger, target)  # "current" is not the key the ring is under
    assert wrong.returncode != 0
    assert "opens with neither the current master key" in wrong.stderr and "nothing was changed" in wrong.stderr
    same = run_tool(world, old, old)
    assert same.returncode != 0 and "the new master key is the current one" in same.stderr
    missing = run_tool(world, old, tmp_path / "absent.key")
    assert missing.returncode != 0 and "the new master key cannot be used" in missing.stderr
    assert ring(world) == before


async def test_rewrap_is_all_or_nothing_when_one_ring_key_opens_with_neither(world, tmp_path):
    """The one transaction: a ring key under a third key, after ones that could move, leaves all as they were."""
    settings = DepotSettings.from_env(world.suite.config("depot"))
    current = load_master_key(settings.master_key_file, profile="dev", create_if_missing=False)
    target = load_master_key(new_key_file(tmp_path / "t.key"), profile="dev", create_if_missing=False)
    stranger = load_master_key(new_key_file(tmp_path / "s.key"), profile="dev", create_if_missing=False)
    before = ring(world)
    newest = max(before)
    sql(world.suite, "UPDATE ring_keys SET wrapped_key = :blob WHERE version = :v",
        blob=barrier.KeyRing(stranger).new_ring_key(newest), v=newest)
    try:
        with pytest.raises(SystemExit, match=f"ring key version {newest} opens with neither"):
            masterkey.rewrap(world.suite.db_url["depot"], current, target)
        assert {v: b for v, b in ring(world).items() if v != newest} == \
            {v: b for v, b in before.items() if v != newest}
    finally:
        sql(world.suite, "UPDATE ring_keys SET wrapped_key = :blob WHERE version = :v", blob=before[newest], v=newest)


async def test_a_head_the_current_key_did_not_seal_is_left_unsealed(world, tmp_path):
    """Re-sealing never launders: a head changed outside the depot keeps failing VerifyLog under the new key."""
    settings = DepotSettings.from_env(world.suite.config("depot"))
    current = load_master_key(settings.master_key_file, profile="dev", create_if_missing=False)
    target = load_master_key(new_key_file(tmp_path / "t.key"), profile="dev", create_if_missing=False)
    tampered = await fresh_customer(world)
    await tampered.create("creator", secret="sealed-before")
    sql(world.suite, "UPDATE log_heads SET seal = :s WHERE customer = :c", s="0" * 64, c=tampered.customer)
    url = world.suite.db_url["depot"]
    done = masterkey.rewrap(url, current, target)
    try:
        assert done.unsealed == (tampered.customer,) and done.resealed >= 1
        heads = {row.customer: row for row in sql(world.suite, "SELECT * FROM log_heads")}
        assert heads[tampered.customer].seal == "0" * 64
        new_sealer = barrier.LogSealer(target)
        assert all(new_sealer.verifies(c, h.last_sequence, h.last_hash, h.seal) == (c != tampered.customer)
                   for c, h in heads.items())
    finally:
        back = masterkey.rewrap(url, target, current)  # the running depot's key again
        assert back.unsealed == (tampered.customer,)
