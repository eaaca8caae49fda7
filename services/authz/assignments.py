"""Support assignments: while an incident is in process at the vendor, its processor reaches its system.
The connections service sets and deletes them."""
from __future__ import annotations

from services.authz import model
from services.authz.store import Queries, Store
from services.authz.tables import AssignmentRow
from services.kit.clock import Clock


async def set_assignment(store: Store, clock: Clock, incident: str, engineer: str, system: str,
                         customer: str) -> AssignmentRow:
    """Record that `engineer` processes `incident` (of `system`); setting it again replaces both."""

    async def write(queries: Queries) -> AssignmentRow:
        user = await queries.principal(engineer)
        model.check_assignee(engineer, user.kind if user is not None else None, user is not None and user.disabled)
        row = await queries.assignment(incident, for_update=True)
        if row is None:
            row = AssignmentRow(incident=incident, engineer=engineer, system=system, customer=customer,
                                created_at=clock.now())
            queries.add(row)
        else:
            row.engineer, row.system, row.customer = engineer, system, customer
        return row

    return await store.upsert(write)


async def delete_assignment(store: Store, incident: str) -> None:
    """End the incident's assignment; a missing one is no error."""
    async with store.write() as queries:
        await queries.delete_assignment(incident)
