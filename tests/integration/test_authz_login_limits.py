"""authz: logins never starve decisions. Password checks run on a few threads of their own, with a bounded
number of attempts in progress; an attempt beyond it, or beyond the rate of its user ID or of its peer address,
is refused at once with RESOURCE_EXHAUSTED (retryable, with RetryInfo), the same whether or not the user
exists, and counts no failed login. Meanwhile Checks answer within their deadline."""
from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from remotesupport.authz.v1 import authz_pb2 as pb
from remotesupport.authz.v1 import authz_pb2_grpc
from services.authz import server as authz_server
from services.authz.model import LOGIN_REFUSED
from services.kit import app as kit_app
from tests.harness import TEST_PASSWORD
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
WRONG = "not the password at all"
CHECK_DEADLINE_S = 1.0  # the proof's RS_AUTHZ_DEADLINE_S (the default is 2)
FLOOD_CALLERS = 100  # concurrent calls on one connection: below its 256 streams (services.kit.server)
FLOOD_S, FLOOD_MAX = 3.0, 20_000
FLOOD_DEADLINE_S = 30.0  # of each Login
NO_RATE_LIMITS = {"RS_AUTHZ_USER_LOGINS_PER_MIN": "0", "RS_AUTHZ_PEER_LOGINS_PER_MIN": "0"}


@contextlib.asynccontextmanager
async def authz_with(suite, monkeypatch, **env: str):
    """authz restarted with `env` (on the same database), then restarted as it was."""
    with monkeypatch.context() as patched:
        for name, value in env.items():
            patched.setenv(name, value)
        await suite.stop_service("authz")
        await suite.start_service("authz")
        try:
            yield suite.running["authz"].app
        finally:
            patched.undo()
            await suite.stop_service("authz")
            await suite.start_service("authz")


def service_md(suite):
    return suite.md((suite.var / "secrets" / "depot.token").read_text().strip())


async def login_code(stub, user_id: str, password: str) -> str:
    try:
        await stub.Login(pb.LoginRequest(user_id=user_id, password=password), timeout=FLOOD_DEADLINE_S)
        return "OK"
    except grpc.RpcError as err:
        return err.code().name


async def failed_logins(app, user_id: str) -> int:
    async with app.store.read() as queries:
        return (await queries.principal(user_id)).failed_logins


def retry_delay_s(err: grpc.RpcError) -> float:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return info.retry_delay.ToTimedelta().total_seconds()
    return 0.0


async def limited(suite, user_id: str, password: str) -> grpc.RpcError:
    err = await expect_error(suite.stub("authz").Login(pb.LoginRequest(user_id=user_id, password=password)),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED")
    assert "retry" in err.details() and retry_delay_s(err) > 0
    return err


async def refused(suite, user_id: str, password: str) -> None:
    err = await expect_error(suite.stub("authz").Login(pb.LoginRequest(user_id=user_id, password=password)),
                             grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert err.details() == LOGIN_REFUSED


# --- the bound on password checks in progress --------------------------------------------------------------
async def test_a_login_flood_is_shed_while_every_check_answers_within_its_deadline(suite, monkeypatch):
    """FLOOD_CALLERS callers each sending Logins one after another for FLOOD_S seconds (at most FLOOD_MAX in all),
    at a real KDF cost (scrypt n = 2**14: 16 MiB, tens of ms each) and without rate limits, while a client keeps
    asking Check: every Check answers, each within its deadline; Logins beyond the places are shed at once
    with RESOURCE_EXHAUSTED, the others are checked (UNAUTHENTICATED)."""
    _, user_token = await suite.new_user(await suite.new_customer())
    async with authz_with(suite, monkeypatch, RS_AUTHZ_KDF_LOG2_N="14", RS_AUTHZ_KDF_WORKERS="1",
                          RS_AUTHZ_KDF_QUEUE="2", **NO_RATE_LIMITS):
        authz, md = suite.stub("authz"), service_md(suite)
        ends = time.monotonic() + FLOOD_S
        logins: list[str] = []
        checks: list[tuple[str, float]] = []

        async def flood(caller: int) -> None:
            while time.monotonic() < ends and len(logins) < FLOOD_MAX:
                logins.append(await login_code(authz, f"S{9000000000 + caller * 1000 + len(logins) % 1000}", WRONG))

        async def check_loop() -> None:
            while time.monotonic() < ends:
                began = time.monotonic()
                try:
                    decision = await authz.Check(pb.CheckRequest(subject_token=user_token, permission="authz.session"),
                                                 metadata=md, timeout=CHECK_DEADLINE_S)
                    code = "OK" if decision.allowed else "DENIED"
                except grpc.RpcError as err:
                    code = err.code().name
                checks.append((code, time.monotonic() - began))
                await asyncio.sleep(0.01)

        began = time.monotonic()
        await asyncio.gather(check_loop(), *(flood(i) for i in range(FLOOD_CALLERS)))
        flood_s = time.monotonic() - began
    # Every Check answers; on a machine this test shares with others (CI runs the whole suite on 2 cores) a rare
    # one may miss its deadline for reasons that are not logins, so the bound is 9 in 10 (before the bounded
    # pool, most of them missed it), and none is refused for any other reason.
    late = [c for c in checks if c[0] != "OK"]
    assert len(checks) >= 10 and {code for code, _ in late} <= {"DEADLINE_EXCEEDED"}, late[:5]
    assert len(late) <= len(checks) // 10, late[:5]
    assert set(logins) == {"RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}, set(logins)
    assert logins.count("RESOURCE_EXHAUSTED") > len(logins) // 2
    assert flood_s < FLOOD_S + FLOOD_DEADLINE_S


async def test_a_shed_login_counts_no_failure(suite, monkeypatch):
    """Concurrent wrong passwords for one user, more than there are places: the failed-login count is exactly
    the number of attempts that were checked (UNAUTHENTICATED); the shed ones (RESOURCE_EXHAUSTED) left it alone."""
    user, _ = await suite.new_user(await suite.new_customer())
    user_id = user.split("/")[1]
    async with authz_with(suite, monkeypatch, RS_AUTHZ_KDF_LOG2_N="14", RS_AUTHZ_KDF_WORKERS="1",
                          RS_AUTHZ_KDF_QUEUE="1", RS_AUTHZ_MAX_FAILED_LOGINS="1000", **NO_RATE_LIMITS) as app:
        codes = await asyncio.gather(*(login_code(suite.stub("authz"), user_id, WRONG) for _ in range(40)))
        assert set(codes) == {"RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}, set(codes)
        assert await failed_logins(app, user_id) == codes.count("UNAUTHENTICATED")
        assert (await suite.stub("authz").Login(pb.LoginRequest(user_id=user_id, password=TEST_PASSWORD))).access_token


# --- the rates per user ID and per peer -------------------------------------------------------------------
async def test_the_per_user_limit_answers_alike_for_known_and_unknown_users_and_counts_no_failure(suite, monkeypatch):
    user, _ = await suite.new_user(await suite.new_customer())
    other, _ = await suite.new_user(await suite.new_customer())
    user_id, unknown = user.split("/")[1], "S9999999996"
    async with authz_with(suite, monkeypatch, RS_AUTHZ_USER_LOGIN_BURST="3", RS_AUTHZ_USER_LOGINS_PER_MIN="1",
                          RS_AUTHZ_PEER_LOGINS_PER_MIN="0") as app:
        for who in (user_id, unknown):
            for _ in range(3):
                await refused(suite, who, WRONG)
        known_err = await limited(suite, user_id, TEST_PASSWORD)  # the right password: refused all the same
        unknown_err = await limited(suite, unknown, TEST_PASSWORD)
        assert known_err.details() == unknown_err.details()  # nothing tells whether the user exists
        assert await failed_logins(app, user_id) == 3  # the limited attempt counted no failure
        assert await suite.login(other.split("/")[1])  # another user ID has a bucket of its own


async def test_the_per_peer_limit_holds_for_every_connection_of_one_address(suite, monkeypatch):
    user, _ = await suite.new_user(await suite.new_customer())
    async with authz_with(suite, monkeypatch, RS_AUTHZ_PEER_LOGIN_BURST="4", RS_AUTHZ_PEER_LOGINS_PER_MIN="1",
                          RS_AUTHZ_USER_LOGINS_PER_MIN="0"):
        for i in range(4):
            await refused(suite, f"S999999990{i}", WRONG)  # four user IDs, one peer
        await limited(suite, user.split("/")[1], TEST_PASSWORD)
        async with grpc.aio.insecure_channel(suite.addr["authz"]) as second:  # another connection, same address
            stub = authz_pb2_grpc.AuthzServiceStub(second)
            assert await login_code(stub, user.split("/")[1], TEST_PASSWORD) == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("variable, value", [
    ("RS_AUTHZ_KDF_WORKERS", "0"), ("RS_AUTHZ_KDF_WORKERS", "65"), ("RS_AUTHZ_KDF_QUEUE", "-1"),
    ("RS_AUTHZ_USER_LOGINS_PER_MIN", "-1"), ("RS_AUTHZ_USER_LOGIN_BURST", "0"),
    ("RS_AUTHZ_PEER_LOGINS_PER_MIN", "-1"), ("RS_AUTHZ_PEER_LOGIN_BURST", "0"), ("RS_AUTHZ_KDF_QUEUE", "x")])
async def test_a_bad_limit_stops_the_service_naming_it(suite, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit, match=variable):
        await authz_server.build(kit_app.Deps(suite.config("authz"), suite.clock, lambda: ""))
