"""Systems and set-ups over a real database (SQLite and PostgreSQL): validation, uniqueness, the
"Switch System" search, paging, etags, and set-ups that update rather than duplicate."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from services.connections import setups, systems
from services.connections.systems import SystemFields
from services.kit.clock import as_utc
from services.kit.errors import AlreadyExists, EtagMismatch, InvalidArgument, NotFound
from tests.unit.connections_support import USER, new_customer

pytestmark = pytest.mark.asyncio(loop_scope="module")


def fields(number="1", installation="0020123456", sid="PRD", **extra) -> SystemFields:
    return SystemFields(installation_number=installation, system_id=sid, system_number=number, **extra)


def _violations(caught) -> dict[str, str]:
    return dict(caught.value.violations)


async def test_create_and_get(conn_db, clock):
    customer = new_customer()
    row = await systems.create_system(conn_db, clock, customer, fields(
        "000000000312345678", description="ERP production", product="SAP S/4HANA 2023",
        saprouter_route="/H/router.example.com/S/3299/H/10.1.2.3"))
    assert systems.system_name(row) == f"customers/{customer}/systems/000000000312345678"
    got = await systems.get_system(conn_db, customer, "000000000312345678")
    assert (got.system_id, got.installation_number, got.description) == ("PRD", "0020123456", "ERP production")
    assert got.etag == row.etag and got.create_time is not None


@pytest.mark.parametrize("values,field", [
    (fields(installation=""), "system.installation_number"),
    (fields(installation="12345678901"), "system.installation_number"),
    (fields(installation="12a"), "system.installation_number"),
    (fields(sid="prd"), "system.system_id"),
    (fields(sid="SAP"), "system.system_id"),
    (fields(sid="P1"), "system.system_id"),
    (fields(number=""), "system.system_number"),
    (fields(number="1" * 19), "system.system_number"),
    (fields(number="12-3"), "system.system_number"),
    (fields(description="x" * 256), "system.description"),
    (fields(product="x" * 101), "system.product"),
    (fields(saprouter_route="/H/router/P/pw"), "system.saprouter_route"),
    (fields(saprouter_route="router:3299"), "system.saprouter_route"),
])
async def test_create_validation_names_the_field(conn_db, clock, values, field):
    with pytest.raises(InvalidArgument) as caught:
        await systems.create_system(conn_db, clock, new_customer(), values)
    assert list(_violations(caught)) == [field]


async def test_create_reports_every_bad_field_at_once(conn_db, clock):
    with pytest.raises(InvalidArgument) as caught:
        await systems.create_system(conn_db, clock, new_customer(), SystemFields(system_id="x"))
    assert set(_violations(caught)) == {"system.installation_number", "system.system_id", "system.system_number"}


async def test_password_in_route_message_mentions_the_depot(conn_db, clock):
    with pytest.raises(InvalidArgument) as caught:
        await systems.create_system(conn_db, clock, new_customer(), fields(saprouter_route="/H/r/W/hunter2"))
    message = _violations(caught)["system.saprouter_route"]
    assert "logon depot" in message and "hunter2" not in message and "hunter2" not in caught.value.message


async def test_system_number_and_installation_sid_are_unique_per_customer(conn_db, clock):
    customer, other = new_customer(), new_customer()
    await systems.create_system(conn_db, clock, customer, fields("1"))
    with pytest.raises(AlreadyExists, match="already exists"):
        await systems.create_system(conn_db, clock, customer, fields("1", sid="QAS"))
    with pytest.raises(AlreadyExists, match="installation 0020123456 already has system ID PRD"):
        await systems.create_system(conn_db, clock, customer, fields("2"))
    await systems.create_system(conn_db, clock, customer, fields("2", installation="0020999999"))
    await systems.create_system(conn_db, clock, other, fields("1"))  # another customer may use the same


async def test_concurrent_creates_of_one_system_store_one(conn_db, clock):
    customer = new_customer()
    results = await asyncio.gather(*(systems.create_system(conn_db, clock, customer, fields("7", sid=f"S{i:02d}"))
                                     for i in range(5)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, Exception))


async def test_get_missing_is_not_found(conn_db):
    with pytest.raises(NotFound):
        await systems.get_system(conn_db, new_customer(), "1")


async def _seed_search(db, clock) -> str:
    customer = new_customer()
    for number, sid, installation, description in [
        ("100", "PRD", "0020000001", "ERP Production"), ("200", "QAS", "0020000001", "ERP quality 100%"),
        ("300", "DEV", "0020000002", "BW development_box"), ("400", "SLM", "0030000003", "Solution Manager"),
    ]:
        await systems.create_system(db, clock, customer, fields(number, installation, sid, description=description))
    return customer


async def test_switch_system_search(conn_db, clock):
    customer = await _seed_search(conn_db, clock)

    async def numbers(query):
        rows, token = await systems.list_systems(conn_db, customer, query, 100, "")
        assert token == ""
        return [r.system_number for r in rows]

    assert await numbers("") == ["100", "200", "300", "400"]
    assert await numbers("prd") == ["100"]  # system ID, case-insensitive
    assert await numbers("0020000001") == ["100", "200"]  # installation
    assert await numbers("00300") == ["400"]  # installation substring
    assert await numbers("erp") == ["100", "200"]  # description
    assert await numbers("manager") == ["400"]
    assert await numbers("100%") == ["200"]  # % is literal
    assert await numbers("t_b") == ["300"]
    assert await numbers("p_o") == []  # _ is literal (as a wildcard it would match "Production")
    assert await numbers("nothing") == []
    assert await systems.list_systems(conn_db, new_customer(), "", 100, "") == ([], "")


async def test_paging_and_tokens_bound_to_the_query(conn_db, clock):
    customer = await _seed_search(conn_db, clock)
    page1, token = await systems.list_systems(conn_db, customer, "", 3, "")
    page2, last = await systems.list_systems(conn_db, customer, "", 3, token)
    assert [r.system_number for r in page1 + page2] == ["100", "200", "300", "400"] and last == ""
    with pytest.raises(InvalidArgument) as caught:
        await systems.list_systems(conn_db, customer, "erp", 3, token)
    assert list(_violations(caught)) == ["page_token"]
    with pytest.raises(InvalidArgument):
        await systems.list_systems(conn_db, customer, "", 3, "not-a-token")
    with pytest.raises(InvalidArgument) as caught:
        await systems.list_systems(conn_db, customer, "x" * 101, 3, "")
    assert list(_violations(caught)) == ["query"]


async def test_update_with_mask_and_etag(conn_db, clock):
    customer = new_customer()
    row = await systems.create_system(conn_db, clock, customer, fields("1", description="old"))
    clock.advance(seconds=5)
    updated = await systems.update_system(conn_db, clock, customer, "1",
                                          SystemFields(description="new", product="ignored"), ["description"],
                                          row.etag)
    assert (updated.description, updated.product) == ("new", "")
    assert updated.etag != row.etag and as_utc(updated.update_time) > as_utc(row.update_time)
    with pytest.raises(EtagMismatch):
        await systems.update_system(conn_db, clock, customer, "1", SystemFields(product="p"), ["product"], row.etag)
    with pytest.raises(InvalidArgument) as caught:  # only masked fields are validated
        await systems.update_system(conn_db, clock, customer, "1", SystemFields(system_id="sap"), ["system_id"], "")
    assert list(_violations(caught)) == ["system.system_id"]
    with pytest.raises(NotFound):
        await systems.update_system(conn_db, clock, customer, "2", SystemFields(product="p"), ["product"], "")


async def test_update_keeps_installation_and_sid_unique(conn_db, clock):
    customer = new_customer()
    await systems.create_system(conn_db, clock, customer, fields("1", sid="PRD"))
    await systems.create_system(conn_db, clock, customer, fields("2", sid="QAS"))
    with pytest.raises(AlreadyExists):
        await systems.update_system(conn_db, clock, customer, "2", SystemFields(system_id="PRD"), ["system_id"], "")
    same = await systems.update_system(conn_db, clock, customer, "1", SystemFields(system_id="PRD"), ["system_id"], "")
    assert same.system_id == "PRD"


async def test_delete_with_etag(conn_db, clock):
    customer = new_customer()
    row = await systems.create_system(conn_db, clock, customer, fields("1"))
    with pytest.raises(EtagMismatch):
        await systems.delete_system(conn_db, clock, customer, "1", "stale")
    await systems.delete_system(conn_db, clock, customer, "1", row.etag)
    with pytest.raises(NotFound):
        await systems.delete_system(conn_db, clock, customer, "1", "")


# --- set-ups -------------------------------------------------------------------------------------


async def test_a_second_set_up_updates_never_duplicates(conn_db, clock, connection_types):
    customer = new_customer()
    await systems.create_system(conn_db, clock, customer, fields("1"))
    ssh = connection_types.get("SSH")
    first, _, created = await setups.set_up_connection(conn_db, clock, USER, customer, "1", ssh, {"host": "h1"})
    assert created and json.loads(first.parameters) == {"host": "h1"}
    clock.advance(minutes=1)
    again, _, created = await setups.set_up_connection(conn_db, clock, USER, customer, "1", ssh,
                                                       {"host": "h2", "port": "2222"})
    assert not created and again.id == first.id
    assert json.loads(again.parameters) == {"host": "h2", "port": "2222"}
    assert as_utc(again.create_time) == as_utc(first.create_time)
    assert as_utc(again.update_time) == as_utc(first.update_time) + dt.timedelta(minutes=1)
    rows, _, token = await setups.list_setups(conn_db, customer, "1", 100, "")
    assert [r.type_code for r in rows] == ["SSH"] and token == ""


async def test_concurrent_set_ups_of_one_type_store_one(conn_db, clock, connection_types):
    customer = new_customer()
    await systems.create_system(conn_db, clock, customer, fields("1"))
    ssh = connection_types.get("SSH")
    results = await asyncio.gather(*(setups.set_up_connection(conn_db, clock, USER, customer, "1", ssh,
                                                              {"host": f"h{i}"}) for i in range(6)))
    assert sum(created for _, _, created in results) == 1
    rows, _, _ = await setups.list_setups(conn_db, customer, "1", 100, "")
    assert len(rows) == 1


@pytest.mark.parametrize("code,params,fields_", [
    ("SSH", {}, ["parameters.host"]),
    ("SSH", {"host": "bad host", "port": "0"}, ["parameters.host", "parameters.port"]),
    ("R3_SUPPORT", {"host": "sap1", "instance_number": "7"}, ["parameters.instance_number"]),
    ("HTTP_CONNECT_URL", {"url": "https://u:pw@host/"}, ["parameters.url"]),
    ("SSH", {"host": "h", "password": "x"}, ["parameters.password"]),
    ("SSH", {"host": "h", "Bad Key": "x"}, ["parameters"]),
])
async def test_set_up_parameters_are_validated_against_the_type(conn_db, clock, connection_types, code, params,
                                                                fields_):
    customer = new_customer()
    await systems.create_system(conn_db, clock, customer, fields("1"))
    with pytest.raises(InvalidArgument) as caught:
        await setups.set_up_connection(conn_db, clock, USER, customer, "1", connection_types.get(code), params)
    assert list(_violations(caught)) == fields_
    assert "pw" not in caught.value.message


async def test_set_ups_list_by_code_with_paging_and_delete(conn_db, clock, connection_types):
    customer = new_customer()
    await systems.create_system(conn_db, clock, customer, fields("1"))
    for code, params in [("SSH", {"host": "h"}), ("GOTOASSIST", {}), ("HTTP_CONNECT_URL", {"url": "https://h/"})]:
        await setups.set_up_connection(conn_db, clock, USER, customer, "1", connection_types.get(code), params)
    page1, _, token = await setups.list_setups(conn_db, customer, "1", 2, "")
    page2, _, end = await setups.list_setups(conn_db, customer, "1", 2, token)
    assert [r.type_code for r in page1 + page2] == ["GOTOASSIST", "HTTP_CONNECT_URL", "SSH"] and end == ""
    await setups.delete_setup(conn_db, clock, customer, "1", "SSH")
    with pytest.raises(NotFound):
        await setups.delete_setup(conn_db, clock, customer, "1", "SSH")
    with pytest.raises(NotFound):
        await setups.list_setups(conn_db, customer, "9", 2, "")


async def test_deleting_a_system_deletes_its_set_ups(conn_db, clock, connection_types):
    customer = new_customer()
    await systems.create_system(conn_db, clock, customer, fields("1"))
    await setups.set_up_connection(conn_db, clock, USER, customer, "1", connection_types.get("SSH"), {"host": "h"})
    await systems.delete_system(conn_db, clock, customer, "1", "")
    await systems.create_system(conn_db, clock, customer, fields("1"))
    rows, _, _ = await setups.list_setups(conn_db, customer, "1", 100, "")
    assert rows == []
