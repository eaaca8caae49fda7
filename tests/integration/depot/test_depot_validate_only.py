"""validate_only (AIP-163) on CreateLogonData and DeleteLogonData: every check the call makes - authorization,
fields, the secret, the system (asked of connections), the entry's state - and nothing stored, deleted, logged or
counted against the ring key. The gateway's composite calls ask these first, so that they refuse before their
first effect."""
from __future__ import annotations

import grpc
import pytest

from remotesupport.depot.v1 import depot_pb2 as dp
from tests.helpers import expect_error
from tests.integration.depot.world import SYSTEM_USER, World

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def key_uses(world: World) -> int:
    status = await world.depot.GetKeyStatus(dp.GetKeyStatusRequest(), metadata=world.suite.md(world.suite.admin_token))
    return sum(k.encryptions for k in status.versions)


def create_request(world: World, **overrides) -> dp.CreateLogonDataRequest:
    request = dp.CreateLogonDataRequest(parent=world.system, logon_data=dp.LogonData(
        kind=SYSTEM_USER, client="001", user_name="CHECKONLY", expire_time=world.expire_in(days=3)),
        secret="Valid-Secret-1", validate_only=True)
    for field, value in overrides.items():
        setattr(request, field, value)
    return request


async def test_a_validated_create_answers_as_the_call_would_and_changes_nothing(world):
    entries, events, uses = await world.list("edit_all"), await world.events(), await key_uses(world)
    answer = await world.depot.CreateLogonData(create_request(world), metadata=world.md("creator"))
    assert answer.logon_data.name.startswith(f"{world.system}/logonData/")
    assert answer.logon_data.user_name == "CHECKONLY" and answer.logon_data.creator == world.users["creator"]
    assert [e.name for e in await world.list("edit_all")] == [e.name for e in entries]
    assert len(await world.events()) == len(events)
    assert await key_uses(world) == uses
    await expect_error(world.depot.GetLogonData(dp.GetLogonDataRequest(name=answer.logon_data.name),
                                                metadata=world.md("edit_all")), grpc.StatusCode.NOT_FOUND)


async def test_a_validated_create_refuses_what_the_create_would(world):
    await expect_error(world.depot.CreateLogonData(create_request(world, secret=""), metadata=world.md("creator")),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "secret")
    await expect_error(world.depot.CreateLogonData(create_request(world), metadata=world.suite.md(world.ops)),
                       grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    unknown = create_request(world, parent=f"customers/{world.customer}/systems/999999999")
    await expect_error(world.depot.CreateLogonData(unknown, metadata=world.md("creator")),
                       grpc.StatusCode.NOT_FOUND)


async def test_a_validated_delete_checks_and_deletes_nothing(world):
    entry = await world.create("creator")
    events = len(await world.events())
    await world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name, validate_only=True),
                                      metadata=world.md("creator"))
    assert (await world.get("edit_all", entry.name)).name == entry.name
    assert len(await world.events()) == events
    await expect_error(world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name, validate_only=True),
                                                   metadata=world.md("other_edit_my")),
                       grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    await expect_error(world.depot.DeleteLogonData(dp.DeleteLogonDataRequest(name=entry.name, etag="stale",
                                                                             validate_only=True),
                                                   metadata=world.md("creator")), grpc.StatusCode.ABORTED,
                       "ETAG_MISMATCH")
