"""Set-ups: a connection type made ready for a system, once per system and type, with its parameters."""
from __future__ import annotations

import json
import re

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.connections.catalog import ConnectionTypeSpec, validate_parameters
from services.connections.model import Actor
from services.connections.store import begin_write, page_token, read_page_token
from services.connections.systems import active_window, find_system, system_name
from services.connections.tables import SetupRow, SystemRow
from services.kit.clock import Clock
from services.kit.db import Database
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound

MAX_PARAMETERS = 32
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


def validate_setup_parameters(spec: ConnectionTypeSpec, params: dict[str, str]) -> None:
    """INVALID_ARGUMENT naming each bad parameter as "parameters.<key>" (unknown odd keys are not echoed)."""
    if len(params) > MAX_PARAMETERS:
        raise InvalidArgument("parameters", f"has more than {MAX_PARAMETERS} entries")
    odd = [key for key in params if not _KEY.fullmatch(key)]
    if odd:
        raise InvalidArgument("parameters", f"has {len(odd)} key(s) that are not parameter names "
                                            f"(lower-case letters, digits and underscores)")
    problems = validate_parameters(spec, params)
    if problems:
        raise InvalidArgument([(f"parameters.{key}", problem) for key, problem in problems])


async def set_up_connection(db: Database, clock: Clock, actor: Actor, customer: str, number: str,
                            spec: ConnectionTypeSpec, params: dict[str, str]) -> tuple[SetupRow, SystemRow, bool]:
    """Store the set-up of `spec` for the system; a second set-up of the same type updates the first.
    Returns (set-up, system, created)."""
    validate_setup_parameters(spec, params)
    stored = json.dumps({key: value for key, value in sorted(params.items()) if value != ""})
    now = clock.now()
    async with db.unit_of_work() as session:
        await begin_write(session)
        system = await find_system(session, customer, number, lock=True)
        row = (await session.scalars(select(SetupRow).where(
            SetupRow.system_pk == system.id, SetupRow.type_code == spec.code))).first()
        created = row is None
        if row is None:
            row = SetupRow(system_pk=system.id, type_code=spec.code, creator=actor.user, create_time=now)
            session.add(row)
        row.parameters = stored
        row.updater = actor.user
        row.update_time = now
    return row, system, created


async def list_setups(db: Database, customer: str, number: str, size: int, token: str
                      ) -> tuple[list[SetupRow], SystemRow, str]:
    """One page of the system's set-ups, by type code."""
    filters = {"customer": customer, "system": number}
    after = read_page_token(token, filters)
    async with db.unit_of_work() as session:
        system = await find_system(session, customer, number)
        stmt = select(SetupRow).where(SetupRow.system_pk == system.id)
        if after:
            stmt = stmt.where(SetupRow.type_code > str(after[0]))
        rows = list((await session.scalars(stmt.order_by(SetupRow.type_code).limit(size + 1))).all())
    if len(rows) <= size:
        return rows, system, ""
    rows = rows[:size]
    return rows, system, page_token([rows[-1].type_code], filters)


async def find_setup(session: AsyncSession, system: SystemRow, code: str) -> SetupRow | None:
    return (await session.scalars(select(SetupRow).where(
        SetupRow.system_pk == system.id, SetupRow.type_code == code))).first()


async def delete_setup(db: Database, clock: Clock, customer: str, number: str, code: str) -> None:
    """Remove a set-up; refused while a window of its type is open or scheduled."""
    async with db.unit_of_work() as session:
        await begin_write(session)
        system = await find_system(session, customer, number, lock=True)
        row = await find_setup(session, system, code)
        if row is None:
            raise NotFound(f"connection type {code} is not set up for system {system_name(system)}")
        window = await active_window(session, system, clock.now(), code)
        if window is not None:
            raise FailedPrecondition(
                f"connection {system_name(system)}/connections/{window.id} of type {code} is open or scheduled; "
                "close it first")
        await session.execute(delete(SetupRow).where(SetupRow.id == row.id))
