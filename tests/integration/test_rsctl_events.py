"""`rsctl events watch` through the gateway of a running suite: a line per event of both services, --json lines,
--type, a --cursor-file that resumes without loss or repetition, and its refusals with their exit codes."""
from __future__ import annotations

import datetime as dt
import importlib
import json

import pytest
import pytest_asyncio

from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.kit.validate import to_timestamp
from tests.feeds import Watcher
from tests.integration.test_rsctl_sessions import Rsctl

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite, tmp_path_factory):
    if "gateway" not in suite.running:
        await suite.start_service("gateway", build=importlib.import_module("gateway.server").build)
    tmp = tmp_path_factory.mktemp("rsctl-events")
    customer = await suite.new_customer()
    user, token = await suite.new_user(customer, ["MAINTAIN_SYSTEM_DATA", "EDIT_ALL_LOGIN_DATA"])
    _, stranger = await suite.new_user(await suite.new_customer(), ["EDIT_ALL_LOGIN_DATA"])
    environ = {"RSCTL_ADDRESS": suite.addr["gateway"]}
    system = await suite.new_system(customer, token, sid="RSE")
    return {"suite": suite, "customer": customer, "user": user, "token": token, "system": system, "tmp": tmp,
            "rsctl": Rsctl(token, {"RSCTL_CONFIG_DIR": str(tmp / "user"), **environ}),
            "stranger": Rsctl(stranger, {"RSCTL_CONFIG_DIR": str(tmp / "stranger"), **environ})}


async def now_cursor(w) -> str:
    """The cursor of a watch opened now (the feed's end)."""
    stub = gateway_pb2_grpc.RemoteSupportServiceStub(w["suite"].channels["gateway"])
    watcher = await Watcher.open(stub.WatchEvents, gpb.WatchEventsRequest(parent=f"customers/{w['customer']}"),
                                 w["suite"].md(w["token"]))
    await watcher.close()
    return watcher.cursor


async def create(w) -> dp.LogonData:
    suite = w["suite"]
    return (await suite.stub("depot").CreateLogonData(dp.CreateLogonDataRequest(
        parent=w["system"], logon_data=dp.LogonData(
            kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT1", client="001",
            expire_time=to_timestamp(suite.clock.now() + dt.timedelta(days=3))),
        secret="rsctl-feed-secret"), metadata=suite.md(w["token"]))).logon_data


async def test_watch_prints_resumes_from_its_cursor_file_and_filters(world):
    w = world
    cursor_file = w["tmp"] / "cursor"
    cursor_file.write_text(await now_cursor(w) + "\n")
    entry = await create(w)
    await w["suite"].stub("depot").RevealLogonData(dp.RevealLogonDataRequest(name=entry.name),
                                                  metadata=w["suite"].md(w["token"]))
    first = await w["rsctl"]("events", "watch", w["customer"], "--cursor-file", str(cursor_file), "--count", "2")
    lines = first.out.splitlines()
    assert len(lines) == 2 and "LOGON_DATA_CREATED" in lines[0] and "LOGON_DATA_REVEALED" in lines[1]
    assert all(w["user"] in line and entry.name in line and "depot#" in line for line in lines)
    assert "rsctl-feed-secret" not in first.out
    assert oct(cursor_file.stat().st_mode & 0o777) == "0o600"
    second_entry = await create(w)
    second = await w["rsctl"]("events", "watch", w["customer"], "--cursor-file", str(cursor_file), "--count", "1",
                              "--json")
    [event] = [json.loads(line) for line in second.out.splitlines()]  # nothing of the first watch again
    assert event["type"] == "EVENT_TYPE_LOGON_DATA_CREATED" and event["resource"] == second_entry.name
    cursor = cursor_file.read_text().strip()
    await create(w)
    await w["suite"].stub("depot").RevealLogonData(dp.RevealLogonDataRequest(name=second_entry.name),
                                                  metadata=w["suite"].md(w["token"]))
    only = await w["rsctl"]("events", "watch", w["customer"], "--cursor", cursor, "--type", "logon-data-revealed",
                            "--count", "1")
    assert only.out.count("\n") == 1 and "LOGON_DATA_REVEALED" in only.out and second_entry.name in only.out


async def test_refusals_have_their_exit_codes(world):
    w = world
    bad = await w["rsctl"]("events", "watch", w["customer"], "--cursor", "not-a-cursor", expect=6)
    assert "INVALID_ARGUMENT" in bad.err and "cursor" in bad.err
    await w["rsctl"]("events", "watch", w["customer"], "--type", "no-such-type", expect=2)
    denied = await w["stranger"]("events", "watch", w["customer"], "--count", "1", expect=4)
    assert "PERMISSION_DENIED" in denied.err
