"""Row 5: the depot process started with no master key, a wrong one, a short one, a malformed one, a key file
others may read, or the development key under the production profile, refuses to start with a one-line
message that names the problem (no traceback, no key material) and never serves: reveals sent to its port
while it runs get nothing. The control: started with its own key again, it reveals what it stored."""
from __future__ import annotations

import base64
import os
import threading
import time

import grpc

from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.depot.v1 import depot_pb2_grpc
from tests.proof.world import Actors, new_customer, planted

ROW = 5


def key_file(path, raw: bytes | str, mode: int = 0o600):
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    os.chmod(path, mode)
    return path


def test_the_depot_refuses_to_start_without_its_key(procs, tmp_path, rec):
    actors = Actors(procs, via="gateway")
    c = new_customer(actors)
    secret = planted("row5")
    entry = actors.entry(c.creator, c.system, secret=secret)
    dev_key = procs.master_key.read_bytes()
    other = base64.b64encode(os.urandom(32)).decode()
    cases = {
        "no key (production profile)": ({"RS_PROFILE": "production",
                                          "RS_DEPOT_MASTER_KEY_FILE": str(tmp_path / "absent.key")},
                                         "not found"),
        "no key (dev profile: a new dev key is generated, and it cannot open the ring)": (
            {"RS_DEPOT_MASTER_KEY_FILE": str(tmp_path / "generated" / "absent.key")}, "cannot open ring key"),
        "wrong key (production profile)": ({"RS_PROFILE": "production", "RS_DEPOT_MASTER_KEY_FILE": str(
            key_file(tmp_path / "wrong.key", f"rsmk1:{other}\n"))}, "cannot open ring key"),
        "wrong key (dev profile)": ({"RS_DEPOT_MASTER_KEY_FILE": str(
            key_file(tmp_path / "wrong-dev.key", f"rsdev1:{other}\n"))}, "cannot open ring key"),
        "short key (16 bytes)": ({"RS_PROFILE": "production", "RS_DEPOT_MASTER_KEY_FILE": str(
            key_file(tmp_path / "short.key", "rsmk1:" + base64.b64encode(os.urandom(16)).decode() + "\n"))},
            "must be 32 bytes"),
        "malformed key file": ({"RS_DEPOT_MASTER_KEY_FILE": str(key_file(tmp_path / "bad.key", "not a key\n"))},
                               "malformed"),
        "empty key file": ({"RS_DEPOT_MASTER_KEY_FILE": str(key_file(tmp_path / "empty.key", b""))}, "malformed"),
        "key file readable by others (production profile)": (
            {"RS_PROFILE": "production",
             "RS_DEPOT_MASTER_KEY_FILE": str(key_file(tmp_path / "open.key", f"rsmk1:{other}\n", 0o644))},
            "accessible by group/other"),
        "the dev key under the production profile": ({"RS_PROFILE": "production"}, "DEV key"),
    }
    results: dict[str, str] = {}
    served = 0
    procs.supervisor.stop("depot")
    try:
        for label, (env, expected) in cases.items():
            stop = threading.Event()
            got: list[str] = []

            def probe() -> None:  # reveals sent to the depot's port for as long as the attempt runs
                with grpc.insecure_channel(procs.address("depot")) as channel:
                    stub = depot_pb2_grpc.LogonDepotServiceStub(channel)
                    while not stop.is_set():
                        try:
                            got.append(stub.RevealLogonData(dp.RevealLogonDataRequest(name=entry.name),
                                                            metadata=c.creator.md, timeout=0.5).secret)
                        except grpc.RpcError:
                            time.sleep(0.05)

            thread = threading.Thread(target=probe)
            thread.start()
            try:
                code, output, serving = procs.attempt("depot", env, timeout=30)
            finally:
                stop.set()
                thread.join()
            served += len(got)
            lines = [line for line in output.splitlines() if "refusing to start" in line]
            problems = []
            if code in (0, None) or serving:
                problems.append(f"exit {code}, serving {serving}")
            if not lines or expected not in lines[-1]:
                problems.append(f"no clear message with {expected!r}: {output[-300:]!r}")
            if "Traceback" in output:
                problems.append("a traceback")
            if other in output or base64.b64encode(dev_key).decode()[:20] in output or secret in output:
                problems.append("key material or a secret in the output")
            if got:
                problems.append(f"{len(got)} reveals answered")
            results[label] = "; ".join(problems) or lines[-1].strip()
    finally:
        procs.restart("depot")
    control = actors.reveal(c.creator, entry.name).secret == secret
    refused = sum(1 for r in results.values() if "refusing to start" in r)
    passed = refused == len(cases) and served == 0 and control
    rec(f"{refused}/{len(cases)} bad-key starts refused with a clear one-line message (no key, wrong key, short "
        f"key, malformed, empty, readable by others, dev key under production); {served} plaintexts served; "
        f"control start with the right key reveals: {control}", passed, messages=results, served=served)
    assert passed, results
