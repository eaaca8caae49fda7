"""The proof rows (what each tests, its target) and the recorder of what a run measured.

Each proof test calls `record(...)` once per backend with the figure it measured, *before* asserting the
target, so a failing row is recorded with its figure too. Records are JSON lines appended to
RS_PROOF_RESULTS (default tests/proof/results/latest.jsonl, not committed); `python -m tests.proof.report`
turns the newest record of each row and backend into SECURITY.md's results table."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import threading
import uuid
from pathlib import Path

from tests.proof.figures import MODE

RESULTS = Path(os.environ.get("RS_PROOF_RESULTS", "") or Path(__file__).parent / "results" / "latest.jsonl")

# row -> (test, target), as in issue 6
ROWS: dict[int, tuple[str, str]] = {
    1: ("flip one bit in the nonce, ciphertext, tag or wrapped key of each of >=1,000 stored entries",
        "100% refused with DATA_LOSS, 0 altered plaintexts, each refusal logged"),
    2: ("move ciphertexts between entries, systems and customers; change the key-version column",
        "100% refused"),
    3: ("100,000 encryptions under one key",
        "0 repeated nonces; a configurable per-key usage limit triggers rotation"),
    4: ("RotateKey during concurrent reads and writes, then re-wrap",
        "0 failed reads, every entry ends on the new version, the old one can be retired"),
    5: ("start the depot with no key, a wrong key, a short key, the dev key under the production profile",
        "refuses to serve secrets with a clear message; 0 plaintext served"),
    6: ("the log cannot be written (read-only database, full disk simulated)",
        "every reveal and change refused; 0 secrets returned"),
    7: ("10,000 mixed calls with unique planted secrets and user names, including denied and malformed calls",
        "0 occurrences of any planted secret in every log, stdout/stderr, error detail, trace and database file"),
    8: ("edit, delete, reorder or truncate any one event of a 10,000-event log",
        "VerifyLog reports it at the right position, 100%"),
    9: ("authz killed, erroring, or slower than the deadline",
        "100% of calls refused, 0 allowed; service recovers on its own when authz returns"),
    10: ("property-based authorization matrix (principal kind x authorization x method x own/other entry x "
         "customer A/B x assignment and restricted view), against a reference table kept in the tests; odd "
         "method paths", "0 mismatches over >=10,000 generated cases"),
    11: ("revoke an authorization, log out, disable a user, end an assignment - then retry 1,000 times",
         "0 successful calls after the change commits"),
    12: ("time boundaries with an injected clock: windows, entry expiry, token expiry",
         "0 access outside the allowed interval; expired entries unreadable at the instant; purged within one "
         "sweep"),
    13: ("kill -9 the depot during >=500 concurrent writes, 10 rounds, SQLite and PostgreSQL",
         "0 partial entries (every stored entry decrypts), 0 acknowledged writes lost, each with its log event"),
    14: ("transport abuse: oversize message, no or garbage token, no deadline, a flood of concurrent streams",
         "RESOURCE_EXHAUSTED / UNAUTHENTICATED / a server default deadline; the server keeps serving normal "
         "clients"),
    15: ("generated requests (hypothesis) for every RPC of every service, >=200 each in CI, far more in make "
         "proof; forged page tokens for every List RPC; request bytes that are not the request message for every RPC",
         "0 INTERNAL, 0 crashes, 0 planted secrets in error details; every forged page token OK or INVALID_ARGUMENT, "
         "every request that does not decode INVALID_ARGUMENT naming its method"),
    16: ("every sequence of up to 4 identity operations by the platform admin and by a user administrator, on "
         "both backends",
         "0 end in a revealed secret or another principal's credential"),
}

_lock = threading.Lock()
SESSION = uuid.uuid4().hex  # one pytest session; the report shows each test's figures of its newest session


def record(row: int, backend: str, figure: str, passed: bool, *, test: str = "", seconds: float | None = None,
           part: str = "", **measures: object) -> dict:
    """Append one measured figure of `test` (a test function). `part` orders several records of one test (they
    are joined in the table); `measures` are the raw numbers behind the figure."""
    entry = {
        "row": row, "backend": backend, "mode": MODE, "test": test, "part": part, "session": SESSION,
        "figure": figure, "passed": bool(passed),
        "seconds": None if seconds is None else round(seconds, 2), "measures": measures,
        "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "host": platform.node(),
    }
    with _lock:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
    return entry


def load(path: Path = RESULTS) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
