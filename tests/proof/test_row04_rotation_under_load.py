"""Row 4: RotateKey while readers reveal and writers create and overwrite secrets, then the background
re-wrap: no read fails or returns a wrong secret, every entry ends on the newest ring key, and the older keys
protect nothing any more (GetKeyStatus: RETIRED)."""
from __future__ import annotations

import asyncio
import random
import time

import grpc

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.proof.figures import size
from tests.proof.world import SYSTEM_USER, new_customer, planted, sql

ROW = 4
ENTRIES = size(40, 500)
READERS, WRITERS = 6, 3
DURATION_S = size(3, 30)
ROTATIONS = size(2, 3)


def test_rotation_during_reads_and_writes_then_rewrap(live, actors, rec):
    c = new_customer(actors)
    secrets: dict[str, set[str]] = {}  # entry -> every secret it was given
    latest: dict[str, str] = {}
    owned: list[list[str]] = [[] for _ in range(WRITERS)]  # entries each writer overwrites, one writer each
    for i in range(ENTRIES):
        secret = planted("row4")
        name = actors.entry(c.creator, c.system, secret=secret).name
        secrets[name], latest[name] = {secret}, secret
        owned[i % WRITERS].append(name)
    first = actors.key_status().active_version
    live.restart_depot(background=True, sweep_interval_s=3600, rewrap_batch=size(10, 50))
    suite = live.suite
    stats = {"reads": 0, "failed_reads": 0, "wrong": 0, "writes": 0, "failed_writes": 0, "rotations": 0}
    errors: list[str] = []

    async def load() -> None:
        depot = suite.stub("depot")
        stop = time.monotonic() + DURATION_S
        rng = random.Random(4)

        async def reader() -> None:
            while time.monotonic() < stop:
                name = rng.choice(list(secrets))
                try:
                    answer = await depot.RevealLogonData(dp.RevealLogonDataRequest(name=name),
                                                         metadata=c.edit_all.md, timeout=30)
                    stats["reads"] += 1
                    if answer.secret not in secrets[name]:
                        stats["wrong"] += 1
                except grpc.RpcError as err:
                    stats["reads"] += 1
                    stats["failed_reads"] += 1
                    errors.append(f"read {err.code().name} {err.details()}")

        async def writer(mine: list[str]) -> None:
            while time.monotonic() < stop:
                try:
                    if rng.random() < 0.5:
                        secret = planted("row4w")
                        response = await depot.CreateLogonData(dp.CreateLogonDataRequest(
                            parent=c.system, secret=secret, logon_data=dp.LogonData(
                                kind=SYSTEM_USER, user_name="SUPPORT1", client="001",
                                expire_time=actors.expire_in(days=30))), metadata=c.creator.md, timeout=30)
                        name = response.logon_data.name
                        secrets[name], latest[name] = {secret}, secret
                        mine.append(name)
                    else:
                        name = rng.choice(mine)
                        secret = planted("row4o")
                        secrets[name].add(secret)  # a reader may see it from the moment it is sent
                        request = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=name), secret=secret)
                        request.update_mask.paths.append("secret")
                        await depot.UpdateLogonData(request, metadata=c.creator.md, timeout=30)
                        latest[name] = secret
                    stats["writes"] += 1
                except grpc.RpcError as err:
                    stats["failed_writes"] += 1
                    errors.append(f"write {err.code().name} {err.details()}")

        async def rotator() -> None:
            for _ in range(ROTATIONS):
                await asyncio.sleep(DURATION_S / (ROTATIONS + 1))
                await depot.RotateKey(dp.RotateKeyRequest(), metadata=suite.md(suite.admin_token), timeout=30)
                stats["rotations"] += 1

        await asyncio.gather(*[reader() for _ in range(READERS)], *[writer(m) for m in owned], rotator())

    try:
        live.run(load())
        status = actors.key_status()
        deadline = time.monotonic() + size(60, 300)
        while any(v.entry_count for v in status.versions if v.version != status.active_version) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
            status = actors.key_status()
    finally:
        live.restart_depot()
    active = status.active_version
    by_version = dict(sql(suite.db_url["depot"], "SELECT key_version, COUNT(*) FROM logon_data GROUP BY key_version"))
    off_active = sum(n for v, n in by_version.items() if v != active)
    retired = [v.version for v in status.versions if v.version != active and v.state == dp.KEY_STATE_RETIRED]
    olds = [v.version for v in status.versions if v.version != active]
    final_wrong = sum(1 for name, secret in latest.items() if actors.reveal(c.edit_all, name).secret != secret)
    passed = (stats["failed_reads"] == 0 and stats["wrong"] == 0 and stats["failed_writes"] == 0 and off_active == 0
              and retired == olds and final_wrong == 0 and stats["rotations"] == ROTATIONS and active > first)
    rec(f"{stats['reads']:,} reveals and {stats['writes']:,} writes during {stats['rotations']} rotations: "
        f"{stats['failed_reads']} failed reads, {stats['wrong']} wrong secrets, {stats['failed_writes']} failed "
        f"writes; after re-wrap {sum(by_version.values()):,} entries on key v{active}, {off_active} on older keys, "
        f"{len(retired)}/{len(olds)} older keys RETIRED; {final_wrong} of {len(latest):,} final reveals wrong",
        passed, **stats, entries=len(latest), off_active=off_active, errors=errors[:5])
    assert passed, (stats, by_version, active, retired, olds, final_wrong, errors[:5])
