"""Set-ups: a connection type made ready for a system, once per system and type, with its parameters."""
from __future__ import annotations

import json
import re

from services.connections.connection_types import ConnectionTypeSpec
from services.connections.model import Actor
from services.connections.setup_parameters import validate_parameters
from services.connections.store import Store
from services.connections.systems import find_system, system_name
from services.connections.tables import SetupRow, SystemRow
from services.kit import names
from services.kit.clock import Clock
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound
from services.kit.paging import STR, PageTokens

MAX_PARAMETERS = 32
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PAGE_TOKENS = PageTokens(STR)  # ListConnectionSetups pages by type code


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


async def set_up_connection(store: Store, clock: Clock, actor: Actor, customer: str, number: str,
                            spec: ConnectionTypeSpec, params: dict[str, str], *, validate_only: bool = False
                            ) -> tuple[SetupRow, SystemRow, bool]:
    """Store the set-up of `spec` for the system; a second set-up of the same type updates the first.
    Returns (set-up, system, created); with `validate_only`, what it would return, and nothing is stored."""
    validate_setup_parameters(spec, params)
    stored = json.dumps({key: value for key, value in sorted(params.items()) if value != ""})
    now = clock.now()
    async with store.write(validate_only) as uow:
        system = await find_system(uow, customer, number, lock=True)
        row = await uow.setup(system, spec.code)
        created = row is None
        if row is None:
            row = SetupRow(system_pk=system.id, type_code=spec.code, creator=actor.user, create_time=now)
            uow.add(row)
        row.parameters = stored
        row.updater = actor.user
        row.update_time = now
    return row, system, created


async def list_setups(store: Store, customer: str, number: str, size: int, token: str
                      ) -> tuple[list[SetupRow], SystemRow, str]:
    """One page of the system's set-ups, by type code."""
    scope = {"parent": names.system(customer, number), "order": "type_code"}
    after = _PAGE_TOKENS.read(token, scope)
    async with store.read() as uow:
        system = await find_system(uow, customer, number)
        rows, more = await uow.setups_page(system, after[0] if after else None, size)
    return rows, system, _PAGE_TOKENS.issue([rows[-1].type_code], scope) if more else ""


async def delete_setup(store: Store, clock: Clock, customer: str, number: str, code: str) -> None:
    """Remove a set-up; refused while a window of its type is open or scheduled."""
    async with store.write() as uow:
        system = await find_system(uow, customer, number, lock=True)
        row = await uow.setup(system, code)
        if row is None:
            raise NotFound(f"connection type {code} is not set up for system {system_name(system)}")
        window = await uow.active_window(system, clock.now(), code)
        if window is not None:
            raise FailedPrecondition(
                f"connection {system_name(system)}/connections/{window.id} of type {code} is open or scheduled; "
                "close it first")
        await uow.delete_setup(row)
