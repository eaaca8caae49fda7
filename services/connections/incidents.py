"""Incidents and their life cycle, with the support assignment in authz kept in step.

An incident in IN_PROCESS_AT_VENDOR with a processor has exactly one assignment in authz (keyed by the
incident); in any other status it has none. A status change and its authz update succeed or fail
together: authz is updated inside the database transaction, before the commit.

- authz refuses or does not answer: the transaction rolls back; the incident is unchanged.
- authz was (or may have been) changed, but the commit fails: authz is put back as it was.
- authz cannot be put back either (or the process dies at the wrong moment): the note written before
  the change stays behind, and the sweep (`reconcile_assignments`) brings authz in line with the stored
  status once the note is older than the grace period.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Callable

from services.connections import events, model
from services.connections.assignment_client import (
    CONTENT_REFUSALS,
    Assignment,
    AssignmentPort,
    AssignmentRefused,
    AssignmentUnavailable,
)
from services.connections.model import Actor, IncidentStatus
from services.connections.store import Store, UnitOfWork
from services.connections.systems import check_etag
from services.connections.tables import AssignmentCheckRow, IncidentRow
from services.kit import names
from services.kit.clock import Clock
from services.kit.errors import DependencyUnavailable, DomainError, FailedPrecondition, InvalidArgument, NotFound
from services.kit.logs import log
from services.kit.paging import STR, TIME, PageTokens
from services.kit.validate import Violations

logger = logging.getLogger(__name__)
_PAGE_TOKENS = PageTokens(TIME, STR)  # ListIncidents pages by (create_time, id), newest first


@dataclass(frozen=True)
class IncidentFields:
    """What a customer reports."""

    system_number: str
    title: str
    description: str
    priority: str


def incident_name(row: IncidentRow) -> str:
    return f"customers/{row.customer}/incidents/{row.id}"


def assignment_of(row: IncidentRow) -> Assignment | None:
    """The assignment authz must hold for the incident as stored, or None."""
    if row.status != IncidentStatus.IN_PROCESS_AT_VENDOR.value or not row.processor:
        return None
    return Assignment(incident_name(row), row.processor, names.system(row.customer, row.system_number))


def _validate(values: IncidentFields) -> None:
    v = Violations()
    if not values.title.strip():
        v.add("incident.title", "is required")
    else:
        problem = model.text_problem(values.title, model.MAX_TITLE)
        if problem:
            v.add("incident.title", problem)
    if len(values.description) > model.MAX_INCIDENT_DESCRIPTION:
        v.add("incident.description", f"is longer than {model.MAX_INCIDENT_DESCRIPTION} characters")
    if "\x00" in values.description:
        v.add("incident.description", "must not contain NUL characters")
    if values.priority not in model.PRIORITIES:
        v.add("incident.priority", "is required (VERY_HIGH, HIGH, MEDIUM or LOW)")
    v.raise_if_any()


async def find_incident(uow: UnitOfWork, customer: str, incident_id: str, *, lock: bool = False) -> IncidentRow:
    row = await uow.incident(customer, incident_id, lock=lock)
    if row is None:
        raise NotFound(f"incident customers/{customer}/incidents/{incident_id} does not exist")
    return row


async def create_incident(store: Store, clock: Clock, actor: Actor, customer: str, values: IncidentFields
                          ) -> IncidentRow:
    _validate(values)
    now = clock.now()
    async with store.write() as uow:
        if await uow.system(customer, values.system_number) is None:
            raise InvalidArgument("incident.system", "names no registered system of this customer")
        row = IncidentRow(id=model.new_id(), customer=customer, system_number=values.system_number,
                          title=values.title, description=values.description, priority=values.priority,
                          status=IncidentStatus.NEW.value, processor=None, reporter=actor.user,
                          create_time=now, update_time=now, etag=model.new_etag())
        uow.add(row)
        await uow.emit(events.incident_event("INCIDENT_CREATED", row, actor.user, now,
                                             detail=f"priority {row.priority}"))
    return row


async def get_incident(store: Store, customer: str, incident_id: str) -> IncidentRow:
    async with store.read() as uow:
        return await find_incident(uow, customer, incident_id)


async def list_incidents(store: Store, customer: str, status: IncidentStatus | None, system_number: str | None,
                         size: int, token: str) -> tuple[list[IncidentRow], str]:
    """One page of the customer's incidents, newest first, optionally by status and system."""
    scope = {"parent": names.customer(customer), "status": status.value if status else "",
             "system": names.system(customer, system_number) if system_number else "",
             "order": "create_time desc, id desc"}
    after = _PAGE_TOKENS.read(token, scope)
    async with store.read() as uow:
        rows, more = await uow.incidents_page(customer, status, system_number, tuple(after) if after else None, size)
    return rows, _PAGE_TOKENS.issue([rows[-1].create_time, rows[-1].id], scope) if more else ""


Decide = Callable[[IncidentRow], tuple[IncidentStatus, str | None]]


class IncidentWorkflow:
    """Status changes of incidents, each with its authz assignment update (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, assignments: AssignmentPort) -> None:
        self.store = store
        self.clock = clock
        self.assignments = assignments

    async def update_status(self, actor: Actor, customer: str, incident_id: str, target: IncidentStatus,
                            etag: str) -> IncidentRow:
        def decide(row: IncidentRow) -> tuple[IncidentStatus, str | None]:
            check_etag(etag, row.etag, incident_name(row))
            model.check_status_change(IncidentStatus(row.status), target, actor, row.processor or "")
            return target, row.processor

        try:
            return await self._change(actor, customer, incident_id, decide, "INCIDENT_STATUS_CHANGED")
        except AssignmentRefused as refused:
            raise _refusal(refused, FailedPrecondition(
                f"authz refused the support assignment for the processor ({refused.message}); "
                "the incident was not changed")) from None

    async def assign_processor(self, actor: Actor, customer: str, incident_id: str, processor: str) -> IncidentRow:
        """Make `processor` (default: the calling engineer) the processor; the incident goes to
        IN_PROCESS_AT_VENDOR. authz refuses a processor who is not an enabled support engineer."""
        engineer = processor or actor.user

        def decide(row: IncidentRow) -> tuple[IncidentStatus, str | None]:
            model.check_assignable(IncidentStatus(row.status))
            return IncidentStatus.IN_PROCESS_AT_VENDOR, engineer

        try:
            return await self._change(actor, customer, incident_id, decide, "INCIDENT_TAKEN")
        except AssignmentRefused as refused:
            raise _refusal(refused, InvalidArgument(
                "processor", f"{engineer} cannot process this incident: authz refused the support assignment "
                             f"({refused.message})")) from None

    async def _change(self, actor: Actor, customer: str, incident_id: str, decide: Decide, event_type: str
                      ) -> IncidentRow:
        """Apply `decide` to the locked incident and push the assignment it implies to authz before the
        commit, with its event (`event_type`) last. The note is written first, in its own transaction, so that
        it survives a rollback."""
        name = f"customers/{customer}/incidents/{incident_id}"
        note = await self._write_note(customer, incident_id)
        before: Assignment | None = None
        touched = False
        try:
            async with self.store.write() as uow:
                row = await find_incident(uow, customer, incident_id, lock=True)
                before = assignment_of(row)
                status, processor = decide(row)
                row.status, row.processor = status.value, processor
                row.update_time = self.clock.now()
                row.etag = model.new_etag()
                after = assignment_of(row)
                if after is not None or before is not None:
                    touched = True
                    await self._push(name, after)
                await uow.emit(events.incident_event(event_type, row, actor.user, row.update_time, detail=(
                    f"{row.status}" + (f", processor {row.processor}" if row.processor else ""))))
        except AssignmentRefused:
            await self._drop_note(note)  # authz changed nothing, and neither did the rollback
            raise
        except AssignmentUnavailable:
            await self._put_back(note, name, before)
            raise DependencyUnavailable("authz could not record the support assignment; the incident was not "
                                        "changed, try again") from None
        except BaseException:
            if touched:
                await self._put_back(note, name, before)
            else:
                await self._drop_note(note)
            raise
        await self._drop_note(note)
        log(logger, logging.INFO, "incident status changed", incident=name, status=row.status,
            processor=row.processor or "")
        return row

    async def _push(self, incident: str, target: Assignment | None) -> None:
        if target is not None:
            await self.assignments.set(target)
        else:
            await self.assignments.delete(incident)

    async def _put_back(self, note: str, incident: str, before: Assignment | None) -> None:
        """Undo a change authz may have made; if that fails too, the note stays for the sweep."""
        try:
            await self._push(incident, before)
        except (AssignmentRefused, AssignmentUnavailable) as error:
            log(logger, logging.WARNING, "support assignment could not be put back; the sweep will reconcile it",
                incident=incident, error=type(error).__name__)
            return
        await self._drop_note(note)

    async def _write_note(self, customer: str, incident_id: str) -> str:
        note = model.new_id()
        async with self.store.write() as uow:
            uow.add(AssignmentCheckRow(id=note, incident_id=incident_id, customer=customer,
                                       create_time=self.clock.now()))
        return note

    async def _drop_note(self, note: str) -> None:
        async with self.store.write() as uow:
            await uow.drop_note(note)

    async def reconcile_assignments(self, grace: dt.timedelta, limit: int = 100) -> int:
        """Bring authz in line with the stored status of each incident with a note older than `grace`;
        returns how many were reconciled. Notes whose reconciliation fails stay for the next sweep."""
        cutoff = self.clock.now() - grace
        async with self.store.read() as uow:
            notes = await uow.notes_before(cutoff, limit)
        done = 0
        for note in notes:
            incident = f"customers/{note.customer}/incidents/{note.incident_id}"
            try:
                async with self.store.write() as uow:
                    row = await uow.incident_by_id(note.incident_id, lock=True)
                    await self._push(incident, assignment_of(row) if row is not None else None)
                    await uow.drop_note(note.id)
            except (AssignmentRefused, AssignmentUnavailable) as error:
                log(logger, logging.WARNING, "support assignment not reconciled yet", incident=incident,
                    error=type(error).__name__)
                continue
            done += 1
            log(logger, logging.INFO, "support assignment reconciled", incident=incident)
        return done


def _refusal(refused: AssignmentRefused, about_content: DomainError) -> DomainError:
    """The caller's error for an authz refusal: `about_content` when authz objected to the assignment
    itself (e.g. the processor is no enabled support engineer), UNAVAILABLE when it refused this service."""
    if refused.code in CONTENT_REFUSALS:
        return about_content
    return DependencyUnavailable(f"authz refused this service's support-assignment update ({refused.code.name}); "
                                 "the incident was not changed")
