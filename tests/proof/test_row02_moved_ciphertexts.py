"""Row 2: ciphertexts moved between entries, systems and customers, rows relabelled to another entry id,
system or customer, and the key-version column changed — all straight in the depot's database — are refused
(DATA_LOSS) every time: the associated data binds each ciphertext to its entry, customer, system, field and
key version. After each case the row is put back and reveals its own secret again (the control)."""
from __future__ import annotations

import collections
import random

import grpc

from services.depot.model import new_entry_id
from tests.proof.figures import size
from tests.proof.world import entry_id, new_customer, outcome, planted, sql

ROW = 2
PER_KIND = size(4, 40)
KINDS = ("whole secret from another entry of the system", "ciphertext only from another entry",
         "wrapped key only from another entry", "secret from an entry of another system",
         "secret from an entry of another customer", "row relabelled to another system",
         "row relabelled to another customer", "row relabelled to another entry id",
         "key-version column set to the other existing version", "key-version column set to a missing version")
COLUMNS = "entry_id, customer, system_number, installation, key_version, wrapped_data_key, secret_ciphertext"


def test_moved_ciphertexts_and_changed_key_versions_are_refused(live, actors, rec):
    rng = random.Random(2)
    url = live.suite.db_url["depot"]
    a, b = new_customer(actors), new_customer(actors)
    a2 = actors.system(a.number, a.ops, installation="20054321", sid="QAS")
    secrets: dict[str, str] = {}

    def make(customer, system, count):
        names = []
        for _ in range(count):
            secret = planted("row2")
            name = actors.entry(customer.edit_all, system, secret=secret).name
            secrets[name] = secret
            names.append(name)
        return names

    old_version = actors.key_status().active_version
    on_old = make(a, a.system, 6)
    new_version = actors.rotate().version
    on_new = make(a, a.system, 6)
    in_a2, in_b = make(a, a2, 4), make(b, b.system, 4)
    in_a1 = on_old + on_new

    def stored(name):
        [row] = sql(url, f"SELECT {COLUMNS} FROM logon_data WHERE entry_id = :id", id=entry_id(name))
        return dict(row._mapping)

    def put(eid, **columns):
        sets = ", ".join(f"{k} = :{k}" for k in columns)
        sql(url, f"UPDATE logon_data SET {sets} WHERE entry_id = :eid", eid=eid, **columns)

    def tamper(kind: str):
        """Apply one case; returns (the name to reveal now, who reveals, how to undo it)."""
        target = rng.choice(in_a1)
        source = rng.choice([n for n in in_a1 if n != target])
        t, s = stored(target), stored(source)
        undo = lambda: put(t["entry_id"], **t)  # noqa: E731
        if kind == KINDS[0]:
            put(t["entry_id"], key_version=s["key_version"], wrapped_data_key=s["wrapped_data_key"],
                secret_ciphertext=s["secret_ciphertext"])
        elif kind == KINDS[1]:
            put(t["entry_id"], secret_ciphertext=s["secret_ciphertext"])
        elif kind == KINDS[2]:
            put(t["entry_id"], wrapped_data_key=s["wrapped_data_key"])
        elif kind in (KINDS[3], KINDS[4]):
            other = stored(rng.choice(in_a2 if kind == KINDS[3] else in_b))
            put(other["entry_id"], key_version=t["key_version"], wrapped_data_key=t["wrapped_data_key"],
                secret_ciphertext=t["secret_ciphertext"])
            who = a if kind == KINDS[3] else b
            name = next(n for n in in_a2 + in_b if entry_id(n) == other["entry_id"])
            return name, who, lambda: put(other["entry_id"], **other)
        elif kind == KINDS[5]:
            number = a2.rsplit("/", 1)[1]
            put(t["entry_id"], system_number=number)
            return f"{a2}/logonData/{t['entry_id']}", a, undo
        elif kind == KINDS[6]:
            put(t["entry_id"], customer=b.number, system_number=b.system.rsplit("/", 1)[1])
            return f"{b.system}/logonData/{t['entry_id']}", b, undo
        elif kind == KINDS[7]:
            fresh = new_entry_id()
            put(t["entry_id"], entry_id=fresh)
            return f"{a.system}/logonData/{fresh}", a, lambda: put(fresh, **t)
        elif kind == KINDS[8]:
            put(t["entry_id"], key_version=new_version if t["key_version"] == old_version else old_version)
        else:
            put(t["entry_id"], key_version=new_version + 1000)
        return target, a, undo

    refused = collections.Counter()
    failures: list[str] = []
    controls_ok = 0
    cases = 0
    for kind in KINDS:
        for _ in range(PER_KIND):
            name, who, undo = tamper(kind)
            cases += 1
            code, answer = outcome(actors.reveal, who.edit_all, name, "row 2")
            undo()
            if code == grpc.StatusCode.DATA_LOSS:
                refused[kind] += 1
            else:
                failures.append(f"{kind}: {code.name}" + (" REVEALED" if code == grpc.StatusCode.OK else ""))
    for name in in_a1 + in_a2 + in_b:  # the control: every row put back reveals its own secret
        customer = b if name in in_b else a
        code, answer = outcome(actors.reveal, customer.edit_all, name, "control")
        controls_ok += code == grpc.StatusCode.OK and answer.secret == secrets[name]
    total = sum(refused.values())
    passed = total == cases and controls_ok == len(secrets)
    rec(f"{total}/{cases} refused with DATA_LOSS over {len(KINDS)} kinds of move or key-version change "
        f"({PER_KIND} each); {len(failures)} not refused; controls after undo: {controls_ok}/{len(secrets)} "
        "reveal their own secret", passed, cases=cases, refused=total, by_kind=dict(refused),
        failures=failures[:10])
    assert passed, (failures[:10], controls_ok, len(secrets))
