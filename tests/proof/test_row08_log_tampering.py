"""Row 8: a customer's log of 10,000 events (some from real calls, the rest appended by the depot's own
audit.append, in its own transactions); then, one case at a time, one event is edited (each column in turn,
or its text cut short), deleted, swapped with another, or the log is truncated at it — straight in the
database. VerifyLog must report the first broken event at exactly that position, every time; after each case
the rows are put back and the log verifies again (the control)."""
from __future__ import annotations

import collections
import random

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.depot import audit
from tests.proof.figures import size
from tests.proof.world import engine, new_customer, planted

ROW = 8
EVENTS = size(300, 10_000)
PER_KIND = size(10, 50)
EDITABLE = ("detail", "actor", "action", "outcome", "event_time", "request_id", "system", "logon_data", "incident",
            "hash", "previous_hash", "sequence", "customer")
ACTIONS = (audit.CREATE, audit.REVEAL, audit.UPDATE, audit.SECRET_OVERWRITE, audit.REVEAL_DENIED, audit.DELETE)


def fill(live, customer: str, system: str, count: int) -> None:
    """Append `count` events to the customer's log with the depot's own code, 500 per transaction."""
    depot = live.depot_app().depot

    async def append_all() -> None:
        left, n = count, 0
        while left > 0:
            batch = min(500, left)

            async def work(tx, start=n, batch=batch):
                for i in range(start, start + batch):
                    await audit.append(tx, depot.sealer, customer, audit.Event(
                        ACTIONS[i % len(ACTIONS)], f"users/S{i % 97:010d}",
                        audit.DENIED if ACTIONS[i % len(ACTIONS)] == audit.REVEAL_DENIED else audit.SUCCESS,
                        system=system, logon_data=f"{system}/logonData/{i:032x}", detail=f"reason: proof event {i}"),
                        depot.clock.now())
            await depot.store.write(work)
            left, n = left - batch, n + batch
    live.run(append_all())


def test_any_tampered_event_is_found_at_its_position(live, actors, rec):
    c = new_customer(actors)
    other = new_customer(actors)
    for _ in range(3):  # a few events from real calls first
        entry = actors.entry(c.creator, c.system, secret=planted("row8"))
        actors.reveal(c.creator, entry.name, "row 8")
    head = len(actors.events(c.edit_all, c.number))
    fill(live, c.number, c.system, EVENTS - head)
    n = len(actors.events(c.edit_all, c.number))
    assert n == EVENTS and actors.verify(c.edit_all, c.number).valid
    eng = engine(live.suite.db_url["depot"])

    def rows(where: str, **params) -> list[dict]:
        with eng.begin() as conn:
            found = conn.execute(text(f"SELECT * FROM log_events WHERE customer = :c AND {where} ORDER BY sequence"),
                                 {"c": c.number, **params})
            return [dict(r._mapping) for r in found]

    def execute(statement: str, params=None) -> None:
        with eng.begin() as conn:
            conn.execute(text(statement), params or {})

    def reinsert(saved: list[dict]) -> None:
        columns = list(saved[0])
        execute(f"INSERT INTO log_events ({', '.join(columns)}) VALUES ({', '.join(':' + k for k in columns)})", saved)

    def edited(value, column: str):
        if column == "event_time":  # one microsecond later (SQLite hands the column back as text)
            if isinstance(value, str):
                digits = [i for i, ch in enumerate(value) if ch.isdigit()]
                last = digits[-1] if "+" not in value[-6:] else [i for i in digits if i < value.rindex("+")][-1]
                return value[:last] + str((int(value[last]) + 1) % 10) + value[last + 1:]
            return value.replace(microsecond=(value.microsecond + 1) % 1_000_000)
        if column == "sequence":
            return value + 10 * EVENTS
        if column == "customer":
            return other.number
        if column in ("action",):
            return audit.DELETE if value != audit.DELETE else audit.CREATE
        if column in ("outcome",):
            return audit.FAILED if value != audit.FAILED else audit.SUCCESS
        if column in ("hash", "previous_hash"):
            return (value or "0" * 64)[:-1] + ("0" if (value or "x")[-1] != "0" else "1")
        return (value[:-1] if len(value) > 1 else value + "x") if value else "x"

    # the database itself refuses to change or delete a log event; an attacker with DDL rights lifts that first
    [first] = rows("sequence = 1")
    guarded = 0
    for statement in ("UPDATE log_events SET detail = 'x' WHERE pk = :pk", "DELETE FROM log_events WHERE pk = :pk"):
        try:
            execute(statement, {"pk": first["pk"]})
        except DBAPIError:
            guarded += 1
    sqlite = live.backend == "sqlite"
    if sqlite:
        execute("DROP TRIGGER log_events_no_update")
        execute("DROP TRIGGER log_events_no_delete")
    else:
        execute("ALTER TABLE log_events DISABLE TRIGGER USER")
    rng = random.Random(8)

    def positions(k: int) -> list[int]:
        edges = [1, 2, n - 1, n]
        return (edges + [rng.randint(1, n) for _ in range(k)])[:k]

    cases = []
    for i, seq in enumerate(positions(PER_KIND)):
        cases.append(("edit", seq, EDITABLE[i % len(EDITABLE)]))
    cases += [("delete", seq, None) for seq in positions(PER_KIND)]
    cases += [("reorder", seq, None) for seq in positions(PER_KIND)]
    cases += [("truncate", seq, None) for seq in positions(PER_KIND)]
    found = collections.Counter()
    wrong: list[str] = []
    for kind, seq, column in cases:
        [event] = rows("sequence = :s", s=seq)
        expected = seq
        if kind == "edit":
            execute(f"UPDATE log_events SET {column} = :v WHERE pk = :pk", {"v": edited(event[column], column),
                                                                           "pk": event["pk"]})
            undo = lambda e=event, col=column: execute(  # noqa: E731
                f"UPDATE log_events SET {col} = :v WHERE pk = :pk", {"v": e[col], "pk": e["pk"]})
        elif kind == "delete":
            execute("DELETE FROM log_events WHERE pk = :pk", {"pk": event["pk"]})
            undo = lambda e=event: reinsert([e])  # noqa: E731
        elif kind == "reorder":
            partner = seq + 1 if seq < n and rng.random() < 0.5 else \
                rng.choice([s for s in range(1, n + 1) if s != seq])
            [other_event] = rows("sequence = :s", s=partner)
            expected = min(seq, partner)
            swap = "UPDATE log_events SET sequence = :to WHERE pk = :pk"
            execute(swap, {"to": -1, "pk": event["pk"]})
            execute(swap, {"to": seq, "pk": other_event["pk"]})
            execute(swap, {"to": partner, "pk": event["pk"]})

            def undo(e=event, o=other_event):
                execute(swap, {"to": -1, "pk": e["pk"]})
                execute(swap, {"to": o["sequence"], "pk": o["pk"]})
                execute(swap, {"to": e["sequence"], "pk": e["pk"]})
        else:
            saved = rows("sequence >= :s", s=seq)
            execute("DELETE FROM log_events WHERE customer = :c AND sequence >= :s", {"c": c.number, "s": seq})
            undo = lambda saved=saved: reinsert(saved)  # noqa: E731
        verdict = actors.verify(c.edit_all, c.number)
        undo()
        label = f"{kind}{' ' + column if column else ''} at {seq}"
        if not verdict.valid and verdict.first_broken_sequence == expected:
            found[kind] += 1
        else:
            wrong.append(f"{label}: valid={verdict.valid} at {verdict.first_broken_sequence} ({verdict.problem})")
    if sqlite:
        for verb in ("UPDATE", "DELETE"):
            execute(f"CREATE TRIGGER log_events_no_{verb.lower()} BEFORE {verb} ON log_events "
                    f"BEGIN SELECT RAISE(ABORT, 'the depot log is append-only'); END")
    else:
        execute("ALTER TABLE log_events ENABLE TRIGGER USER")
    final = actors.verify(c.edit_all, c.number)
    other_ok = actors.verify(other.edit_all, other.number).valid
    passed = not wrong and final.valid and final.events_checked == n and other_ok and guarded == 2
    rec(f"the database refuses UPDATE and DELETE of log events ({guarded}/2); with that lifted (DDL rights), "
        f"{sum(found.values())}/{len(cases)} tamperings of a {n:,}-event log reported at the right position ("
        + ", ".join(f"{k} {found[k]}/{PER_KIND}" for k in ("edit", "delete", "reorder", "truncate"))
        + f"; edits over {len(EDITABLE)} columns); after putting each back the log verifies: {final.valid}",
        passed, events=n, cases=len(cases), found=dict(found), wrong=wrong[:10])
    assert passed, wrong[:10]
