"""The connections service's event mails (services.kit.notices): the reporter of an incident is mailed when a
support engineer takes it, the opener of a window when it closes soon; each once, from the events table."""
from __future__ import annotations

import datetime as dt

import pytest

from remotesupport.connections.v1 import connections_pb2 as cp
from services.connections import notices as connection_notices
from services.connections.events import ConnectionsEvents
from tests.harness import email_of
from tests.integration.connections.world import HOUR, World
from tests.mails import body_of, event_mailer

pytestmark = pytest.mark.asyncio(loop_scope="module")


def mailer(world: World):
    store = world.suite.running["connections"].app.store
    return event_mailer(world.suite, "connections", ConnectionsEvents(store, "mail"),
                        connection_notices.recipients_of(store))


def inbox(world: World, principal: str):
    return world.suite.mail.messages(email_of(world.users[principal].removeprefix("users/")))


async def test_the_reporter_hears_that_an_engineer_took_its_incident(world):
    await mailer(world).mail_once()
    before = len(inbox(world, "reporter"))
    incident = await world.new_incident()
    await world.call("AssignProcessor", cp.AssignProcessorRequest(name=incident.name), "engineer")
    assert await mailer(world).mail_once() == 1
    mail, = inbox(world, "reporter")[before:]
    assert mail["Subject"] == f"Remote Support: {world.users['engineer']} took your incident"
    assert incident.name in body_of(mail) and "INCIDENT_TAKEN" in body_of(mail)
    assert incident.title not in mail.as_string()  # what the reporter wrote stays in the incident
    assert await mailer(world).mail_once() == 0


async def test_the_opener_hears_that_its_window_closes_soon(world):
    sweep = world.suite.running["connections"].app.sweep_once
    system = await world.new_system()
    await world.set_up(system)
    window = await world.open(system, start=dt.timedelta(0), length=HOUR)
    await mailer(world).mail_once()
    before = len(inbox(world, "opener"))
    was = world.suite.clock.now()
    try:
        world.suite.clock.set(window.end_time.ToDatetime(dt.timezone.utc) - dt.timedelta(minutes=15))
        assert window.name in (await sweep()).closing
        await mailer(world).mail_once()
    finally:
        world.suite.clock.set(was)
    mail, = [m for m in inbox(world, "opener")[before:] if window.name in body_of(m)]
    assert mail["Subject"] == "Remote Support: your connection closes soon"
    assert f"rsctl windows extend {window.name} --hours 2" in body_of(mail) and "in 15 min" in body_of(mail)
