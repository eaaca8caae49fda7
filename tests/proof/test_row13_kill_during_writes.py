"""Row 13: the depot process is killed (SIGKILL) in the middle of hundreds of concurrent writes — new entries
and secret overwrites — round after round, and started again. After each restart: every write that was
acknowledged is there (a created entry reveals its secret, an overwritten one its new secret), with its log
event; every entry stored reveals (nothing half-written: no entry without its event, no secret that fails
to decrypt); the log verifies. Every acknowledged write is accounted for; unacknowledged ones may or may not
have happened, but never partly."""
from __future__ import annotations

import collections
import random
import time

import grpc

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.proof.figures import size
from tests.proof.world import SYSTEM_USER, Actors, new_customer, planted, reason_of

ROW = 13
ROUNDS = size(2, 10)
WRITES = size(60, 500)
OVERWRITE_SHARE = 0.2


def test_kill_9_during_concurrent_writes(procs, rec):
    rng = random.Random(13)
    actors = Actors(procs, via=None)  # straight to the depot: nothing in between to blur what it acknowledged
    c = new_customer(actors)
    depot = procs.stub("depot", via=None)
    secret_of: dict[str, str] = {}
    for _ in range(int(WRITES * OVERWRITE_SHARE) + 5):
        secret = planted("row13")
        secret_of[actors.entry(c.creator, c.system, secret=secret).name] = secret
    stats = collections.Counter()
    refused = collections.Counter()  # how the unacknowledged writes ended
    problems: list[str] = []
    timings: list[float] = []
    for round_ in range(ROUNDS):
        expire = actors.expire_in(days=10)
        existing = rng.sample(sorted(secret_of), int(WRITES * OVERWRITE_SHARE))
        futures = []
        for i in range(WRITES):
            secret = planted(f"r{round_}w{i}")
            if i < len(existing):
                request = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=existing[i]), secret=secret)
                request.update_mask.paths.append("secret")
                futures.append(("overwrite", existing[i], secret,
                                depot.UpdateLogonData.future(request, metadata=c.creator.md, timeout=60)))
            else:
                futures.append(("create", None, secret, depot.CreateLogonData.future(dp.CreateLogonDataRequest(
                    parent=c.system, secret=secret, logon_data=dp.LogonData(
                        kind=SYSTEM_USER, client="001", user_name="KILL9", expire_time=expire)),
                    metadata=c.creator.md, timeout=60)))
        rng.shuffle(futures)
        started = time.monotonic()
        cut_at = int(WRITES * rng.uniform(0.2, 0.7))  # kill once this many writes have been answered
        while sum(f.done() for *_, f in futures) < cut_at and time.monotonic() - started < 60:
            time.sleep(0.002)
        procs.kill("depot")
        acknowledged: list[tuple[str, str, str]] = []
        for kind, name, secret, future in futures:
            try:
                response = future.result()
            except grpc.RpcError as err:
                stats["not acknowledged"] += 1
                reason = reason_of(err)
                refused[f"{err.code().name} {reason}".strip() if reason else "cut off by the kill"] += 1
                continue
            stats[f"acknowledged {kind}"] += 1
            acknowledged.append((kind, response.logon_data.name if kind == "create" else name, secret))
        timings.append(time.monotonic() - started)
        procs.restart("depot")
        events = actors.events(c.edit_all, c.number)
        logged = collections.defaultdict(set)
        for event in events:
            logged[event.logon_data].add(event.action)
        for kind, name, secret in acknowledged:
            try:
                got = actors.reveal(c.edit_all, name, "row 13").secret
            except grpc.RpcError as err:
                problems.append(f"round {round_}: acknowledged {kind} of {name} lost ({err.code().name})")
                continue
            secret_of[name] = secret
            if got != secret:
                problems.append(f"round {round_}: acknowledged {kind} of {name} not what was written")
            wanted = dp.LOG_ACTION_CREATE if kind == "create" else dp.LOG_ACTION_SECRET_OVERWRITE
            if wanted not in logged[name]:
                problems.append(f"round {round_}: acknowledged {kind} of {name} has no log event")
        stored = []
        token = ""
        while True:
            page = depot.ListLogonData(dp.ListLogonDataRequest(parent=c.system, page_token=token, page_size=1000),
                                       metadata=c.edit_all.md)
            stored += [e.name for e in page.logon_data]
            token = page.next_page_token
            if not token:
                break
        for name in stored:
            if dp.LOG_ACTION_CREATE not in logged[name]:
                problems.append(f"round {round_}: stored entry {name} has no CREATE event (partial)")
            if name not in secret_of:  # created but not acknowledged: it must still be whole
                try:
                    secret_of[name] = actors.reveal(c.edit_all, name, "row 13").secret
                    stats["unacknowledged create that happened"] += 1
                except grpc.RpcError as err:
                    problems.append(f"round {round_}: stored entry {name} does not reveal ({err.code().name})")
        verdict = actors.verify(c.edit_all, c.number)
        if not verdict.valid:
            problems.append(f"round {round_}: the log does not verify: {verdict.problem}")
        stats["stored"] = len(stored)
    # finally every stored entry decrypts, with the secret last acknowledged or found
    undecryptable = 0
    for name, secret in secret_of.items():
        try:
            actors.reveal(c.edit_all, name, "row 13 final")
        except grpc.RpcError:
            undecryptable += 1
    acked = stats["acknowledged create"] + stats["acknowledged overwrite"]
    passed = not problems and undecryptable == 0 and stats["not acknowledged"] > 0 and acked > 0
    count = lambda *words: sum(1 for p in problems if any(w in p for w in words))  # noqa: E731
    rec(f"{ROUNDS} rounds of {WRITES} concurrent writes (creates and secret overwrites), depot killed with SIGKILL "
        f"when 20-70% were answered ({min(timings):.1f}-{max(timings):.1f} s in): {acked:,} acknowledged, "
        f"{stats['not acknowledged']:,} not (" + ", ".join(f"{k} {v:,}" for k, v in refused.most_common())
        + f"); {count('lost', 'not what was written')} acknowledged writes lost, "
        f"{count('no log event')} without their log event; {count('partial', 'does not reveal') + undecryptable} "
        f"partial entries ({undecryptable} of {len(secret_of):,} stored entries fail to decrypt); log verifies after all "
        f"{ROUNDS} restarts: {not count('does not verify')}", passed,
        stats=dict(stats), refused=dict(refused), problems=problems[:10])
    assert passed, (problems[:10], undecryptable, dict(stats))
