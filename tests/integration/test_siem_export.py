"""SIEM export (services.kit.siem) from the depot's and the connections service's outboxes to a real TCP
receiver: RFC 5424 over octet counting and JSON lines, every event the services committed (the depot's with its
log sequence and chain hash, exactly the log), kept for a SIEM that is down and sent once it answers, resumed
where it stopped after a restart; and the configuration errors that stop a service at start."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest
import pytest_asyncio
from sqlalchemy import text

from remotesupport.connections.v1 import connections_pb2 as cp
from remotesupport.depot.v1 import depot_pb2 as dp
from services.depot.settings import DepotSettings
from services.kit.siem import SiemSettings
from services.kit.validate import to_timestamp
from tests.siem_receiver import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="module")
WAIT_S = 15.0


async def start_exporting(suite, receiver: Receiver, **kw) -> None:
    settings = SiemSettings(address=f"127.0.0.1:{receiver.port}", interval_s=0.1, **kw)
    for service in ("connections", "depot"):
        await suite.stop_service(service)
    await suite.start_service("connections", siem_settings=settings)
    depot = DepotSettings.from_env(suite.config("depot"))
    await suite.start_service("depot", settings=dataclasses.replace(depot, background=False), siem_settings=settings)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    receiver = Receiver()
    await receiver.start()
    await start_exporting(suite, receiver)
    customer = await suite.new_customer()
    _, token = await suite.new_user(customer, ["MAINTAIN_SYSTEM_DATA", "EDIT_ALL_LOGIN_DATA", "CREATE_INCIDENTS"])
    system = await suite.new_system(customer, token, sid="SIE")
    return {"suite": suite, "receiver": receiver, "customer": customer, "token": token, "system": system}


async def activity(w) -> None:
    """A create, a reveal, an incident: events of both services."""
    suite, md = w["suite"], w["suite"].md(w["token"])
    entry = (await suite.stub("depot").CreateLogonData(dp.CreateLogonDataRequest(
        parent=w["system"], logon_data=dp.LogonData(
            kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT1", client="001",
            expire_time=to_timestamp(suite.clock.now() + dt.timedelta(days=3))), secret="siem-secret-1"),
        metadata=md)).logon_data
    await suite.stub("depot").RevealLogonData(dp.RevealLogonDataRequest(name=entry.name, reason="siem check"),
                                              metadata=md)
    await suite.stub("connections").CreateIncident(cp.CreateIncidentRequest(
        parent=f"customers/{w['customer']}", incident=cp.Incident(system=w["system"], title="SIEM",
                                                                  priority=cp.INCIDENT_PRIORITY_LOW)), metadata=md)


async def log_of(w) -> list[dp.LogEvent]:
    return list((await w["suite"].stub("depot").ListLogEvents(dp.ListLogEventsRequest(
        parent=f"customers/{w['customer']}", page_size=1000), metadata=w["suite"].md(w["token"]))).events)


async def until(condition, timeout: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the SIEM did not receive the events in time"
        await asyncio.sleep(0.05)


def of_customer(receiver: Receiver, customer: str, source: str) -> list[dict]:
    return [m for m in receiver.messages if m["customer"] == f"customers/{customer}"
            and m["id"].startswith(source + "/")]


async def test_rfc5424_messages_hold_every_event_with_the_log_s_chain(world):
    w, receiver = world, world["receiver"]
    await activity(w)
    log = await log_of(w)
    await until(lambda: len(of_customer(receiver, w["customer"], "depot")) >= len(log)
                and of_customer(receiver, w["customer"], "connections"))
    depot = of_customer(receiver, w["customer"], "depot")
    assert [(int(m["logSequence"]), m["chainHash"]) for m in depot] == [(e.sequence, e.hash) for e in log]
    assert [m["type"] for m in depot] == ["LOGON_DATA_CREATED", "LOGON_DATA_REVEALED"]
    assert depot[1]["detail"] == "reason: siem check" and depot[1]["app"] == "remotesupport-depot"
    assert depot[1]["pri"] == 10 * 8 + 6  # authpriv.info
    [incident] = of_customer(receiver, w["customer"], "connections")
    assert incident["type"] == "INCIDENT_CREATED" and incident["system"] == w["system"]
    assert incident["app"] == "remotesupport-connections"
    assert not any("siem-secret" in repr(m) for m in receiver.messages)


async def test_a_siem_that_is_down_gets_every_event_once_it_answers(world):
    w, receiver = world, world["receiver"]
    await receiver.stop()
    await activity(w)
    await asyncio.sleep(0.5)  # passes fail meanwhile: nothing is recorded as sent
    await receiver.start()
    log = await log_of(w)
    await until(lambda: {int(m["logSequence"]) for m in of_customer(receiver, w["customer"], "depot")}
                == {e.sequence for e in log})
    await until(lambda: len({m["id"] for m in of_customer(receiver, w["customer"], "connections")}) == 2)


async def test_a_restart_resumes_where_the_export_stopped(world):
    w, receiver = world, world["receiver"]
    await activity(w)
    log = await log_of(w)
    await until(lambda: {int(m["logSequence"]) for m in of_customer(receiver, w["customer"], "depot")}
                == {e.sequence for e in log})
    await until(lambda: len({m["id"] for m in of_customer(receiver, w["customer"], "connections")}) == 3)
    await asyncio.sleep(0.3)  # nothing more is on its way
    before = len(receiver.messages)
    await start_exporting(w["suite"], receiver)  # both services restart: their cursors are in their databases
    await activity(w)
    log = await log_of(w)
    await until(lambda: {int(m["logSequence"]) for m in of_customer(receiver, w["customer"], "depot")}
                == {e.sequence for e in log})
    await asyncio.sleep(0.3)
    again = [m for m in receiver.messages[before:] if m["customer"] == f"customers/{w['customer']}"]
    assert len(again) == 3, "only the new events were sent after the restart"


async def test_json_lines(world):
    w = world
    receiver = Receiver(jsonl=True)
    await receiver.start()
    await start_exporting(w["suite"], receiver, format="jsonl")
    await activity(w)
    log = await log_of(w)
    # a new SIEM target shares the services' cursors: it receives what was not yet exported
    await until(lambda: any(m.get("log_sequence") == str(log[-1].sequence) for m in receiver.messages))
    last = [m for m in receiver.messages if m.get("log_sequence") == str(log[-1].sequence)][0]
    assert last["type"] == "EVENT_TYPE_LOGON_DATA_REVEALED" and last["chain_hash"] == log[-1].hash
    await receiver.stop()


async def test_the_export_mark_never_moves_back(world):
    """Two replicas may record their marks in either order: the further one stays."""
    outbox = world["suite"].running["depot"].app.exporter.outbox
    await outbox.exported("9999999", 7)
    await outbox.exported("9999999", 3)
    async with world["suite"].running["depot"].app.depot.store.read() as tx:
        rows = await tx.session.execute(text("SELECT position FROM siem_cursors WHERE customer = '9999999'"))
        assert [r[0] for r in rows] == [7]


@pytest.mark.parametrize("settings, message", [
    (SiemSettings(address="nowhere"), "RS_SIEM_ADDRESS must be host:port"),
    (SiemSettings(address="127.0.0.1:6514", format="cef"), "RS_SIEM_FORMAT must be one of rfc5424, jsonl"),
])
async def test_configuration_errors_stop_the_service(world, settings, message):
    with pytest.raises(SystemExit, match=message):
        settings.check("dev")


async def test_production_exports_only_over_tls(world):
    with pytest.raises(SystemExit, match="only over TLS"):
        SiemSettings(address="siem.example.com:6514").check("production")
    SiemSettings(address="siem.example.com:6514", tls=True).check("production")
