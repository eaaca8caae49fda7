"""A rollback can be noticed (issue 15 point 4): VerifyLog returns the head of a log that verifies, and with a
head the customer kept (`kept_head`) it finds a log that no longer extends it - put back to an earlier state of
itself, consistent and sealed, so that plain VerifyLog still says valid; or rewritten at the kept event and
sealed again by someone holding the master key. `rsctl log verify --since-head` / `--save-head` on top, through
the gateway when it exists (its pass-through carries the new fields)."""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import io
from pathlib import Path

import grpc
import pytest

from remotesupport.depot.v1 import depot_pb2 as dp
from rsctl.cli import main
from tests.helpers import expect_error, status_details
from tests.integration.depot.world import World, app, attacker, fresh_customer, relink, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")
HAS_GATEWAY = importlib.util.find_spec("gateway.server") is not None


async def verify(w: World, kept: dp.LogHead | None = None) -> dp.VerifyLogResponse:
    request = dp.VerifyLogRequest(parent=f"customers/{w.customer}")
    if kept is not None:
        request.kept_head.CopyFrom(kept)
    return await w.depot.VerifyLog(request, metadata=w.md("edit_all"))


async def log_of(world: World, events: int) -> World:
    """A fresh customer whose log holds `events` events (a create, then updates of its notes)."""
    w = await fresh_customer(world)
    entry = await w.create("creator", secret="rollback")
    for n in range(events - 1):
        entry = await w.update("creator", entry, ["notes"], notes=f"n{n}")
    return w


def stored_head(w: World) -> tuple:
    [head] = sql(w.suite, "SELECT last_sequence, last_hash, seal FROM log_heads WHERE customer = :c", c=w.customer)
    return tuple(head)


def roll_back(w: World, head: tuple) -> None:
    """Put the log back to the earlier state whose stored head (sequence, hash, seal) was `head`: the newer events
    deleted and the head row as it was when that state was sealed - consistent, and sealed by the depot."""
    sequence, last_hash, seal = head
    with attacker(w) as run:
        run("DELETE FROM log_events WHERE customer = :c AND sequence > :s", c=w.customer, s=sequence)
        run("UPDATE log_heads SET last_sequence = :s, last_hash = :h, seal = :seal WHERE customer = :c",
            s=sequence, h=last_hash, seal=seal, c=w.customer)


async def test_the_head_of_a_log_that_verifies_is_its_newest_event(world):
    w = await log_of(world, 3)
    events = await w.events()
    verdict = await verify(w)
    assert verdict == dp.VerifyLogResponse(valid=True, events_checked=3,
                                           head=dp.LogHead(sequence=3, hash=events[-1].hash))
    empty = await fresh_customer(world)  # no event: valid, and no head to keep
    assert await verify(empty) == dp.VerifyLogResponse(valid=True, events_checked=0)
    broken = await verify(empty, dp.LogHead(sequence=1, hash=events[0].hash))
    assert not broken.valid and broken.first_broken_sequence == 1 and "holds 0 events" in broken.problem


async def test_a_log_rolled_back_to_a_sealed_earlier_state_of_itself_does_not_extend_a_later_kept_head(world):
    w = await log_of(world, 3)
    early = (await verify(w)).head
    early_row = stored_head(w)
    [entry] = await w.list("creator")
    for _ in range(3):
        await w.reveal("creator", entry.name)
    since_early = await verify(w, early)
    assert since_early.valid and since_early.events_checked == 6 and since_early.head.sequence == 6
    late = since_early.head
    assert (await verify(w, late)).valid

    roll_back(w, early_row)

    plain = await verify(w)  # the earlier state is consistent and sealed: nothing else can tell
    assert plain == dp.VerifyLogResponse(valid=True, events_checked=3, head=early)
    verdict = await verify(w, late)
    assert (verdict.valid, verdict.first_broken_sequence, verdict.events_checked) == (False, 6, 3), verdict
    assert "holds 3 events" in verdict.problem and "rolled back or truncated" in verdict.problem
    assert not verdict.HasField("head")
    assert (await verify(w, early)).valid  # a rollback to a state after the newest kept head is not seen
    other = await verify(world)  # other customers' logs are untouched
    assert other.valid


async def test_a_log_rewritten_at_the_kept_event_and_sealed_again_does_not_extend_it(world):
    w = await log_of(world, 5)
    events = await w.events()
    kept = (await verify(w)).head
    assert kept == dp.LogHead(sequence=5, hash=events[-1].hash)
    sealer = app(w.suite).depot.sealer  # the master key: what the seal cannot defend against
    with attacker(w) as run:
        relink(run, w.customer, 3, detail="nothing happened")
        sequence, last_hash, _ = stored_head(w)
        run("UPDATE log_heads SET seal = :s WHERE customer = :c", s=sealer.seal(w.customer, sequence, last_hash),
            c=w.customer)

    plain = await verify(w)
    assert plain.valid and plain.head.sequence == 5 and plain.head.hash != kept.hash
    verdict = await verify(w, kept)
    assert (verdict.valid, verdict.first_broken_sequence) == (False, 5), verdict
    assert "rewritten at or before event 5" in verdict.problem and kept.hash[:16] in verdict.problem
    at_three = await verify(w, dp.LogHead(sequence=3, hash=events[2].hash))
    assert (at_three.valid, at_three.first_broken_sequence) == (False, 3)
    assert (await verify(w, dp.LogHead(sequence=2, hash=events[1].hash))).valid  # rewritten after it


async def test_a_break_of_the_chain_before_the_kept_event_is_reported_where_it_is(world):
    w = await log_of(world, 5)
    kept = (await verify(w)).head
    with attacker(w) as run:
        run("UPDATE log_events SET detail = 'edited' WHERE customer = :c AND sequence = 2", c=w.customer)
    verdict = await verify(w, kept)
    assert (verdict.valid, verdict.first_broken_sequence) == (False, 2) and "edited" in verdict.problem


HASH = "ab" * 32


@pytest.mark.parametrize("sequence, digest, fields", [
    (0, HASH, ["kept_head.sequence"]),
    (-3, HASH, ["kept_head.sequence"]),
    (1, "", ["kept_head.hash"]),
    (1, HASH.upper(), ["kept_head.hash"]),
    (1, HASH[:-1], ["kept_head.hash"]),
    (1, HASH + "0", ["kept_head.hash"]),
    (1, "g" * 64, ["kept_head.hash"]),
    (0, "", ["kept_head.sequence", "kept_head.hash"]),
], ids=["zero", "negative", "empty-hash", "upper-case", "short", "long", "not-hex", "both"])
async def test_a_malformed_kept_head_is_invalid_argument_naming_the_field(world, sequence, digest, fields):
    error = await expect_error(verify(world, dp.LogHead(sequence=sequence, hash=digest)),
                               grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [field for field, _ in status_details(error)[1]] == fields


# --- rsctl log verify --since-head / --save-head --------------------------------------------------------------
async def rsctl(w: World, addresses: dict[str, str], *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(main, list(args), stdin=io.StringIO(), stdout=out, stderr=err, environ={
        "RSCTL_TOKEN": w.tokens["edit_all"], "RSCTL_CONFIG_DIR": str(w.suite.tmp / "rsctl-rollback"), **addresses})
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


async def test_rsctl_keeps_a_head_and_exits_8_when_the_log_no_longer_extends_it(world, tmp_path: Path):
    if HAS_GATEWAY and "gateway" not in world.suite.running:
        await world.suite.start_service("gateway", build=importlib.import_module("gateway.server").build)
    if "gateway" in world.suite.running:
        addresses = {"RSCTL_ADDRESS": world.suite.addr["gateway"]}
    else:
        addresses = {f"RSCTL_{s.upper()}_ADDRESS": world.suite.addr[s] for s in ("authz", "connections", "depot")}
    w = await log_of(world, 2)
    early_row = stored_head(w)
    head_file = tmp_path / "head.txt"

    code, out, _ = await rsctl(w, addresses, "log", "verify", w.customer, "--save-head", str(head_file))
    first = head_file.read_text()
    assert code == 0 and f"Head: {first.strip()}" in out and first.startswith("2:") and len(first) == 2 + 64 + 1
    [entry] = await w.list("creator")
    await w.reveal("creator", entry.name)
    code, out, _ = await rsctl(w, addresses, "log", "verify", w.customer, "--since-head", f"@{head_file}",
                               "--save-head", str(head_file))
    assert code == 0 and "extends the head you kept (event 2)" in out and head_file.read_text().startswith("3:")
    latest = head_file.read_text().strip()
    code, out, _ = await rsctl(w, addresses, "--json", "log", "verify", w.customer, "--since-head", latest.upper())
    assert code == 0 and '"sequence": "3"' in out and latest.split(":")[1] in out

    roll_back(w, early_row)
    assert (await rsctl(w, addresses, "log", "verify", w.customer))[0] == 0  # plain verify cannot tell
    code, out, _ = await rsctl(w, addresses, "log", "verify", w.customer, "--since-head", f"@{head_file}",
                               "--save-head", str(head_file))
    assert code == 8 and "BROKEN at event 3" in out and "rolled back or truncated" in out, out
    assert head_file.read_text().strip() == latest  # a log that does not verify never replaces the kept head
    assert (await rsctl(w, addresses, "log", "verify", w.customer, "--since-head", latest))[0] == 8

    code, _, err = await rsctl(w, addresses, "log", "verify", w.customer, "--since-head", "0:" + HASH)
    assert code == 2 and "is not a head" in err
    code, _, err = await rsctl(w, addresses, "log", "verify", w.customer, "--since-head", f"@{tmp_path / 'none'}")
    assert code == 1 and "cannot read head file" in err
    (tmp_path / "junk.txt").write_text("not a head\n")
    code, _, err = await rsctl(w, addresses, "log", "verify", w.customer, "--since-head", f"@{tmp_path / 'junk.txt'}")
    assert code == 2 and "does not hold a head" in err
