"""gateway: PrepareRemoteAccess leaves no half-prepared access behind — not when its last step fails because
the depot is down, and not when the caller goes away (deadline spent) at any point of the flow; EndRemoteAccess
failing after its first effect says what it did."""
from __future__ import annotations

import datetime as dt
import itertools

import grpc
import pytest
import pytest_asyncio

import gateway.server
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
from services.kit.validate import to_timestamp
from tests.helpers import expect_error, status_details

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACTIVE = (cpb.CONNECTION_STATE_OPEN, cpb.CONNECTION_STATE_SCHEDULED)
_sids = itertools.count()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite):
    await suite.start_service("gateway", build=gateway.server.build)
    customer = await suite.new_customer()
    _, token = await suite.new_user(customer, ["MAINTAIN_SYSTEM_DATA", "OPEN_REMOTE_CONNECTIONS",
                                               "EDIT_ALL_LOGIN_DATA"])
    return {"customer": customer, "token": token}


def gw(suite) -> gateway_pb2_grpc.RemoteSupportServiceStub:
    return gateway_pb2_grpc.RemoteSupportServiceStub(suite.channels["gateway"])


async def new_system(suite, world) -> str:
    n = next(_sids)
    return await suite.new_system(world["customer"], world["token"], sid=f"U{n % 100:02d}",
                                  installation=str(30000000 + n))


def request(suite, system: str) -> gpb.PrepareRemoteAccessRequest:
    end = to_timestamp(suite.clock.now() + dt.timedelta(hours=4))
    return gpb.PrepareRemoteAccessRequest(
        system=system, connection_type="connectionTypes/SSH", parameters={"host": "10.9.8.7"}, end_time=end,
        reason="undo test", logon_data=dpb.LogonData(kind=dpb.LOGON_DATA_KIND_SERVER_OS_USER, user_name="root"),
        secret="undo-S3cret")


async def left_behind(suite, world, system: str) -> tuple[list[str], list[str]]:
    """The system's open or scheduled windows and its set-ups."""
    md = suite.md(world["token"])
    connections = suite.stub("connections")
    windows = (await connections.ListConnections(cpb.ListConnectionsRequest(parent=system), metadata=md)).connections
    setups = (await connections.ListConnectionSetups(cpb.ListConnectionSetupsRequest(parent=system),
                                                     metadata=md)).connection_setups
    return [w.name for w in windows if w.state in ACTIVE], [s.name for s in setups]


async def test_prepare_undoes_its_work_when_the_depot_is_down(suite, world):
    md = suite.md(world["token"])
    warm = await new_system(suite, world)  # the gateway has talked to the depot before it goes away
    await gw(suite).PrepareRemoteAccess(request(suite, warm), metadata=md)

    system = await new_system(suite, world)
    await suite.stop_service("depot")
    try:
        err = await expect_error(gw(suite).PrepareRemoteAccess(request(suite, system), metadata=md),
                                 grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
        assert "depot" in err.details()
        assert "undo_incomplete" not in status_details(err)[2]
        windows, setups = await left_behind(suite, world, system)
        assert windows == [], "the window opened in the call is closed again"
        assert setups == [], "the set-up created in the call is deleted again"
    finally:
        await suite.start_service("depot")  # on a new port: the gateway is restarted to find it
        await suite.stop_service("gateway")
        await suite.start_service("gateway", build=gateway.server.build)

    # nothing left behind stands in the way: the same call now succeeds
    done = await gw(suite).PrepareRemoteAccess(request(suite, system), metadata=md)
    assert done.connection.state == cpb.CONNECTION_STATE_OPEN and done.logon_data.has_secret


@pytest.mark.parametrize("timeout", [0.005, 0.02, 0.04, 0.08, 0.15, 0.3])
async def test_a_caller_who_goes_away_leaves_nothing_half_prepared(suite, world, timeout):
    md = suite.md(world["token"])
    system = await new_system(suite, world)
    try:
        response = await gw(suite).PrepareRemoteAccess(request(suite, system), metadata=md, timeout=timeout)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.details()
        response = None
    await suite.running["gateway"].app.backends.drain(10)  # the flow ends (undone) after its caller left
    windows, setups = await left_behind(suite, world, system)
    entries = (await suite.stub("depot").ListLogonData(dpb.ListLogonDataRequest(parent=system),
                                                       metadata=md)).logon_data
    if response is None:
        # all or nothing: nothing, or (the answer finished but reached its caller too late) everything
        complete = (len(windows) == 1 and len(setups) == 1 and len(entries) == 1
                    and entries[0].connection == windows[0])
        assert (windows, setups, list(entries)) == ([], [], []) or complete, f"half-prepared after {timeout}s"
    else:
        assert windows == [response.connection.name] and [e.name for e in entries] == [response.logon_data.name]


async def test_an_answer_that_would_reach_its_caller_too_late_is_undone_not_sent(suite, world, monkeypatch):
    from gateway import prepare
    monkeypatch.setattr(prepare, "DELIVERY_MARGIN_S", 3600.0)  # every answer finishes "too close" to its deadline
    md = suite.md(world["token"])
    system = await new_system(suite, world)
    await expect_error(gw(suite).PrepareRemoteAccess(request(suite, system), metadata=md, timeout=30),
                       grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")
    await suite.running["gateway"].app.backends.drain(10)
    windows, setups = await left_behind(suite, world, system)
    entries = (await suite.stub("depot").ListLogonData(dpb.ListLogonDataRequest(parent=system),
                                                       metadata=md)).logon_data
    assert (windows, setups, list(entries)) == ([], [], []), "the finished flow was undone"
    monkeypatch.setattr(prepare, "DELIVERY_MARGIN_S", 0.01)
    done = await gw(suite).PrepareRemoteAccess(request(suite, system), metadata=md, timeout=30)
    assert done.connection.state == cpb.CONNECTION_STATE_OPEN


async def test_end_failing_after_the_close_names_what_was_done(suite, world, monkeypatch):
    """A failure after the first effect (the depot goes away between the checks and the deletions) is reported as
    the partial outcome it is: the window is closed, the answer says so, and a retry deletes the entry."""
    from gateway import end_access

    md = suite.md(world["token"])
    system = await new_system(suite, world)
    prepared = await gw(suite).PrepareRemoteAccess(request(suite, system), metadata=md)
    real_delete = end_access.delete

    async def depot_gone_before_deleting(b, name, *, validate_only=False):
        if not validate_only:
            await suite.stop_service("depot")
        return await real_delete(b, name, validate_only=validate_only)

    monkeypatch.setattr(end_access, "delete", depot_gone_before_deleting)
    try:
        err = await expect_error(gw(suite).EndRemoteAccess(gpb.EndRemoteAccessRequest(
            connection=prepared.connection.name, delete_logon_data=True), metadata=md, timeout=30),
            grpc.StatusCode.UNAVAILABLE)
    finally:
        monkeypatch.undo()
        await suite.start_service("depot")  # on a new port: the gateway is restarted to find it
        await suite.stop_service("gateway")
        await suite.start_service("gateway", build=gateway.server.build)
    assert status_details(err)[2].get("closed_connection") == prepared.connection.name
    windows, _ = await left_behind(suite, world, system)
    assert windows == []
    again = await gw(suite).EndRemoteAccess(gpb.EndRemoteAccessRequest(
        connection=prepared.connection.name, delete_logon_data=True), metadata=md)
    assert list(again.deleted_logon_data) == [prepared.logon_data.name]
