"""The depot's event mails (services.kit.notices), from its log, at least once: the user who stored an entry is
mailed when someone else reveals it (a colleague or a support engineer) and when it expires soon; not for its own
reveal, not once it muted that kind; never a secret in a mail; a mail server that does not answer leaves the
position where it was, and the mails go when it answers, once."""
from __future__ import annotations

import datetime as dt

import grpc
import pytest

from remotesupport.authz.v1 import authz_pb2 as ap
from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot import notices as depot_notices
from services.depot.events import DepotEvents
from services.kit.errors import DependencyUnavailable
from services.kit.mailsink import free_port
from tests.harness import email_of
from tests.integration.depot.world import World, app, fresh_customer
from tests.mails import body_of, event_mailer

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET = "Mail-Never-Carries-This-9"


def mailer(w: World, port: int | None = None):
    store = app(w.suite).depot.store
    return event_mailer(w.suite, "depot", DepotEvents(store, "mail"), depot_notices.recipients_of(store), port=port)


def inbox(w: World, principal: str):
    return w.suite.mail.messages(email_of(w.users[principal].removeprefix("users/")))


async def test_a_reveal_by_someone_else_is_mailed_to_who_stored_it(world):
    w = await fresh_customer(world)
    w.users["engineer"], w.tokens["engineer"] = await w.suite.new_engineer()
    await w.assign(await w.new_incident(), "engineer")
    entry = await w.create("creator", secret=SECRET)
    await mailer(w).mail_once()  # what happened before (this and other customers) is mailed and done
    before = len(inbox(w, "creator"))
    await w.reveal("creator", entry.name, reason="my own")  # one's own reveal: no mail
    await w.reveal("edit_all", entry.name, reason="ticket 4711")
    await w.reveal("engineer", entry.name, reason="incident work")
    sent = await mailer(w).mail_once()
    got = inbox(w, "creator")[before:]
    assert sent == 2 and len(got) == 2
    first, second = got
    assert first["Subject"] == f"Remote Support: your logon data was revealed by {w.users['edit_all']}"
    assert second["Subject"] == f"Remote Support: your logon data was revealed by {w.users['engineer']}"
    text = body_of(first)
    assert entry.name in text and "ticket 4711" in text and "LOGON_DATA_REVEALED" in text and "chain hash" in text
    assert "rsctl notifications mute logon-data-revealed" in text
    assert first["Message-ID"].startswith("<depot.customers.") and first["Message-ID"] != second["Message-ID"]
    for message in got:
        assert SECRET not in message.as_string()
    assert await mailer(w).mail_once() == 0  # nothing twice


async def test_a_reveal_is_mailed_even_when_the_entry_is_deleted_before_the_mail_goes(world):
    w = await fresh_customer(world)
    entry = await w.create("creator", secret=SECRET)
    await mailer(w).mail_once()
    before = len(inbox(w, "creator"))
    await w.reveal("edit_all", entry.name, reason="then gone")
    await w.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name), metadata=w.md("edit_all"))
    await mailer(w).mail_once()
    mail, = inbox(w, "creator")[before:]  # its creator is in the log
    assert entry.name in body_of(mail) and "then gone" in body_of(mail)


async def test_a_muted_kind_is_not_mailed(world):
    w = await fresh_customer(world)
    entry = await w.create("creator", secret=SECRET)
    settings = ap.NotificationSettings(name=f"{w.users['creator']}/notificationSettings",
                                       muted=[ap.NOTIFICATION_KIND_LOGON_DATA_REVEALED])
    await w.suite.stub("authz").UpdateNotificationSettings(
        ap.UpdateNotificationSettingsRequest(notification_settings=settings), metadata=w.md("creator"))
    await mailer(w).mail_once()
    before = len(inbox(w, "creator"))
    await w.reveal("edit_all", entry.name)
    await mailer(w).mail_once()
    assert len(inbox(w, "creator")) == before
    settings.ClearField("muted")
    await w.suite.stub("authz").UpdateNotificationSettings(
        ap.UpdateNotificationSettingsRequest(notification_settings=settings), metadata=w.md("creator"))
    await w.reveal("edit_all", entry.name)
    await mailer(w).mail_once()
    assert len(inbox(w, "creator")) == before + 1  # the muted one is not mailed later either


async def test_an_expiry_warning_is_mailed(world):
    w = await fresh_customer(world)
    entry = await w.create("creator", secret=SECRET, expire_time=w.expire_in(days=8))
    await mailer(w).mail_once()
    before = len(inbox(w, "creator"))
    clock = w.suite.clock
    was = clock.now()
    try:
        clock.set(entry.expire_time.ToDatetime(dt.timezone.utc) - dt.timedelta(days=7))
        assert await app(w.suite).warn_once() >= 1
        await mailer(w).mail_once()
    finally:
        clock.set(was)
    mail, = inbox(w, "creator")[before:]
    assert mail["Subject"] == "Remote Support: your logon data expires soon"
    assert entry.name in body_of(mail) and f"rsctl logon extend {entry.name} --days 30" in body_of(mail)


async def test_mails_wait_for_a_mail_server_that_does_not_answer(world):
    w = await fresh_customer(world)
    entry = await w.create("creator", secret=SECRET)
    await mailer(w).mail_once()
    before = len(inbox(w, "creator"))
    await w.reveal("edit_all", entry.name)
    with pytest.raises(DependencyUnavailable) as raised:
        await mailer(w, port=free_port()).mail_once()  # nothing listens there
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE and "did not take the message" in raised.value.message
    assert len(inbox(w, "creator")) == before
    assert await mailer(w).mail_once() >= 1  # sent now, from where it stopped
    assert len(inbox(w, "creator")) == before + 1
    assert await mailer(w).mail_once() == 0


async def test_a_recipient_the_mail_server_refuses_does_not_hold_up_the_others(world):
    from aiosmtpd.controller import Controller

    from tests.unit.test_kit_mail import _Refusing
    w, other = await fresh_customer(world), await fresh_customer(world)
    refused = email_of(w.users["creator"].removeprefix("users/"))
    handler = _Refusing(refused)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        mails = mailer(w, port=controller.port)
        entries = [await w.create("creator", secret=SECRET), await other.create("creator", secret=SECRET)]
        await mails.mail_once()
        handler.accepted.clear()
        await w.reveal("edit_all", entries[0].name)
        await other.reveal("edit_all", entries[1].name)
        await mails.mail_once()  # the refused one is skipped for good, the other customer's goes
        assert handler.accepted == [email_of(other.users["creator"].removeprefix("users/"))]
        assert await mails.mail_once() == 0  # and nothing is tried again
    finally:
        controller.stop()
