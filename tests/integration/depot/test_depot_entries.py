"""Logon-data entries: what is stored and returned, every bad input with the status and field it names (and
nothing half-written), optimistic concurrency, malformed names, paging."""
from __future__ import annotations

import datetime as dt

import grpc
import pytest

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.helpers import expect_error, status_details
from tests.integration.depot.world import (
    DATABASE, OTHER, SAPROUTER, SERVER_OS, SYSTEM_USER, World, restart_depot, sql
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def footprint(world: World) -> tuple[int, int]:
    """How many entries and log events the depot holds (nothing half-written leaves both unchanged)."""
    [(entries, events)] = sql(world.suite, "SELECT (SELECT COUNT(*) FROM logon_data), "
                                           "(SELECT COUNT(*) FROM log_events)")
    return entries, events


async def test_create_stores_every_field_and_fills_the_output_fields(world):
    now = world.suite.clock.now()
    connection = f"{world.system}/connections/abc123"
    entry = await world.create(
        "creator", user_name="DDIC", client="000", server="ap01.example.com", notes="line 1\nline 2\tend",
        connection_type="connectionTypes/R3_SUPPORT", connection=connection, restricted_incident=world.incident,
        name="customers/1/systems/1/logonData/ignored", creator="users/S9999999999", key_version=77,
        expire_time=world.expire_in(days=90))
    assert entry.name.startswith(world.system + "/logonData/") and not entry.name.endswith("ignored")
    assert (entry.kind, entry.user_name, entry.client, entry.server, entry.notes) == (
        SYSTEM_USER, "DDIC", "000", "ap01.example.com", "line 1\nline 2\tend")
    assert (entry.connection_type, entry.connection, entry.restricted_incident) == (
        "connectionTypes/R3_SUPPORT", connection, world.incident)
    assert entry.creator == entry.updater == world.users["creator"]
    assert entry.create_time.ToDatetime(dt.timezone.utc) == now == entry.update_time.ToDatetime(dt.timezone.utc)
    assert entry.expire_time.ToDatetime(dt.timezone.utc) == now + dt.timedelta(days=90)
    assert entry.has_secret and entry.etag and entry.key_version >= 1 and entry.installation == "20012345"
    assert await world.get("creator", entry.name) == entry


@pytest.mark.parametrize("kind, values", [
    (SAPROUTER, {}),
    (SAPROUTER, {"user_name": "router"}),
    (SERVER_OS, {"server": "db01", "user_name": "root"}),
    (DATABASE, {"user_name": "SAPHANADB"}),
    (OTHER, {"user_name": "vpn-user", "notes": "token app"}),
])
async def test_create_each_kind(world, kind, values):
    entry = await world.create("edit_all", kind=kind, **values)
    assert entry.kind == kind and entry.client == ""


def _long(n: int) -> str:
    return "x" * n


BAD_CREATES = [
    ("no_expiration", {"expire_time": None}, "", "logon_data.expire_time", "is required"),
    ("expiration_in_the_past", {"expire_time": dict(seconds=-1)}, "", "logon_data.expire_time", "in the future"),
    ("expiration_now", {"expire_time": dict(seconds=0)}, "", "logon_data.expire_time", "in the future"),
    ("expiration_beyond_maximum", {"expire_time": dict(days=90, seconds=1)}, "", "logon_data.expire_time",
     "at most 90 days"),
    ("unknown_kind", {"kind": 99}, "", "logon_data.kind", "unknown value 99"),
    ("unspecified_kind", {"kind": 0}, "", "logon_data.kind", "is required"),
    ("user_name_too_long", {"user_name": _long(129)}, "", "logon_data.user_name", "128"),
    ("user_name_control_chars", {"user_name": "a\x00b"}, "", "logon_data.user_name", "control"),
    ("user_name_missing", {"user_name": ""}, "", "logon_data.user_name", "is required"),
    ("server_too_long", {"server": _long(256)}, "", "logon_data.server", "255"),
    ("notes_too_long", {"notes": _long(2001)}, "", "logon_data.notes", "2000"),
    ("secret_too_long", {}, _long(1025), "secret", "1024"),
    ("secret_missing", {}, None, "secret", "is required"),
    ("client_missing_for_system_user", {"client": ""}, "", "logon_data.client", "required for system users"),
    ("client_not_three_digits", {"client": "01"}, "", "logon_data.client", "three digits"),
    ("client_on_a_saprouter_password", {"kind": SAPROUTER, "client": "001"}, "", "logon_data.client", "empty"),
    ("unknown_connection_type", {"connection_type": "connectionTypes/NO_SUCH_TYPE"}, "",
     "logon_data.connection_type", "catalog"),
    ("malformed_connection_type", {"connection_type": "R3_SUPPORT"}, "", "logon_data.connection_type",
     "connectionTypes/"),
    ("incident_of_another_customer", {"restricted_incident": "customers/1/incidents/abc"}, "",
     "logon_data.restricted_incident", "customer"),
    ("incident_that_does_not_exist", {"restricted_incident": "OWN/incidents/0badc0de0badc0de"}, "",
     "logon_data.restricted_incident", "names no incident"),
    ("connection_of_another_system", {"connection": "customers/1/systems/2/connections/abc"}, "",
     "logon_data.connection", "entry's system"),
]


@pytest.mark.parametrize("values, secret, field, problem",
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_CREATES])
async def test_bad_input_on_create_names_the_field_and_writes_nothing(world, values, secret, field, problem):
    before = await footprint(world)
    fields = {"kind": SYSTEM_USER, "user_name": "SUPPORT1", "client": "001",
              "expire_time": world.expire_in(days=30), **values}
    if isinstance(fields["expire_time"], dict):
        fields["expire_time"] = world.expire_in(**fields["expire_time"])
    elif fields["expire_time"] is None:
        del fields["expire_time"]
    if isinstance(fields.get("restricted_incident"), str):
        fields["restricted_incident"] = fields["restricted_incident"].replace("OWN", f"customers/{world.customer}")
    request = dp.CreateLogonDataRequest(parent=world.system, logon_data=dp.LogonData(**fields),
                                        secret="S3cret-planted" if secret == "" else (secret or ""))
    err = await expect_error(world.depot.CreateLogonData(request, metadata=world.md("creator")), INVALID,
                             "INVALID_ARGUMENT", field=field, message=problem)
    assert "S3cret-planted" not in err.details()
    assert await footprint(world) == before


async def test_exactly_the_maximum_expiry_is_accepted(world):
    entry = await world.create("creator", expire_time=world.expire_in(days=90))
    assert entry.expire_time == world.expire_in(days=90)


async def test_every_violation_is_reported_at_once(world):
    err = await expect_error(world.depot.CreateLogonData(dp.CreateLogonDataRequest(
        parent=world.system, logon_data=dp.LogonData(kind=SYSTEM_USER, notes=_long(2001))),
        metadata=world.md("creator")), INVALID, "INVALID_ARGUMENT")
    fields = {f for f, _ in status_details(err)[1]}
    assert {"logon_data.user_name", "logon_data.client", "logon_data.notes", "logon_data.expire_time",
            "secret"} <= fields


async def test_incident_of_another_system_is_refused(world):
    foreign = await world.new_incident(system=world.other_system)
    await expect_error(world.create("creator", restricted_incident=foreign), INVALID, "INVALID_ARGUMENT",
                       field="logon_data.restricted_incident", message="another system")


async def test_create_for_a_system_that_does_not_exist_or_a_malformed_parent(world):
    missing = f"customers/{world.customer}/systems/999999999999"
    await expect_error(world.create("creator", system=missing), grpc.StatusCode.NOT_FOUND)
    for parent in ("", "customers/x/systems/1", f"{world.system}/logonData"):
        await expect_error(world.create("creator", system=parent or " "), INVALID, "INVALID_ARGUMENT", field="parent")


@pytest.mark.parametrize("method, request_type, field", [
    ("GetLogonData", dp.GetLogonDataRequest, "name"),
    ("DeleteLogonData", dp.DeleteLogonDataRequest, "name"),
    ("RevealLogonData", dp.RevealLogonDataRequest, "name"),
    ("GetRestrictedView", dp.GetRestrictedViewRequest, "name"),
])
@pytest.mark.parametrize("name", ["", "customers/1/systems/2", "customers/1/systems/2/logonData/UPPER",
                                  "customers/1/systems/2/restrictedViews/a/b", "x" * 400])
async def test_malformed_names_are_invalid_argument(world, method, request_type, field, name):
    await expect_error(getattr(world.depot, method)(request_type(name=name), metadata=world.md("edit_all")),
                       INVALID, "INVALID_ARGUMENT", field=field)


async def test_malformed_names_in_update_list_and_log(world):
    bad = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name="nope"))
    bad.update_mask.paths.append("notes")
    await expect_error(world.depot.UpdateLogonData(bad, metadata=world.md("edit_all")), INVALID,
                       field="logon_data.name")
    await expect_error(world.depot.ListLogonData(dp.ListLogonDataRequest(parent="systems/1"),
                                                 metadata=world.md("edit_all")), INVALID, field="parent")
    await expect_error(world.depot.ListLogEvents(dp.ListLogEventsRequest(parent="customer/1"),
                                                 metadata=world.md("edit_all")), INVALID, field="parent")
    await expect_error(world.depot.VerifyLog(dp.VerifyLogRequest(parent=""), metadata=world.md("edit_all")),
                       INVALID, field="parent")


@pytest.mark.parametrize("method", list(dp.DESCRIPTOR.services_by_name["LogonDepotService"].methods_by_name))
@pytest.mark.parametrize("token", ["", "not-a-token"])
async def test_every_method_refuses_a_missing_or_unknown_token(world, method, token):
    descriptor = dp.DESCRIPTOR.services_by_name["LogonDepotService"].methods_by_name[method]
    entry, view = f"{world.system}/logonData/abc", world.view_name(world.incident)
    request = getattr(dp, descriptor.input_type.name)(**{
        "CreateLogonData": dict(parent=world.system), "ListLogonData": dict(parent=world.system),
        "UpdateLogonData": dict(logon_data=dp.LogonData(name=entry)),
        "SetRestrictedView": dict(restricted_view=dp.RestrictedView(name=view)),
        "GetRestrictedView": dict(name=view), "ListLogEvents": dict(parent=f"customers/{world.customer}"),
        "VerifyLog": dict(parent=f"customers/{world.customer}"), "RotateKey": {}, "GetKeyStatus": {},
        "WatchEvents": dict(parent=f"customers/{world.customer}"),
        "CreateWebhook": dict(parent=f"customers/{world.customer}"),
        "ListWebhooks": dict(parent=f"customers/{world.customer}"),
        "ListWebhookDeliveries": dict(parent=f"customers/{world.customer}/webhooks/abc"),
        "GetWebhook": dict(name=f"customers/{world.customer}/webhooks/abc"),
        "DeleteWebhook": dict(name=f"customers/{world.customer}/webhooks/abc"),
        "RedeliverWebhookDelivery": dict(name=f"customers/{world.customer}/webhooks/abc/deliveries/abc"),
    }.get(method, dict(name=entry)))
    metadata = world.suite.md(token) if token else ()
    call = getattr(world.depot, method)(request, metadata=metadata)
    await expect_error(_first(call) if descriptor.server_streaming else call, grpc.StatusCode.UNAUTHENTICATED,
                       "UNAUTHENTICATED")


async def _first(call):
    """The first response of a server stream."""
    async for response in call:
        return response


# --- update and delete --------------------------------------------------------------------------------------
async def test_update_changes_only_the_masked_fields_and_the_etag(world):
    entry = await world.create("creator", server="ap01", notes="n1")
    updated = await world.update("creator", entry, ["notes", "expire_time", "connection_type"], notes="n2",
                                 server="IGNORED", expire_time=world.expire_in(days=5),
                                 connection_type="connectionTypes/SSH")
    assert (updated.notes, updated.server, updated.connection_type) == ("n2", "ap01", "connectionTypes/SSH")
    assert updated.expire_time == world.expire_in(days=5) and updated.etag != entry.etag
    assert updated.create_time == entry.create_time and updated.creator == entry.creator
    cleared = await world.update("creator", updated, ["connection_type", "restricted_incident"])
    assert cleared.connection_type == "" and cleared.restricted_incident == ""


@pytest.mark.parametrize("paths, values, secret, field", [
    ([], {}, "", "update_mask"),
    (["kind"], {"kind": SAPROUTER}, "", "update_mask"),
    (["creator"], {}, "", "update_mask"),
    (["connection"], {}, "", "update_mask"),
    (["expire_time"], {}, "", "logon_data.expire_time"),
    (["expire_time"], {"expire_time": dict(days=91)}, "", "logon_data.expire_time"),
    (["expire_time"], {"expire_time": dict(seconds=-5)}, "", "logon_data.expire_time"),
    (["client"], {"client": ""}, "", "logon_data.client"),
    (["user_name"], {"user_name": ""}, "", "logon_data.user_name"),
    (["notes"], {"notes": _long(2001)}, "", "logon_data.notes"),
    (["secret"], {}, "", "secret"),
    (["secret"], {}, _long(1025), "secret"),
    (["restricted_incident"], {"restricted_incident": "customers/1/incidents/x"}, "",
     "logon_data.restricted_incident"),
])
async def test_bad_input_on_update_names_the_field_and_changes_nothing(world, paths, values, secret, field):
    entry = await world.create("creator", secret="keep-me")
    values = dict(values)
    if isinstance(values.get("expire_time"), dict):
        values["expire_time"] = world.expire_in(**values["expire_time"])
    before = await footprint(world)
    await expect_error(world.update("creator", entry, paths, secret=secret, **values), INVALID, "INVALID_ARGUMENT",
                       field=field)
    assert await world.get("creator", entry.name) == entry
    assert (await world.reveal("creator", entry.name)).secret == "keep-me"
    assert (await footprint(world))[0] == before[0]


async def test_stale_etag_is_aborted_on_update_and_delete(world):
    entry = await world.create("creator")
    changed = await world.update("creator", entry, ["notes"], notes="first")
    for paths in (["notes"], ["secret"]):
        await expect_error(world.update("edit_all", entry, paths, notes="second", secret="s"), grpc.StatusCode.ABORTED,
                           "ETAG_MISMATCH")
    await expect_error(world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name, etag=entry.etag),
                                                   metadata=world.md("creator")), grpc.StatusCode.ABORTED,
                       "ETAG_MISMATCH")
    assert (await world.get("creator", entry.name)).notes == "first"
    # no etag sent: the caller does not ask for the check
    assert (await world.update("creator", changed, ["notes"], etag="", notes="third")).notes == "third"


async def test_update_and_delete_of_a_missing_entry_are_not_found(world):
    entry = await world.create("creator")
    await world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name), metadata=world.md("creator"))
    await expect_error(world.update("creator", entry, ["notes"], notes="x"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await expect_error(world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name),
                                                   metadata=world.md("creator")), grpc.StatusCode.NOT_FOUND)
    await expect_error(world.reveal("creator", entry.name), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    live = await world.create("creator")  # an entry's id under another system of the customer is not that entry
    await expect_error(world.get("creator", live.name.replace(world.system, world.other_system)),
                       grpc.StatusCode.NOT_FOUND)


async def test_reveal_reason_is_bounded(world):
    entry = await world.create("creator")
    await expect_error(world.reveal("creator", entry.name, reason="r" * 501), INVALID, "INVALID_ARGUMENT",
                       field="reason")
    await expect_error(world.reveal("creator", entry.name, reason="a\nb"), INVALID, field="reason")


# --- listing ------------------------------------------------------------------------------------------------
async def test_list_pages_in_creation_order_and_filters_by_kind(world):
    system = await world.suite.new_system(world.customer, world.ops, sid="DEV")
    made = [await world.create("creator", system=system, kind=kind) for kind in
            (SYSTEM_USER, SAPROUTER, SYSTEM_USER, SERVER_OS, SYSTEM_USER)]
    seen, token = [], ""
    while True:
        page = await world.depot.ListLogonData(dp.ListLogonDataRequest(parent=system, page_size=2, page_token=token),
                                               metadata=world.md("other_edit_my"))
        assert len(page.logon_data) <= 2
        seen += [e.name for e in page.logon_data]
        token = page.next_page_token
        if not token:
            break
    assert seen == [e.name for e in made]
    users = await world.depot.ListLogonData(dp.ListLogonDataRequest(parent=system, kind=SYSTEM_USER, page_size=2),
                                            metadata=world.md("creator"))
    assert [e.name for e in users.logon_data] == [made[0].name, made[2].name] and users.next_page_token
    await expect_error(world.depot.ListLogonData(dp.ListLogonDataRequest(
        parent=system, kind=SAPROUTER, page_token=users.next_page_token), metadata=world.md("creator")), INVALID,
        "INVALID_ARGUMENT", field="page_token")
    for bad in (dict(page_token="garbage!"), dict(page_size=-1), dict(page_size=1001), dict(kind=42)):
        err = await expect_error(world.depot.ListLogonData(dp.ListLogonDataRequest(parent=system, **bad),
                                                           metadata=world.md("creator")), INVALID)
        assert status_details(err)[1][0][0] in ("page_token", "page_size", "kind")


async def test_an_engineers_list_pages_over_hidden_entries(world):
    """Pages stay full and complete when many entries in between are hidden by the restricted view."""
    system = await world.suite.new_system(world.customer, world.ops, sid="SBX")
    incident = await world.new_incident(system=system)
    world.users["sbx_engineer"], world.tokens["sbx_engineer"] = await world.suite.new_engineer()
    await world.assign(incident, "sbx_engineer")
    hidden = [await world.create("creator", system=system) for _ in range(6)]
    shown = [await world.create("creator", system=system, kind=SAPROUTER) for _ in range(3)]
    await world.set_view("edit_all", incident, [hidden[0].name], system=system)
    seen, token = [], ""
    while True:
        page = await world.depot.ListLogonData(dp.ListLogonDataRequest(parent=system, page_size=1, page_token=token),
                                               metadata=world.md("sbx_engineer"))
        seen += [e.name for e in page.logon_data]
        token = page.next_page_token
        if not token:
            break
    assert seen == [hidden[0].name] + [e.name for e in shown]


async def test_connections_unavailable_is_unavailable_and_nothing_is_written(world):
    """Last in this module: it restarts connections (new port) and the depot (to find it again)."""
    suite = world.suite
    before = await footprint(world)
    await suite.stop_service("connections")
    try:
        await expect_error(world.create("creator"), grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
    finally:
        await suite.start_service("connections")
        await restart_depot(suite)
    assert await footprint(world) == before
    assert (await world.create("creator")).has_secret

