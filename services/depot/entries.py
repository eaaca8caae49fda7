"""Logon-data entries: create, read, list, update, delete. Secrets go in sealed and never come out here."""
from __future__ import annotations

import dataclasses

from services.depot import access, audit, model
from services.depot.deps import Depot
from services.depot.store import EngineTx, Entry, Tx
from services.kit import names
from services.kit import permissions as P
from services.kit.clock import as_utc
from services.kit.errors import EtagMismatch, PermissionDenied
from services.kit.paging import INT32, PageTokens
from services.kit.validate import Violations

LIST_SCAN_FACTOR = 4  # engineers' lists skip hidden entries; read this many rows per wanted one at a time
ENTRY_PAGES = PageTokens(INT32)  # ListLogonData: after the entry's primary key (an Integer column; creation order)


async def _limits(depot: Depot, customer: str, system: str, connection_type: str) -> model.Limits:
    """What the fields are checked against; the connection type they name, if well formed, is confirmed by the
    connections service (the catalog is its own)."""
    code = model.connection_type_code(connection_type)
    known = frozenset({code}) if code and await depot.connections.connection_type_exists(connection_type) \
        else frozenset()
    return model.Limits(customer, system, depot.clock.now(), depot.settings.max_expiry, known)


async def create(depot: Depot, parent: dict[str, str], kind: str, fields: model.EntryFields, secret: str, *,
                 validate_only: bool = False) -> Entry:
    """Store a new entry for a system the connections service confirms, its secret sealed, and log it (with
    `validate_only`: all of it rolled back, the entry it would have stored returned)."""
    customer, system = parent["customer"], parent["system"]
    v = Violations()
    problem = model.kind_problem(kind)
    if problem:
        v.add("logon_data.kind", problem)
    limits = await _limits(depot, customer, system, fields.connection_type)
    model.check_fields(v, fields, model.PLAIN_FIELDS, None if problem else kind, limits)
    problem = model.secret_problem(secret)
    if problem:
        v.add("secret", problem)
    v.raise_if_any()
    sysname = names.system(customer, system)
    confirmed = await depot.connections.system(sysname)
    if fields.restricted_incident:
        await depot.connections.check_incident(fields.restricted_incident, sysname, "logon_data.restricted_incident")
    who = access.caller()
    now = depot.clock.now()

    values = dict(customer=customer, system_number=system, installation=confirmed.installation, kind=kind,
                  **dataclasses.asdict(fields), creator=who.user, create_time=now, updater=who.user, update_time=now,
                  etag=model.new_etag(), expiry_logged=False, unreadable=False)

    def event(row: Entry) -> audit.Event:
        return audit.Event(audit.CREATE, who.user, system=sysname, logon_data=access.name_of(row),
                           incident=row.restricted_incident,
                           detail=f"created {kind} entry" + (f" for user {row.user_name}" if row.user_name else ""))

    async def work(tx: Tx) -> Entry:
        entry_id = model.new_entry_id()
        sealed = await depot.keys.seal(tx, customer, system, entry_id, secret)
        row = await tx.add_entry(dict(values, entry_id=entry_id, key_version=sealed.key_version,
                                      wrapped_data_key=sealed.wrapped_data_key, secret_ciphertext=sealed.ciphertext))
        await tx.remember_system(customer, system, confirmed.installation, now)
        await audit.append(tx, depot.sealer, customer, event(row), now)
        return row

    return await depot.keys.write_sealing(depot.store, depot.clock.now, work, local=True, validate_only=validate_only)


async def get(depot: Depot, parts: dict[str, str]) -> Entry:
    row = await access.load_readable(depot, parts)
    await access.access_incident(depot, access.caller(), row)
    return row


async def list_entries(depot: Depot, parent: dict[str, str], kind: str, page_token: str, size: int) \
        -> tuple[list[Entry], str]:
    """A page of the system's unexpired entries the caller may see, in creation order, and the next page's
    token ("" when this is the last); a token is valid only with the system and kind it was issued for."""
    scope = {"parent": names.system(parent["customer"], parent["system"]), "kind": kind}
    cursor = ENTRY_PAGES.read(page_token, scope)
    after = cursor[0] if cursor else 0
    who = access.caller()
    chunk = size + 1 if not who.is_engineer else (size + 1) * LIST_SCAN_FACTOR
    page: list[Entry] = []
    now = depot.clock.now()
    views = await depot.store.views_for(parent["customer"], parent["system"], who.incidents) \
        if who.is_engineer else {}
    while len(page) <= size:
        rows = await depot.store.entries_page(parent["customer"], parent["system"], now, kind, after, chunk)
        for row in rows:
            if not who.is_engineer or model.engineer_access(row.kind, row.entry_id, row.restricted_incident,
                                                            who.incidents, views) is not None:
                page.append(row)
                if len(page) > size:
                    break
        if len(rows) < chunk:
            break
        after = rows[-1].pk
    if len(page) > size:
        return page[:size], ENTRY_PAGES.issue([page[size - 1].pk], scope)
    return page, ""


async def update(depot: Depot, parts: dict[str, str], changes: model.EntryFields, paths: list[str], secret: str,
                 etag: str) -> Entry:
    """Change fields of an entry and/or overwrite its secret (without reading it)."""
    who = access.caller()
    row = await access.load_readable(depot, parts)
    incident = await access.access_incident(depot, who, row)
    plain = [p for p in paths if p != model.SECRET_FIELD]
    overwrite = model.SECRET_FIELD in paths
    if who.is_engineer and "restricted_incident" in plain:
        raise PermissionDenied("support engineers may not change restricted_incident: the customer decides which "
                               "incidents an entry is for")
    await access.check_all(([P.LOGON_UPDATE] if plain else []) + ([P.LOGON_OVERWRITE_SECRET] if overwrite else []),
                           access.resource(row, incident))
    v = Violations()
    limits = await _limits(depot, row.customer, row.system_number,
                           changes.connection_type if "connection_type" in plain else "")
    model.check_fields(v, changes, plain, row.kind, limits)
    if overwrite and (problem := model.secret_problem(secret)):
        v.add("secret", problem)
    v.raise_if_any()
    _check_etag(row, etag)
    if changes.restricted_incident and "restricted_incident" in plain:
        await depot.connections.check_incident(changes.restricted_incident, access.system_name(row),
                                               "logon_data.restricted_incident")
    now = depot.clock.now()

    async def work(tx: EngineTx) -> Entry:
        current = await _current(tx, depot, row, parts, etag)
        values = {path: getattr(changes, path) for path in plain}
        if overwrite:
            sealed = await depot.keys.seal(tx, current.customer, current.system_number, current.entry_id, secret)
            values.update(key_version=sealed.key_version, wrapped_data_key=sealed.wrapped_data_key,
                          secret_ciphertext=sealed.ciphertext, unreadable=False)
        values.update(updater=who.user, update_time=now, etag=model.new_etag())
        await tx.update_entry(current, values)
        event = dict(system=access.system_name(current), logon_data=access.name_of(current), incident=incident)
        if plain:
            await audit.append(tx, depot.sealer, current.customer, audit.Event(
                audit.UPDATE, who.user, detail="changed " + ", ".join(sorted(plain)), **event), now)
        if overwrite:
            await audit.append(tx, depot.sealer, current.customer, audit.Event(
                audit.SECRET_OVERWRITE, who.user, detail="secret overwritten", **event), now)
        return current

    return await depot.keys.write_sealing(depot.store, depot.clock.now, work)


async def delete(depot: Depot, parts: dict[str, str], etag: str, *, validate_only: bool = False) -> None:
    """Delete an entry with its data key (its ciphertext becomes unreadable for good) and log it (with
    `validate_only`: check that it could be, and change nothing)."""
    who = access.caller()
    row = await access.load_readable(depot, parts)
    incident = await access.access_incident(depot, who, row)
    await access.check_all([P.LOGON_DELETE], access.resource(row, incident))
    _check_etag(row, etag)
    now = depot.clock.now()

    async def work(tx: EngineTx) -> None:
        current = await _current(tx, depot, row, parts, etag)
        await tx.delete_entry(current)
        await audit.append(tx, depot.sealer, current.customer, audit.Event(
            audit.DELETE, who.user, system=access.system_name(current), logon_data=access.name_of(current),
            incident=incident, detail=f"deleted {current.kind} entry"), now)

    await depot.store.write(work, validate_only=validate_only)


def _check_etag(row: Entry, etag: str) -> None:
    if etag and etag != row.etag:
        raise EtagMismatch(f"etag {etag!r} is stale: logon data {access.name_of(row)} changed since you read it; "
                           "read it again and retry")


async def _current(tx: EngineTx, depot: Depot, row: Entry, parts: dict[str, str], etag: str) -> Entry:
    """The entry again, inside the writing transaction: still there, unexpired, and the etag still matches."""
    current = await tx.entry(row.pk, lock=True)
    if current is None or model.is_expired(as_utc(current.expire_time), depot.clock.now()):
        raise access.not_found(parts)
    _check_etag(current, etag)
    return current

