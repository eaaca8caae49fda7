"""Restricted views ("Maintain User Restricted View"): per system and incident, the system users the vendor's
engineers may see for that incident. No view (or setting an empty one) means no restriction."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.depot import access, audit, model
from services.depot.deps import Depot
from services.depot.store import EngineTx
from services.kit import names
from services.kit.clock import as_utc
from services.kit.errors import InvalidArgument
from services.kit.validate import Violations

FIELD = "restricted_view.logon_data"


@dataclass(frozen=True)
class View:
    name: str
    logon_data: list[str]
    updater: str = ""
    update_time: dt.datetime | None = None


def view_name(parts: dict[str, str]) -> str:
    return f"customers/{parts['customer']}/systems/{parts['system']}/restrictedViews/{parts['incident']}"


def _entry_ids(parts: dict[str, str], entries: list[str]) -> list[str]:
    """The ids of the named entries, which must belong to the view's system, each once."""
    v = Violations()
    if len(entries) > model.VIEW_MAX_ENTRIES:
        v.add(FIELD, f"lists more than {model.VIEW_MAX_ENTRIES} entries")
    ids: list[str] = []
    for i, name in enumerate(entries):
        field = f"{FIELD}[{i}]"
        try:
            entry = names.parse("logon_data", name, field)
        except InvalidArgument as err:
            v.add(field, err.violations[0][1])
            continue
        if (entry["customer"], entry["system"]) != (parts["customer"], parts["system"]):
            v.add(field, "must be an entry of the view's system")
        elif entry["logon_data"] in ids:
            v.add(field, "is listed twice")
        else:
            ids.append(entry["logon_data"])
    v.raise_if_any()
    return ids


async def set_view(depot: Depot, parts: dict[str, str], entries: list[str]) -> View:
    """Replace the view of one incident: only these system users are visible to its engineers (an empty list
    lifts the restriction). Each must be an unexpired system user of the system; otherwise nothing changes."""
    customer, system = parts["customer"], parts["system"]
    ids = _entry_ids(parts, entries)
    incident = model.incident_name(customer, parts["incident"])
    sysname = names.system(customer, system)
    await depot.connections.check_incident(incident, sysname, None)
    who = access.caller()
    now = depot.clock.now()

    async def work(tx: EngineTx) -> View:
        await _check_members(tx, customer, system, ids, now)
        await tx.replace_view(customer, system, incident, ids, who.user, now)
        detail = ("visible system users: " + ", ".join(ids)) if ids else "restriction lifted: all system users visible"
        await audit.append(tx, depot.sealer, customer, audit.Event(
            audit.RESTRICTED_VIEW_CHANGE, who.user, system=sysname, incident=incident, detail=detail), now)
        return View(view_name(parts), list(entries), who.user if ids else "", now if ids else None)

    return await depot.store.write(work)


async def _check_members(tx: EngineTx, customer: str, system: str, ids: list[str], now: dt.datetime) -> None:
    """Every member is an unexpired system user of the system (ids[i] is the request's logon_data[i])."""
    if not ids:
        return
    rows = await tx.entries_with_ids(customer, system, ids)
    v = Violations()
    for i, entry_id in enumerate(ids):
        row = rows.get(entry_id)
        field = f"{FIELD}[{i}]"
        if row is None or model.is_expired(as_utc(row.expire_time), now):
            v.add(field, "names no logon data of this system")
        elif row.kind != model.SYSTEM_USER:
            v.add(field, f"is a {row.kind} entry; a restricted view lists system users only (the others stay "
                         "visible)")
    v.raise_if_any()


async def get_view(depot: Depot, parts: dict[str, str]) -> View:
    incident = model.incident_name(parts["customer"], parts["incident"])
    async with depot.store.read() as tx:
        view = await tx.view(parts["customer"], parts["system"], incident)
        if view is None:
            return View(view_name(parts), [])
        ids = await tx.view_members(view)
    members = [model.entry_name(parts["customer"], parts["system"], entry_id) for entry_id in ids]
    return View(view_name(parts), members, view.updater, as_utc(view.update_time))
