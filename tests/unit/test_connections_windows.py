"""Windows over a real database (SQLite and PostgreSQL) with an injected clock: the rules of opening, the
states at their exact boundaries, overlaps (also under concurrency), closing early, and the sweep that
records each automatic close once."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from remotesupport.connections.v1 import connections_pb2 as pb
from services.connections import convert, incidents, setups, systems, windows
from services.connections.incidents import IncidentFields
from services.connections.model import WindowState
from services.connections.systems import SystemFields
from services.connections.windows import OpenRequest, state_of
from services.kit.clock import as_utc
from services.kit.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from tests.unit.connections_support import T0, USER, new_customer

pytestmark = pytest.mark.asyncio(loop_scope="module")

H = dt.timedelta(hours=1)
US = dt.timedelta(microseconds=1)


async def _system(db, clock, catalog, *codes: str) -> str:
    customer = new_customer()
    await systems.create_system(db, clock, customer, SystemFields("0020000001", "PRD", "1",
                                                                  saprouter_route="/H/router/S/3299"))
    params = {"SSH": {"host": "h"}, "R3_SUPPORT": {"host": "h", "instance_number": "00"}, "GOTOASSIST": {}}
    for code in codes or ("SSH",):
        await setups.set_up_connection(db, clock, USER, customer, "1", catalog.get(code), params[code])
    return customer


def _request(catalog, start, end, code="SSH", incident=None, reason="") -> OpenRequest:
    return OpenRequest(catalog.get(code), start, end, incident, reason)


async def _open(db, clock, catalog, customer, start, end, code="SSH", **kw):
    return await windows.open_connection(db, clock, USER, customer, "1", _request(catalog, start, end, code, **kw))


async def _state(db, clock, customer, row) -> WindowState:
    got, _ = await windows.get_connection(db, customer, "1", row.id)
    return state_of(got, clock.now())


async def test_open_defaults_start_to_now_and_keeps_who_and_when(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    row = await windows.open_connection(conn_db, clock, USER, customer, "1",
                                        _request(connection_types, None, T0 + H, reason="incident analysis"))
    assert as_utc(row.start_time) == T0 and as_utc(row.end_time) == T0 + H
    assert (row.opener, row.reason, row.closer) == (USER.user, "incident analysis", None)
    assert as_utc(row.create_time) == T0
    msg = convert.window(row, T0)
    assert msg.state == pb.CONNECTION_STATE_OPEN and msg.name == f"customers/{customer}/systems/1/connections/{row.id}"
    assert msg.connection_type == "connectionTypes/SSH" and not msg.HasField("close_time")


async def test_states_at_the_exact_boundaries(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    start, end = T0 + H, T0 + 3 * H
    row = await _open(conn_db, clock, connection_types, customer, start, end)
    for instant, state in [(start - US, WindowState.SCHEDULED), (start, WindowState.OPEN),
                           (end - US, WindowState.OPEN), (end, WindowState.EXPIRED)]:
        clock.set(instant)
        assert await _state(conn_db, clock, customer, row) is state, instant
        listed = {}
        for wanted in WindowState:
            rows, _ = await windows.list_connections(conn_db, clock, customer, "1", wanted, 100, "")
            listed[wanted] = [r.id for r in rows]
        assert listed[state] == [row.id] and sum(map(len, listed.values())) == 1, instant


async def test_opening_rules(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    max_ssh = dt.timedelta(hours=72)

    async def violations(start, end, code="SSH"):
        with pytest.raises(InvalidArgument) as caught:
            await _open(conn_db, clock, connection_types, customer, start, end, code)
        return [f for f, _ in caught.value.violations]

    assert await violations(T0 - US, T0 + H) == ["start_time"]
    assert await violations(T0 + H, T0 + H) == ["end_time"]
    assert await violations(T0 + H, T0) == ["end_time"]
    assert await violations(T0, None) == ["end_time"]
    assert await violations(T0, T0 + max_ssh + US) == ["end_time"]
    row = await _open(conn_db, clock, connection_types, customer, T0, T0 + max_ssh)  # exactly the maximum
    assert as_utc(row.end_time) - as_utc(row.start_time) == max_ssh
    with pytest.raises(FailedPrecondition, match="not set up"):
        await _open(conn_db, clock, connection_types, customer, T0, T0 + H, "R3_SUPPORT")
    with pytest.raises(NotFound):
        await windows.open_connection(conn_db, clock, USER, customer, "2", _request(connection_types, T0, T0 + H))
    with pytest.raises(InvalidArgument) as caught:
        await _open(conn_db, clock, connection_types, customer, T0 + 100 * H, T0 + 101 * H, reason="x" * 501)
    assert [f for f, _ in caught.value.violations] == ["reason"]


async def test_application_types_allow_longer_windows(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types, "R3_SUPPORT")
    await _open(conn_db, clock, connection_types, customer, T0, T0 + dt.timedelta(days=14), "R3_SUPPORT")
    with pytest.raises(InvalidArgument):
        await _open(conn_db, clock, connection_types, customer, T0 + dt.timedelta(days=20),
                    T0 + dt.timedelta(days=34, microseconds=1), "R3_SUPPORT")


async def test_overlapping_windows_are_refused_naming_the_existing_one(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types, "SSH", "GOTOASSIST")
    existing = await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 3 * H)
    name = f"customers/{customer}/systems/1/connections/{existing.id}"
    for start, end in [(T0 + 2 * H, T0 + 4 * H), (T0, T0 + H + US), (T0 + 3 * H - US, T0 + 5 * H),
                       (T0 + H, T0 + 3 * H), (T0, T0 + 6 * H), (T0 + 2 * H, T0 + 2 * H + US)]:
        with pytest.raises(Conflict) as caught:
            await _open(conn_db, clock, connection_types, customer, start, end)
        assert name in caught.value.message and caught.value.metadata["existing_connection"] == name
    await _open(conn_db, clock, connection_types, customer, T0, T0 + H)  # ends where the other starts
    await _open(conn_db, clock, connection_types, customer, T0 + 3 * H, T0 + 4 * H)  # starts where it ends
    await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 3 * H, "GOTOASSIST")  # another type


async def test_closed_and_expired_windows_do_not_block(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    scheduled = await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 2 * H)
    await windows.close_connection(conn_db, clock, USER, customer, "1", scheduled.id)
    await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 2 * H)
    clock.set(T0 + 2 * H)
    await _open(conn_db, clock, connection_types, customer, T0 + 2 * H, T0 + 3 * H)


async def test_concurrent_overlapping_opens_store_exactly_one(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    results = await asyncio.gather(*(
        _open(conn_db, clock, connection_types, customer, T0 + i * dt.timedelta(minutes=10), T0 + 2 * H)
        for i in range(8)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    rows, _ = await windows.list_connections(conn_db, clock, customer, "1", None, 100, "")
    assert len(rows) == 1


async def test_close_early_records_who_and_when(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    row = await _open(conn_db, clock, connection_types, customer, T0, T0 + 2 * H)
    clock.set(T0 + H)
    closed = await windows.close_connection(conn_db, clock, USER, customer, "1", row.id)
    assert (closed.closer, as_utc(closed.close_time)) == (USER.user, T0 + H)
    clock.set(T0 + 5 * H)  # closed stays closed, also after the end has passed
    assert await _state(conn_db, clock, customer, row) is WindowState.CLOSED
    msg = convert.window(closed, clock.now())
    assert msg.closer == USER.user and msg.close_time.ToDatetime(dt.timezone.utc) == T0 + H
    with pytest.raises(FailedPrecondition, match="already CLOSED"):
        await windows.close_connection(conn_db, clock, USER, customer, "1", row.id)


async def test_close_at_the_end_boundary(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    first = await _open(conn_db, clock, connection_types, customer, T0, T0 + H)
    second = await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 2 * H)
    clock.set(T0 + H)
    with pytest.raises(FailedPrecondition, match="already EXPIRED"):
        await windows.close_connection(conn_db, clock, USER, customer, "1", first.id)
    clock.set(T0 + 2 * H - US)
    await windows.close_connection(conn_db, clock, USER, customer, "1", second.id)
    with pytest.raises(NotFound):
        await windows.close_connection(conn_db, clock, USER, customer, "1", "0" * 32)


def _mine(names: list[str], customer: str) -> list[str]:
    return [n for n in names if n.startswith(f"customers/{customer}/")]


async def test_the_sweep_records_each_automatic_close_once(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types, "SSH", "GOTOASSIST")
    ends_first = await _open(conn_db, clock, connection_types, customer, T0, T0 + H)
    ends_later = await _open(conn_db, clock, connection_types, customer, T0, T0 + 2 * H, "GOTOASSIST")
    closed = await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 2 * H)
    await windows.close_connection(conn_db, clock, USER, customer, "1", closed.id)
    prefix = f"customers/{customer}/systems/1/connections/"

    clock.set(T0 + H - US)
    assert _mine(await windows.record_expired(conn_db, clock), customer) == []
    clock.set(T0 + H)
    assert _mine(await windows.record_expired(conn_db, clock), customer) == [prefix + ends_first.id]
    assert _mine(await windows.record_expired(conn_db, clock), customer) == []
    clock.set(T0 + 10 * H)
    assert _mine(await windows.record_expired(conn_db, clock), customer) == [prefix + ends_later.id]
    assert _mine(await windows.record_expired(conn_db, clock), customer) == []

    recorded, _ = await windows.get_connection(conn_db, customer, "1", ends_first.id)
    assert recorded.closed_by_sweep and as_utc(recorded.close_time) == T0 + H and recorded.closer is None
    msg = convert.window(recorded, clock.now())
    assert msg.state == pb.CONNECTION_STATE_EXPIRED and msg.closer == ""
    assert msg.close_time.ToDatetime(dt.timezone.utc) == T0 + H
    untouched, _ = await windows.get_connection(conn_db, customer, "1", closed.id)
    assert not untouched.closed_by_sweep and untouched.closer == USER.user


async def test_concurrent_sweeps_record_each_window_once(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    opened = [await _open(conn_db, clock, connection_types, customer, T0 + i * H, T0 + (i + 1) * H) for i in range(6)]
    clock.set(T0 + 7 * H)
    results = await asyncio.gather(*(windows.record_expired(conn_db, clock, batch=2) for _ in range(4)))
    mine = [n for result in results for n in _mine(result, customer)]
    assert sorted(mine) == sorted(f"customers/{customer}/systems/1/connections/{w.id}" for w in opened)


async def test_list_newest_first_with_paging(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    opened = [await _open(conn_db, clock, connection_types, customer, T0 + i * H, T0 + (i + 1) * H) for i in range(5)]
    ids, token = [], ""
    while True:
        rows, token = await windows.list_connections(conn_db, clock, customer, "1", None, 2, token)
        ids += [r.id for r in rows]
        if not token:
            break
    assert ids == [w.id for w in reversed(opened)]
    _, token = await windows.list_connections(conn_db, clock, customer, "1", None, 2, "")
    with pytest.raises(InvalidArgument):  # a token of another filter
        await windows.list_connections(conn_db, clock, customer, "1", WindowState.OPEN, 2, token)


async def test_delete_is_refused_while_a_window_is_open_or_scheduled(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    row = await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 2 * H)
    with pytest.raises(FailedPrecondition, match=row.id):
        await setups.delete_setup(conn_db, clock, customer, "1", "SSH")
    with pytest.raises(FailedPrecondition, match=row.id):
        await systems.delete_system(conn_db, clock, customer, "1", "")
    clock.set(T0 + 2 * H)
    await setups.delete_setup(conn_db, clock, customer, "1", "SSH")
    await systems.delete_system(conn_db, clock, customer, "1", "")
    with pytest.raises(NotFound):
        await windows.get_connection(conn_db, customer, "1", row.id)
    # who opened what stays on record: registered again, the system shows its past window
    await systems.create_system(conn_db, clock, customer, SystemFields("0020000001", "PRD", "1"))
    kept, _ = await windows.get_connection(conn_db, customer, "1", row.id)
    assert kept.opener == USER.user and state_of(kept, clock.now()) is WindowState.EXPIRED


async def test_a_window_for_an_incident(conn_db, clock, connection_types):
    customer = await _system(conn_db, clock, connection_types)
    await systems.create_system(conn_db, clock, customer, SystemFields("0020000001", "QAS", "2"))
    mine = await incidents.create_incident(conn_db, clock, USER, customer, IncidentFields("1", "Dump", "", "HIGH"))
    other = await incidents.create_incident(conn_db, clock, USER, customer, IncidentFields("2", "Slow", "", "LOW"))
    row = await _open(conn_db, clock, connection_types, customer, T0, T0 + H, incident=mine.id)
    assert row.incident_id == mine.id
    for incident_id, words in [(other.id, "another system"), ("f" * 32, "no incident")]:
        with pytest.raises(InvalidArgument, match=words):
            await _open(conn_db, clock, connection_types, customer, T0 + H, T0 + 2 * H, incident=incident_id)
    with pytest.raises(InvalidArgument, match="no incident"):  # an incident of another customer
        await _open(conn_db, clock, connection_types, await _system(conn_db, clock, connection_types), T0, T0 + H,
                    incident=mine.id)
