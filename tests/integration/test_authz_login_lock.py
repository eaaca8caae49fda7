"""authz: too many failed logins in a row lock a user for a while (SAP's "user locked after failed logons"):
the right password is refused while locked, with the same answer as a wrong one; the lock ends by itself, or
at once with a reset by the user administrator and the new password the user sets with its code; a successful
login ends the count; concurrent attempts all count."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os

import grpc
import pytest
from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as pb
from services.authz import passwords
from services.authz import server as authz_server
from services.authz.model import LOGIN_REFUSED, LoginLock
from services.kit import app as kit_app
from tests.harness import TEST_PASSWORD
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
LOCK = LoginLock()  # the defaults the suite's authz runs with: 5 in a row, 15 minutes
WRONG = "not the password at all"


async def login(suite, user_id: str, password: str):
    return await suite.stub("authz").Login(pb.LoginRequest(user_id=user_id, password=password))


async def refused(suite, user_id: str, password: str) -> None:
    err = await expect_error(login(suite, user_id, password), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert err.details() == LOGIN_REFUSED  # the same answer whichever check failed


async def get_user(suite, user: str) -> pb.User:
    return (await suite.stub("authz").GetUser(pb.GetUserRequest(name=user),
                                              metadata=suite.md(suite.admin_token))).user


async def new_user(suite) -> tuple[str, str, str]:
    """A user of a new customer, its user ID, and its customer's number."""
    customer = await suite.new_customer()
    user, _ = await suite.new_user(customer)
    return user, user.split("/")[1], customer


async def test_the_last_allowed_failure_locks_even_the_right_password_out_until_the_lock_ends(suite, caplog):
    user, user_id, _ = await new_user(suite)
    for _ in range(LOCK.max_failures - 1):
        await refused(suite, user_id, WRONG)
    assert not (await get_user(suite, user)).HasField("lock_expire_time")  # one more is allowed
    locked_at = suite.clock.now()
    with caplog.at_level(logging.WARNING, logger="services.authz.sessions"):
        await refused(suite, user_id, WRONG)
    assert [r.getMessage() for r in caplog.records if "locked" in r.getMessage()] == [
        f"{user} locked until {(locked_at + LOCK.duration).isoformat(timespec='seconds')} after "
        f"{LOCK.max_failures} failed logins in a row"]
    assert WRONG not in caplog.text and TEST_PASSWORD not in caplog.text
    shown = await get_user(suite, user)
    assert shown.lock_expire_time.ToDatetime(dt.timezone.utc) == locked_at + LOCK.duration
    await refused(suite, user_id, TEST_PASSWORD)  # locked: the right password too, and the same answer
    start = suite.clock.now()
    try:
        suite.clock.set(locked_at + LOCK.duration - dt.timedelta(seconds=1))
        await refused(suite, user_id, TEST_PASSWORD)
        suite.clock.set(locked_at + LOCK.duration)
        response = await login(suite, user_id, TEST_PASSWORD)
        assert response.access_token and not response.user.HasField("lock_expire_time")
        assert not (await get_user(suite, user)).HasField("lock_expire_time")
    finally:
        suite.clock.set(start)


async def test_attempts_while_locked_do_not_extend_the_lock(suite):
    user, user_id, _ = await new_user(suite)
    for _ in range(LOCK.max_failures):
        await refused(suite, user_id, WRONG)
    shown = await get_user(suite, user)
    assert shown.HasField("lock_expire_time")
    until = shown.lock_expire_time.ToDatetime(dt.timezone.utc)
    for _ in range(LOCK.max_failures + 1):
        await refused(suite, user_id, WRONG)
    assert (await get_user(suite, user)).lock_expire_time.ToDatetime(dt.timezone.utc) == until


async def test_a_successful_login_ends_the_count(suite):
    _, user_id, _ = await new_user(suite)
    for _ in range(2):
        for _ in range(LOCK.max_failures - 1):
            await refused(suite, user_id, WRONG)
        assert (await login(suite, user_id, TEST_PASSWORD)).access_token  # the count starts again after it


async def test_a_reset_by_the_user_administrator_and_the_users_new_password_end_the_lock_at_once(suite):
    user, user_id, customer = await new_user(suite)
    authz, user_admin = suite.stub("authz"), suite.md(suite.customer_admin(customer)[1])
    for _ in range(LOCK.max_failures):
        await refused(suite, user_id, WRONG)
    await refused(suite, user_id, TEST_PASSWORD)  # locked
    # nobody but the user sets its password: the user administrator (and the platform admin) only reset it
    for md in (user_admin, suite.md(suite.admin_token)):
        await expect_error(authz.UpdateUser(pb.UpdateUserRequest(
            user=pb.User(name=user), update_mask=field_mask_pb2.FieldMask(paths=["password"]),
            new_password="a brand new password"), metadata=md), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    reset = (await authz.ResetPassword(pb.ResetPasswordRequest(name=user), metadata=user_admin)).user
    assert not reset.HasField("lock_expire_time") and not reset.password_set
    await refused(suite, user_id, TEST_PASSWORD)  # no password until the user sets one
    await authz.SetPassword(pb.SetPasswordRequest(user_id=user_id, code=suite.code_for(user_id),
                                                  new_password="a brand new password"))
    assert not (await get_user(suite, user)).HasField("lock_expire_time")
    assert (await login(suite, user_id, "a brand new password")).access_token


async def test_concurrent_wrong_passwords_all_count(suite):
    user, user_id, _ = await new_user(suite)
    await asyncio.gather(*(refused(suite, user_id, WRONG) for _ in range(LOCK.max_failures)))
    assert (await get_user(suite, user)).HasField("lock_expire_time")
    await refused(suite, user_id, TEST_PASSWORD)


async def test_unknown_and_disabled_users_get_the_same_answer(suite):
    await refused(suite, "S9999999998", TEST_PASSWORD)
    user, user_id, _ = await new_user(suite)
    await suite.stub("authz").UpdateUser(pb.UpdateUserRequest(
        user=pb.User(name=user, disabled=True), update_mask=field_mask_pb2.FieldMask(paths=["disabled"])),
        metadata=suite.md(suite.admin_token))
    await refused(suite, user_id, TEST_PASSWORD)


async def test_every_refusal_costs_one_kdf_run_at_the_services_own_cost(suite, monkeypatch):
    """Locked, unknown, wrong: one scrypt run each, at the cost the service hashes passwords with (the suite's
    RS_AUTHZ_KDF_LOG2_N), so neither timing nor a flood of guesses at a locked user costs anything else."""
    costs: list[int] = []
    scrypt = passwords.Scrypt

    def recorded(*args, n: int, **kwargs):
        costs.append(n)
        return scrypt(*args, n=n, **kwargs)

    monkeypatch.setattr(passwords, "Scrypt", recorded)
    own = 2 ** int(os.environ["RS_AUTHZ_KDF_LOG2_N"])  # the harness runs authz at a low cost
    user, user_id, _ = await new_user(suite)
    attempts = [(user_id, WRONG)] * LOCK.max_failures + [(user_id, TEST_PASSWORD), (user_id, WRONG),
                                                          ("S9999999997", TEST_PASSWORD)]
    for who, password in attempts:
        costs.clear()
        await refused(suite, who, password)
        assert costs == [own], (who, password, costs)
    assert (await get_user(suite, user)).HasField("lock_expire_time")  # the last three met a locked or no user


@pytest.mark.parametrize("variable, value", [("RS_AUTHZ_LOGIN_LOCK_S", "0"), ("RS_AUTHZ_MAX_FAILED_LOGINS", "-1"),
                                             ("RS_AUTHZ_TOKEN_TTL_S", "0"), ("RS_AUTHZ_KDF_LOG2_N", "0"),
                                             ("RS_AUTHZ_KDF_LOG2_N", "40")])
async def test_a_bad_setting_stops_the_service_naming_it(suite, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit, match=variable):
        await authz_server.build(kit_app.Deps(suite.config("authz"), suite.clock, lambda: ""))


async def test_zero_failures_never_lock(suite, monkeypatch):
    """Run last in this module: it restarts authz with RS_AUTHZ_MAX_FAILED_LOGINS=0, then as it was."""
    monkeypatch.setenv("RS_AUTHZ_MAX_FAILED_LOGINS", "0")
    await suite.stop_service("authz")
    await suite.start_service("authz")
    try:
        user, user_id, _ = await new_user(suite)
        for _ in range(LOCK.max_failures + 2):
            await refused(suite, user_id, WRONG)
        assert not (await get_user(suite, user)).HasField("lock_expire_time")
        assert (await login(suite, user_id, TEST_PASSWORD)).access_token
    finally:
        monkeypatch.delenv("RS_AUTHZ_MAX_FAILED_LOGINS")
        await suite.stop_service("authz")
        await suite.start_service("authz")
