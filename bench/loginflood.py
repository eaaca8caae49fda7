"""Check during a Login flood (issue 15): the `check` scenario's Check, measured the same way, while FLOOD_CALLERS
callers in this process send wrong-password Logins for unknown user IDs one after another, as fast as authz
answers them. What stands in the flood's way is what stands in an attacker's: the per-peer rate (all callers
share this process's address), the bound on password checks in progress and the hashing threads of their own.
The comparison row "authz Check during a Login flood vs alone" sets its p99 against the undisturbed Check's."""
from __future__ import annotations

import asyncio
import collections

import grpc

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc

FLOOD_CALLERS = 64
SCENARIO = "check-loginflood"
COMPARISON = {"label": "authz Check during a Login flood vs alone", "scenario": SCENARIO, "ours": "ours",
              "ours_label": f"{FLOOD_CALLERS} Login callers", "ref_scenario": "check", "ref": "ours",
              "ref_label": "alone"}


async def check_during_login_flood(bench, ours, fx) -> None:
    """`bench.check_ours` under the flood; the flood's answers, by code, go to the run's notes."""
    answers: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(ours.address("authz")) as channel:
        stub = authz_pb2_grpc.AuthzServiceStub(channel)

        async def flood(caller: int) -> None:
            attempt = 0
            while not stop.is_set():
                request = authz_pb2.LoginRequest(user_id=f"S{9_000_000_000 + caller * 100_000 + attempt % 100_000}",
                                                 password="not the password at all")
                try:
                    await stub.Login(request, timeout=10)
                    answers["OK"] += 1
                except grpc.RpcError as err:
                    answers[err.code().name] += 1
                attempt += 1

        callers = [asyncio.create_task(flood(i)) for i in range(FLOOD_CALLERS)]
        try:
            await bench.check_ours(ours, fx, SCENARIO, "ours", note=f"{FLOOD_CALLERS} callers flooding Login")
        finally:
            stop.set()
            await asyncio.gather(*callers)
    bench.notes.append(f"Login flood during {SCENARIO}: " + ", ".join(f"{code} {n:,}" for code, n in
                                                                        sorted(answers.items())))
