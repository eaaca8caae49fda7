"""authz: notification settings (which event mails a user receives: its own business only) and the resolution of
recipients to addresses, which only the depot and the connections service may ask for."""
from __future__ import annotations

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2

from remotesupport.authz.v1 import authz_pb2 as pb
from tests.harness import email_of
from tests.helpers import expect_error

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)

K = pb.NotificationKind
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def token_md(suite, service: str):
    return suite.md((suite.var / "secrets" / f"{service}.token").read_text().strip())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    a, b = await suite.new_customer(), await suite.new_customer()
    return dict(a=a, ann=await suite.new_user(a, ["EDIT_MY_LOGIN_DATA"]), admin=await suite.new_user(a, ["USER_ADMIN"]),
                other=await suite.new_user(b, ["USER_ADMIN"]), engineer=await suite.new_engineer())


def settings_name(user: str) -> str:
    return f"{user}/notificationSettings"


async def get(suite, user: str, token: str) -> pb.NotificationSettings:
    return (await suite.stub("authz").GetNotificationSettings(
        pb.GetNotificationSettingsRequest(name=settings_name(user)), metadata=suite.md(token))).notification_settings


async def update(suite, user: str, token: str, muted) -> pb.NotificationSettings:
    return (await suite.stub("authz").UpdateNotificationSettings(pb.UpdateNotificationSettingsRequest(
        notification_settings=pb.NotificationSettings(name=settings_name(user), muted=muted)),
        metadata=suite.md(token))).notification_settings


async def resolve(suite, items, service="depot"):
    return (await suite.stub("authz").ResolveNotificationRecipients(pb.ResolveNotificationRecipientsRequest(
        recipients=[pb.NotificationRecipient(user=u, kind=k) for u, k in items]),
        metadata=token_md(suite, service))).recipients


async def test_every_kind_is_mailed_until_the_user_mutes_it(suite, world):
    ann, token = world["ann"]
    got = await get(suite, ann, token)
    assert (got.name, list(got.muted)) == (settings_name(ann), [])
    stored = await update(suite, ann, token, [K.NOTIFICATION_KIND_WINDOW_CLOSING,
                                              K.NOTIFICATION_KIND_LOGON_DATA_REVEALED])
    assert list(stored.muted) == [K.NOTIFICATION_KIND_LOGON_DATA_REVEALED, K.NOTIFICATION_KIND_WINDOW_CLOSING]
    assert list((await get(suite, ann, token)).muted) == list(stored.muted)
    answered = await resolve(suite, [(ann, K.NOTIFICATION_KIND_LOGON_DATA_REVEALED),
                                     (ann, K.NOTIFICATION_KIND_LOGON_DATA_EXPIRING),
                                     (world["engineer"][0], K.NOTIFICATION_KIND_INCIDENT_TAKEN),
                                     ("users/S0000000001", K.NOTIFICATION_KIND_INCIDENT_TAKEN)], "connections")
    assert [(r.user, r.kind, r.email) for r in answered] == [
        (ann, K.NOTIFICATION_KIND_LOGON_DATA_REVEALED, ""),  # muted
        (ann, K.NOTIFICATION_KIND_LOGON_DATA_EXPIRING, email_of(ann.removeprefix("users/"))),
        (world["engineer"][0], K.NOTIFICATION_KIND_INCIDENT_TAKEN, email_of(world["engineer"][0].removeprefix("users/"))),
        ("users/S0000000001", K.NOTIFICATION_KIND_INCIDENT_TAKEN, "")]  # no such user
    await update(suite, ann, token, [])
    assert (await resolve(suite, [(ann, K.NOTIFICATION_KIND_LOGON_DATA_REVEALED)]))[0].email


async def test_a_disabled_user_is_mailed_nothing(suite, world):
    user, _ = await suite.new_user(world["a"])
    await suite.stub("authz").UpdateUser(pb.UpdateUserRequest(
        user=pb.User(name=user, disabled=True), update_mask=field_mask_pb2.FieldMask(paths=["disabled"])),
        metadata=suite.md(world["admin"][1]))
    assert (await resolve(suite, [(user, K.NOTIFICATION_KIND_LOGON_DATA_EXPIRING)]))[0].email == ""


async def test_settings_are_the_user_s_own_business(suite, world):
    ann, _ = world["ann"]
    for who in ("admin", "other", "engineer"):
        await expect_error(get(suite, ann, world[who][1]), DENIED)
        await expect_error(update(suite, ann, world[who][1], [K.NOTIFICATION_KIND_WINDOW_CLOSING]), DENIED)
    assert list((await get(suite, ann, world["ann"][1])).muted) == []  # nobody else changed them


async def test_only_the_depot_and_connections_may_resolve_addresses(suite, world):
    ann, token = world["ann"]
    for md in (suite.md(token), suite.md(world["admin"][1]), suite.md(suite.admin_token), token_md(suite, "gateway")):
        await expect_error(suite.stub("authz").ResolveNotificationRecipients(pb.ResolveNotificationRecipientsRequest(
            recipients=[pb.NotificationRecipient(user=ann, kind=K.NOTIFICATION_KIND_LOGON_DATA_REVEALED)]),
            metadata=md), DENIED)


async def test_bad_requests_name_their_field(suite, world):
    ann, token = world["ann"]
    await expect_error(update(suite, ann, token, [K.NOTIFICATION_KIND_UNSPECIFIED]), INVALID,
                       field="notification_settings.muted[0]")
    await expect_error(update(suite, ann, token, [99]), INVALID, field="notification_settings.muted[0]")
    await expect_error(update(suite, ann, token, [K.NOTIFICATION_KIND_WINDOW_CLOSING] * 2), INVALID,
                       field="notification_settings.muted[1]", message="repeats WINDOW_CLOSING")
    await expect_error(suite.stub("authz").GetNotificationSettings(
        pb.GetNotificationSettingsRequest(name=ann), metadata=suite.md(token)), INVALID, field="name")
    await expect_error(resolve(suite, [(ann, K.NOTIFICATION_KIND_UNSPECIFIED)]), INVALID, field="recipients[0].kind")
    await expect_error(resolve(suite, [("nobody", K.NOTIFICATION_KIND_WINDOW_CLOSING)]), INVALID,
                       field="recipients[0].user")
    await expect_error(resolve(suite, [(ann, K.NOTIFICATION_KIND_WINDOW_CLOSING)] * 501), INVALID,
                       field="recipients", message="at most 500")


async def test_a_mail_is_a_read_of_its_event(suite, world):
    """The depot's kinds only to whom may read the log now; a failing webhook's only to user administrators."""
    ann, admin = world["ann"][0], world["admin"][0]
    plain, _ = await suite.new_user(world["a"], ["CREATE_INCIDENTS"])
    answered = await resolve(suite, [(plain, K.NOTIFICATION_KIND_LOGON_DATA_REVEALED),
                                     (plain, K.NOTIFICATION_KIND_LOGON_DATA_EXPIRING),
                                     (plain, K.NOTIFICATION_KIND_INCIDENT_TAKEN),
                                     (ann, K.NOTIFICATION_KIND_WEBHOOK_FAILING),
                                     (admin, K.NOTIFICATION_KIND_WEBHOOK_FAILING)])
    assert [bool(r.email) for r in answered] == [False, False, True, False, True]
