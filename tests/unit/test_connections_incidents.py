"""Incidents over a real database (SQLite and PostgreSQL) with authz's assignment methods replaced by a
recording fake that can refuse, be down, or lose its answer: the life cycle, the assignment that follows
it, and that a failed authz update leaves the incident unchanged and no assignment outliving its status."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import grpc
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from services.connections import incidents, systems
from services.connections.incidents import IncidentFields, IncidentWorkflow
from services.connections.model import Actor, IncidentStatus
from services.connections.systems import SystemFields
from services.connections.tables import AssignmentCheckRow
from services.kit.errors import (
    DependencyUnavailable,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from tests.unit.connections_support import ENGINEER, USER, FakeAssignments, new_customer

pytestmark = pytest.mark.asyncio(loop_scope="module")

S = IncidentStatus
OTHER_ENGINEER = Actor("users/eng.two", "SUPPORT_ENGINEER")
GRACE = dt.timedelta(seconds=60)


@pytest.fixture
def authz():
    return FakeAssignments()


@pytest.fixture
def flow(conn_db, clock, authz):
    return IncidentWorkflow(conn_db, clock, authz)


async def _incident(db, clock, title="Short dump in VA01", system="1"):
    customer = new_customer()
    await systems.create_system(db, clock, customer, SystemFields("0020000001", "PRD", "1"))
    row = await incidents.create_incident(db, clock, USER, customer, IncidentFields(system, title, "details", "HIGH"))
    return customer, row


def _name(customer, row) -> str:
    return f"customers/{customer}/incidents/{row.id}"


async def _notes(store, customer) -> int:
    async with store.db.unit_of_work() as session:
        return await session.scalar(select(func.count()).select_from(AssignmentCheckRow)
                                    .where(AssignmentCheckRow.customer == customer))


async def _stored(db, customer, row):
    return await incidents.get_incident(db, customer, row.id)


# --- create, read, list ---------------------------------------------------------------------------


async def test_create_reports_a_new_incident(conn_db, clock):
    customer, row = await _incident(conn_db, clock)
    stored = await _stored(conn_db, customer, row)
    assert (stored.status, stored.processor, stored.reporter, stored.priority) == ("NEW", None, USER.user, "HIGH")
    assert stored.system_number == "1" and stored.title == "Short dump in VA01"


@pytest.mark.parametrize("values,field", [
    (IncidentFields("1", "", "", "HIGH"), "incident.title"),
    (IncidentFields("1", "   ", "", "HIGH"), "incident.title"),
    (IncidentFields("1", "t" * 201, "", "HIGH"), "incident.title"),
    (IncidentFields("1", "a\nb", "", "HIGH"), "incident.title"),
    (IncidentFields("1", "t", "d" * 10001, "HIGH"), "incident.description"),
    (IncidentFields("1", "t", "", ""), "incident.priority"),
    (IncidentFields("9", "t", "", "LOW"), "incident.system"),
])
async def test_create_validation_names_the_field(conn_db, clock, values, field):
    customer, _ = await _incident(conn_db, clock)
    with pytest.raises(InvalidArgument) as caught:
        await incidents.create_incident(conn_db, clock, USER, customer, values)
    assert [f for f, _ in caught.value.violations] == [field]


async def test_list_newest_first_by_status_and_system_with_paging(conn_db, clock, flow):
    customer, first = await _incident(conn_db, clock)
    await systems.create_system(conn_db, clock, customer, SystemFields("0020000001", "QAS", "2"))
    clock.advance(seconds=1)
    second = await incidents.create_incident(conn_db, clock, USER, customer, IncidentFields("2", "b", "", "LOW"))
    clock.advance(seconds=1)
    third = await incidents.create_incident(conn_db, clock, USER, customer, IncidentFields("1", "c", "", "LOW"))
    await flow.assign_processor(ENGINEER, customer, third.id, "")

    async def ids(status=None, system=None, size=100):
        out, token = [], ""
        while True:
            rows, token = await incidents.list_incidents(conn_db, customer, status, system, size, token)
            out += [r.id for r in rows]
            if not token:
                return out

    assert await ids() == [third.id, second.id, first.id]
    assert await ids(size=1) == [third.id, second.id, first.id]
    assert await ids(status=S.NEW) == [second.id, first.id]
    assert await ids(status=S.IN_PROCESS_AT_VENDOR) == [third.id]
    assert await ids(system="1") == [third.id, first.id]
    assert await incidents.list_incidents(conn_db, new_customer(), None, None, 10, "") == ([], "")
    with pytest.raises(NotFound):
        await incidents.get_incident(conn_db, customer, "0" * 32)


# --- the life cycle and its assignment -------------------------------------------------------------


async def test_the_life_cycle_keeps_the_assignment_in_step(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    name = _name(customer, row)

    taken = await flow.assign_processor(ENGINEER, customer, row.id, "")
    assert (taken.status, taken.processor) == ("IN_PROCESS_AT_VENDOR", ENGINEER.user)
    assigned = authz.current[name]
    assert (assigned.engineer, assigned.system) == (ENGINEER.user, f"customers/{customer}/systems/1")

    waiting = await flow.update_status(ENGINEER, customer, row.id, S.CUSTOMER_ACTION, taken.etag)
    assert waiting.status == "CUSTOMER_ACTION" and name not in authz.current

    back = await flow.update_status(USER, customer, row.id, S.IN_PROCESS_AT_VENDOR, "")
    assert back.processor == ENGINEER.user and authz.current[name].engineer == ENGINEER.user

    confirmed = await flow.update_status(USER, customer, row.id, S.CONFIRMED, "")
    assert confirmed.status == "CONFIRMED" and name not in authz.current
    assert authz.calls == [("set", name), ("delete", name), ("set", name), ("delete", name)]
    assert await _notes(conn_db, customer) == 0

    with pytest.raises(FailedPrecondition, match="CONFIRMED"):
        await flow.update_status(USER, customer, row.id, S.IN_PROCESS_AT_VENDOR, "")
    with pytest.raises(FailedPrecondition, match="CONFIRMED"):
        await flow.assign_processor(ENGINEER, customer, row.id, "")


async def test_confirming_a_new_incident_needs_no_authz(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    authz.fail = ["down"]  # would fail any call
    assert (await flow.update_status(USER, customer, row.id, S.CONFIRMED, "")).status == "CONFIRMED"
    assert authz.calls == []


async def test_assigning_another_engineer_moves_the_assignment(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    await flow.assign_processor(ENGINEER, customer, row.id, "")
    moved = await flow.assign_processor(ENGINEER, customer, row.id, OTHER_ENGINEER.user)
    assert moved.processor == OTHER_ENGINEER.user
    assert authz.current[_name(customer, row)].engineer == OTHER_ENGINEER.user
    with pytest.raises(PermissionDenied, match="processing"):  # only the processor hands it to the customer
        await flow.update_status(ENGINEER, customer, row.id, S.CUSTOMER_ACTION, "")
    with pytest.raises(PermissionDenied):  # nor does the customer
        await flow.update_status(USER, customer, row.id, S.CUSTOMER_ACTION, "")
    await flow.update_status(OTHER_ENGINEER, customer, row.id, S.CUSTOMER_ACTION, "")
    with pytest.raises(FailedPrecondition, match="CUSTOMER_ACTION"):
        await flow.assign_processor(ENGINEER, customer, row.id, "")


async def test_a_stale_etag_changes_nothing(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    await flow.assign_processor(ENGINEER, customer, row.id, "")
    with pytest.raises(EtagMismatch):
        await flow.update_status(ENGINEER, customer, row.id, S.CUSTOMER_ACTION, row.etag)
    assert authz.calls == [("set", _name(customer, row))]
    assert (await _stored(conn_db, customer, row)).status == "IN_PROCESS_AT_VENDOR"


async def test_unknown_incident_is_not_found_and_leaves_no_note(conn_db, clock, flow, authz):
    customer, _ = await _incident(conn_db, clock)
    with pytest.raises(NotFound):
        await flow.assign_processor(ENGINEER, customer, "0" * 32, "")
    assert authz.calls == [] and await _notes(conn_db, customer) == 0


# --- when authz cannot be updated -----------------------------------------------------------------


async def _unchanged(db, customer, before):
    after = await _stored(db, customer, before)
    assert (after.status, after.processor, after.etag) == (before.status, before.processor, before.etag)


async def test_authz_refusing_the_processor_leaves_the_incident_unchanged(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    authz.fail = ["refuse"]
    with pytest.raises(InvalidArgument) as caught:
        await flow.assign_processor(ENGINEER, customer, row.id, "users/S0000000009")
    assert caught.value.violations[0][0] == "processor"
    await _unchanged(conn_db, customer, row)
    assert authz.current == {} and authz.calls == [("set", _name(customer, row))]
    assert await _notes(conn_db, customer) == 0


async def test_authz_refusing_this_service_is_unavailable(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)

    async def refuse_service(assignment):
        from services.connections.assignment_client import AssignmentRefused
        raise AssignmentRefused(grpc.StatusCode.PERMISSION_DENIED, "service account may not")

    authz.set = refuse_service
    with pytest.raises(DependencyUnavailable):
        await flow.assign_processor(ENGINEER, customer, row.id, "")
    await _unchanged(conn_db, customer, row)


@pytest.mark.parametrize("mode", ["down", "lost_answer"])
async def test_authz_down_leaves_the_incident_unchanged_and_no_assignment(conn_db, clock, flow, authz, mode):
    customer, row = await _incident(conn_db, clock)
    authz.fail = [mode]
    with pytest.raises(DependencyUnavailable, match="not changed"):
        await flow.assign_processor(ENGINEER, customer, row.id, "")
    await _unchanged(conn_db, customer, row)
    name = _name(customer, row)
    assert authz.current == {}  # a change authz may have made was taken back
    assert authz.calls == [("set", name), ("delete", name)]
    assert await _notes(conn_db, customer) == 0


async def test_authz_down_when_leaving_keeps_the_incident_in_process_with_its_assignment(conn_db, clock, flow,
                                                                                          authz):
    customer, row = await _incident(conn_db, clock)
    taken = await flow.assign_processor(ENGINEER, customer, row.id, "")
    authz.fail = ["lost_answer"]  # the delete happened, but the answer was lost
    with pytest.raises(DependencyUnavailable):
        await flow.update_status(USER, customer, row.id, S.CONFIRMED, "")
    await _unchanged(conn_db, customer, taken)
    assert authz.current[_name(customer, row)].engineer == ENGINEER.user  # put back
    assert await _notes(conn_db, customer) == 0


@contextlib.contextmanager
def failing_commit():
    """Yields `arm()`; once armed, the next commit of any session fails."""
    armed = []

    def before_commit(_session):
        if armed:
            armed.clear()
            raise RuntimeError("the database went away")

    event.listen(Session, "before_commit", before_commit)
    try:
        yield lambda: armed.append(True)
    finally:
        event.remove(Session, "before_commit", before_commit)


async def test_a_failed_commit_after_authz_was_updated_is_taken_back(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    with failing_commit() as arm:
        def arm_once():
            authz.after_change = None
            arm()

        authz.after_change = arm_once  # the commit right after authz's change fails
        with pytest.raises(RuntimeError):
            await flow.assign_processor(ENGINEER, customer, row.id, "")
    await _unchanged(conn_db, customer, row)
    assert authz.current == {}
    assert await _notes(conn_db, customer) == 0


async def test_what_cannot_be_taken_back_is_reconciled_by_the_sweep_after_the_grace(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    name = _name(customer, row)
    authz.fail = ["lost_answer", "down"]  # the set happened, and the compensation cannot reach authz
    with pytest.raises(DependencyUnavailable):
        await flow.assign_processor(ENGINEER, customer, row.id, "")
    await _unchanged(conn_db, customer, row)
    assert name in authz.current and await _notes(conn_db, customer) == 1  # the one gap, noted

    clock.advance(seconds=59)
    await flow.reconcile_assignments(GRACE)
    assert name in authz.current  # not before the grace: a change may still be in flight
    clock.advance(seconds=1)
    authz.fail, authz.fail_only = ["down"], name
    await flow.reconcile_assignments(GRACE)
    assert name in authz.current and await _notes(conn_db, customer) == 1  # kept for the next sweep
    assert await flow.reconcile_assignments(GRACE) >= 1
    assert name not in authz.current and await _notes(conn_db, customer) == 0


async def test_the_sweep_restores_a_missing_assignment_of_an_incident_in_process(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    await flow.assign_processor(ENGINEER, customer, row.id, "")
    authz.fail = ["lost_answer", "down"]  # the delete happened; putting it back fails
    with pytest.raises(DependencyUnavailable):
        await flow.update_status(USER, customer, row.id, S.CONFIRMED, "")
    assert _name(customer, row) not in authz.current
    clock.advance(seconds=60)
    await flow.reconcile_assignments(GRACE)
    assert authz.current[_name(customer, row)].engineer == ENGINEER.user
    assert await _notes(conn_db, customer) == 0


async def test_concurrent_changes_end_consistent(conn_db, clock, flow, authz):
    customer, row = await _incident(conn_db, clock)
    results = await asyncio.gather(
        flow.update_status(USER, customer, row.id, S.CONFIRMED, ""),
        flow.assign_processor(ENGINEER, customer, row.id, ""),
        flow.assign_processor(OTHER_ENGINEER, customer, row.id, ""),
        return_exceptions=True)
    assert all(not isinstance(r, BaseException) or isinstance(r, FailedPrecondition) for r in results)
    stored = await _stored(conn_db, customer, row)
    assignment = authz.current.get(_name(customer, row))
    if stored.status == "IN_PROCESS_AT_VENDOR":
        assert assignment is not None and assignment.engineer == stored.processor
    else:
        assert assignment is None
