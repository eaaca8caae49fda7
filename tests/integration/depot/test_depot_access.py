"""Who sees and does what in the depot (issue points 2 and 3), each rule for each kind of principal:
creator (EDIT_MY), another EDIT_MY user, an EDIT_ALL user, a user of another customer, the engineer processing
an in-process incident, an engineer without assignment, an engineer whose incident has a restricted view that
leaves the entry out, and the platform admin."""
from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest
import pytest_asyncio

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.helpers import expect_error
from tests.integration.depot.world import DATABASE, PRINCIPALS, SAPROUTER, SERVER_OS, World

pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = grpc.StatusCode.PERMISSION_DENIED
SECRET = "Tr0ub4dor&3-su-secret"
OUTSIDERS = ("other_customer", "unassigned_engineer", "platform_admin")


def allowed(*principals: str) -> list:
    """Every principal, with whether the rule allows it."""
    return [pytest.param(p, p in principals, id=p) for p in PRINCIPALS]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(world: World):
    """A system user by the creator (outside the restricted view), a SAProuter password and a server user by the
    creator, and a system user by EDIT_ALL that the view of `view_incident` names."""
    su = await world.create("creator", user_name="SUPPORT1", secret=SECRET)
    router = await world.create("creator", kind=SAPROUTER, secret="router-secret")
    server = await world.create("creator", kind=SERVER_OS, server="ap01.example.com", secret="os-secret")
    shown = await world.create("edit_all", user_name="VENDOR_ONLY", secret="shown-secret")
    await world.set_view("edit_all", world.view_incident, [shown.name])
    spare_incident = await world.new_incident()
    return SimpleNamespace(su=su, router=router, server=server, shown=shown, spare_incident=spare_incident,
                           all={su.name, router.name, server.name, shown.name})


async def logged(world: World, principal: str, entry: str, action: int) -> list[dp.LogEvent]:
    return [e for e in await world.events(logon_data=entry, actor=world.users[principal]) if e.action == action]


# --- point 2: Get / List show every entry of the customer at a glance, secrets masked -----------------------
@pytest.mark.parametrize("principal, sees_all", [
    *[pytest.param(p, True, id=p) for p in ("creator", "other_edit_my", "edit_all", "assigned_engineer")],
    pytest.param("engineer_outside_view", False, id="engineer_outside_view"),
    *[pytest.param(p, None, id=p) for p in OUTSIDERS],
])
async def test_list_shows_entries_at_a_glance_with_secrets_masked(world, shared, principal, sees_all):
    if sees_all is None:
        await expect_error(world.list(principal), DENIED, "PERMISSION_DENIED")
        return
    listed = {e.name: e for e in await world.list(principal)}
    expected = shared.all if sees_all else shared.all - {shared.su.name}
    assert expected <= set(listed)
    assert not (shared.all - expected) & set(listed)
    for entry in listed.values():
        assert entry.has_secret and SECRET.encode() not in entry.SerializeToString()


@pytest.mark.parametrize("principal, ok", allowed("creator", "other_edit_my", "edit_all", "assigned_engineer"))
async def test_get_shows_an_entry_with_its_secret_masked(world, shared, principal, ok):
    if not ok:
        await expect_error(world.get(principal, shared.su.name), DENIED, "PERMISSION_DENIED")
        return
    entry = await world.get(principal, shared.su.name)
    assert entry == shared.su
    assert entry.has_secret and SECRET.encode() not in entry.SerializeToString()


# --- point 2: RevealLogonData only for the creator, EDIT_ALL, the assigned engineer; refusals are logged -----
@pytest.mark.parametrize("principal, ok", allowed("creator", "edit_all", "assigned_engineer"))
async def test_reveal_returns_the_secret_only_to_creator_edit_all_and_assigned_engineer(world, shared, principal, ok):
    if ok:
        revealed = await world.reveal(principal, shared.su.name, reason="incident analysis")
        assert (revealed.secret, revealed.user_name, revealed.name) == (SECRET, "SUPPORT1", shared.su.name)
        [event] = [e for e in await logged(world, principal, shared.su.name, dp.LOG_ACTION_REVEAL)
                   if e.name == revealed.log_event]
        assert event.outcome == dp.LOG_OUTCOME_SUCCESS and event.detail == "reason: incident analysis"
        assert event.incident == (world.incident if principal == "assigned_engineer" else "")
        return
    err = await expect_error(world.reveal(principal, shared.su.name), DENIED, "PERMISSION_DENIED")
    assert SECRET not in err.details()
    [event] = await logged(world, principal, shared.su.name, dp.LOG_ACTION_REVEAL_DENIED)
    assert event.outcome == dp.LOG_OUTCOME_DENIED and SECRET not in str(event)


async def test_platform_admin_never_reveals_even_holding_every_other_right(world, shared):
    """The admin manages keys and customers, and still cannot read one secret."""
    await world.depot.GetKeyStatus(dp.GetKeyStatusRequest(), metadata=world.md("platform_admin"))
    for entry in (shared.su, shared.router, shared.shown):
        await expect_error(world.reveal("platform_admin", entry.name), DENIED, "PERMISSION_DENIED")


# --- point 2: EDIT_MY overwrites anyone's secret without reading it; other fields only of its own ----------
@pytest.mark.parametrize("principal, ok", allowed("creator", "other_edit_my", "edit_all", "assigned_engineer"))
async def test_overwrite_secret_without_reading_it(world, principal, ok):
    entry = await world.create("creator", secret="old-secret")
    if not ok:
        await expect_error(world.update(principal, entry, ["secret"], secret="new-secret"), DENIED,
                           "PERMISSION_DENIED")
        assert (await world.reveal("creator", entry.name)).secret == "old-secret"
        return
    updated = await world.update(principal, entry, ["secret"], secret="new-secret")
    assert b"new-secret" not in updated.SerializeToString()
    assert updated.updater == world.users[principal] and updated.etag != entry.etag
    assert (await world.reveal("creator", entry.name)).secret == "new-secret"
    [event] = await logged(world, principal, entry.name, dp.LOG_ACTION_SECRET_OVERWRITE)
    assert "new-secret" not in str(event)
    if principal == "other_edit_my":  # wrote it, may never read it
        await expect_error(world.reveal(principal, entry.name), DENIED, "PERMISSION_DENIED")


async def test_edit_my_overwrites_a_colleagues_saprouter_password_but_not_its_other_fields(world):
    router = await world.create("creator", kind=SAPROUTER, secret="old-router-secret")
    router = await world.update("other_edit_my", router, ["secret"], secret="new-router-secret")
    await expect_error(world.update("other_edit_my", router, ["server"], server="router2"), DENIED,
                       "PERMISSION_DENIED")
    await expect_error(world.update("other_edit_my", router, ["server", "secret"], server="router2", secret="x"),
                       DENIED, "PERMISSION_DENIED")
    await expect_error(world.reveal("other_edit_my", router.name), DENIED, "PERMISSION_DENIED")
    assert (await world.reveal("creator", router.name)).secret == "new-router-secret"


@pytest.mark.parametrize("principal, ok", allowed("creator", "edit_all", "assigned_engineer"))
async def test_update_fields_of_an_entry(world, principal, ok):
    entry = await world.create("creator", notes="before")
    if not ok:
        await expect_error(world.update(principal, entry, ["notes"], notes=f"by {principal}"), DENIED,
                           "PERMISSION_DENIED")
        assert (await world.get("creator", entry.name)).notes == "before"
        return
    updated = await world.update(principal, entry, ["notes", "server"], notes=f"by {principal}", server="ap02")
    assert (updated.notes, updated.server, updated.updater) == (f"by {principal}", "ap02", world.users[principal])
    [event] = await logged(world, principal, entry.name, dp.LOG_ACTION_UPDATE)
    assert event.detail == "changed notes, server"


@pytest.mark.parametrize("principal, ok", allowed("creator", "other_edit_my", "edit_all"))
async def test_create_new_entries(world, principal, ok):
    if not ok:
        await expect_error(world.create(principal, secret="create-secret"), DENIED, "PERMISSION_DENIED")
        return
    entry = await world.create(principal, secret="create-secret")
    assert entry.creator == world.users[principal] and entry.installation == "20012345"
    assert len(await logged(world, principal, entry.name, dp.LOG_ACTION_CREATE)) == 1


@pytest.mark.parametrize("principal, ok", allowed("creator", "edit_all"))
async def test_delete_an_entry(world, principal, ok):
    entry = await world.create("creator")
    if not ok:
        await expect_error(world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name),
                                                       metadata=world.md(principal)), DENIED, "PERMISSION_DENIED")
        assert (await world.get("creator", entry.name)).name == entry.name
        return
    await world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name, etag=entry.etag),
                                      metadata=world.md(principal))
    await expect_error(world.get("creator", entry.name), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    assert len(await logged(world, principal, entry.name, dp.LOG_ACTION_DELETE)) == 1


# --- point 2: the processor of an in-process incident, and only while it is in process ---------------------
async def test_processor_reads_and_updates_only_while_the_incident_is_in_process(world, shared):
    incident = await world.new_incident()
    world.users["late_engineer"], world.tokens["late_engineer"] = await world.suite.new_engineer()
    await expect_error(world.reveal("late_engineer", shared.router.name), DENIED, "PERMISSION_DENIED")
    await world.assign(incident, "late_engineer")
    assert (await world.reveal("late_engineer", shared.router.name)).secret == "router-secret"
    router = await world.get("late_engineer", shared.router.name)
    await world.update("late_engineer", router, ["notes"], notes="route checked")
    await world.hand_back(incident, "late_engineer")  # waiting for the customer: no longer in process
    await expect_error(world.reveal("late_engineer", shared.router.name), DENIED, "PERMISSION_DENIED")
    await expect_error(world.list("late_engineer"), DENIED, "PERMISSION_DENIED")
    await world.take_back(incident)  # back at the vendor with the same processor
    assert (await world.reveal("late_engineer", shared.router.name)).secret == "router-secret"


async def test_engineers_neither_create_nor_delete_nor_move_an_entry_between_incidents(world, shared):
    await expect_error(world.create("assigned_engineer"), DENIED, "PERMISSION_DENIED")
    await expect_error(world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=shared.router.name),
                                                   metadata=world.md("assigned_engineer")), DENIED)
    await expect_error(world.update("assigned_engineer", shared.router, ["restricted_incident"],
                                    restricted_incident=world.incident), DENIED, "PERMISSION_DENIED",
                       message="restricted_incident")


async def test_permission_before_existence(world, shared):
    missing = shared.su.name.rsplit("/", 1)[0] + "/0123456789abcdef"
    for principal in ("no_logon_rights", "other_customer", "unassigned_engineer", "platform_admin"):
        await expect_error(world.get(principal, missing), DENIED, "PERMISSION_DENIED")
        await expect_error(world.reveal(principal, missing), DENIED, "PERMISSION_DENIED")
    await expect_error(world.get("other_edit_my", missing), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await expect_error(world.reveal("other_edit_my", missing), grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


# --- point 3: restricted views ----------------------------------------------------------------------------
@pytest.mark.parametrize("principal, ok", allowed("edit_all"))
async def test_only_edit_all_maintains_a_restricted_view(world, shared, principal, ok):
    if not ok:
        await expect_error(world.set_view(principal, shared.spare_incident, [shared.su.name]), DENIED,
                           "PERMISSION_DENIED")
        return
    view = await world.set_view(principal, shared.spare_incident, [shared.su.name])
    assert list(view.logon_data) == [shared.su.name] and view.updater == world.users[principal]
    events = [e for e in await world.events(system=world.system)
              if e.action == dp.LOG_ACTION_RESTRICTED_VIEW_CHANGE and e.incident == shared.spare_incident]
    assert events[-1].actor == world.users[principal]
    cleared = await world.set_view(principal, shared.spare_incident, [])
    assert list(cleared.logon_data) == []


@pytest.mark.parametrize("principal, ok", allowed("creator", "other_edit_my", "edit_all"))
async def test_get_restricted_view(world, shared, principal, ok):
    request = dp.GetRestrictedViewRequest(name=world.view_name(world.view_incident))
    if not ok:
        await expect_error(world.depot.GetRestrictedView(request, metadata=world.md(principal)), DENIED,
                           "PERMISSION_DENIED")
        return
    view = (await world.depot.GetRestrictedView(request, metadata=world.md(principal))).restricted_view
    assert list(view.logon_data) == [shared.shown.name] and view.updater == world.users["edit_all"]


async def test_engineer_outside_the_view_keeps_saprouter_and_server_entries(world, shared):
    for entry in (shared.router, shared.server, shared.shown):
        assert (await world.get("engineer_outside_view", entry.name)).name == entry.name
    assert (await world.reveal("engineer_outside_view", shared.router.name)).secret == "router-secret"
    assert (await world.reveal("engineer_outside_view", shared.shown.name)).secret == "shown-secret"
    await expect_error(world.get("engineer_outside_view", shared.su.name), DENIED, "PERMISSION_DENIED")
    await expect_error(world.update("engineer_outside_view", shared.su, ["notes"], notes="x"), DENIED)
    await expect_error(world.update("engineer_outside_view", shared.su, ["secret"], secret="x"), DENIED)


async def test_an_empty_view_means_no_restriction(world, shared):
    await world.set_view("edit_all", world.view_incident, [])
    try:
        assert shared.su.name in {e.name for e in await world.list("engineer_outside_view")}
        assert (await world.reveal("engineer_outside_view", shared.su.name)).secret == SECRET
    finally:
        await world.set_view("edit_all", world.view_incident, [shared.shown.name])
    await expect_error(world.reveal("engineer_outside_view", shared.su.name), DENIED)


async def test_an_entry_for_one_incident_is_seen_only_through_that_incident(world):
    only_first = await world.create("creator", restricted_incident=world.incident)
    only_second = await world.create("creator", kind=DATABASE, restricted_incident=world.view_incident)
    assert only_first.restricted_incident == world.incident
    assert (await world.get("assigned_engineer", only_first.name)).name == only_first.name
    await expect_error(world.get("assigned_engineer", only_second.name), DENIED, "PERMISSION_DENIED")
    await expect_error(world.get("engineer_outside_view", only_first.name), DENIED, "PERMISSION_DENIED")
    assert (await world.reveal("engineer_outside_view", only_second.name)).secret == "Init1al-Secret!"
    names = {e.name for e in await world.list("assigned_engineer")}
    assert only_first.name in names and only_second.name not in names


async def test_a_deleted_view_member_does_not_widen_the_view(world, shared):
    incident = await world.new_incident()
    world.users["view_engineer"], world.tokens["view_engineer"] = await world.suite.new_engineer()
    await world.assign(incident, "view_engineer")
    member = await world.create("edit_all", user_name="TEMP")
    await world.set_view("edit_all", incident, [member.name])
    await world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=member.name), metadata=world.md("edit_all"))
    view = (await world.depot.GetRestrictedView(dp.GetRestrictedViewRequest(name=world.view_name(incident)),
                                                metadata=world.md("edit_all"))).restricted_view
    assert list(view.logon_data) == [member.name]  # still restricted: to nothing that exists
    await expect_error(world.get("view_engineer", shared.su.name), DENIED, "PERMISSION_DENIED")


@pytest.mark.parametrize("case", ["saprouter", "missing", "other_system", "twice", "malformed"])
async def test_restricted_view_bad_members_change_nothing(world, shared, case):
    other = await world.create("creator", system=world.other_system) if case == "other_system" else None
    members = {
        "saprouter": [shared.router.name],
        "missing": [shared.su.name.rsplit("/", 1)[0] + "/feedfacefeedface"],
        "other_system": [other.name if other else ""],
        "twice": [shared.shown.name, shared.shown.name],
        "malformed": ["logonData/nope"],
    }[case]
    field = "restricted_view.logon_data[1]" if case == "twice" else "restricted_view.logon_data[0]"
    await expect_error(world.set_view("edit_all", world.view_incident, members), grpc.StatusCode.INVALID_ARGUMENT,
                       "INVALID_ARGUMENT", field=field)
    view = (await world.depot.GetRestrictedView(dp.GetRestrictedViewRequest(name=world.view_name(world.view_incident)),
                                                metadata=world.md("edit_all"))).restricted_view
    assert list(view.logon_data) == [shared.shown.name]


async def test_restricted_view_of_an_unknown_incident_or_of_another_systems_incident(world, shared):
    unknown = f"customers/{world.customer}/incidents/0000ffff0000ffff"
    await expect_error(world.set_view("edit_all", unknown, [shared.su.name]), grpc.StatusCode.NOT_FOUND)
    foreign = await world.new_incident(system=world.other_system)
    await expect_error(world.set_view("edit_all", foreign, [shared.su.name]), grpc.StatusCode.FAILED_PRECONDITION,
                       "FAILED_PRECONDITION")
    await expect_error(world.depot.SetRestrictedView(dp.SetRestrictedViewRequest(
        restricted_view=dp.RestrictedView(name="customers/1/systems/2/views/x")), metadata=world.md("edit_all")),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", field="restricted_view.name")
