"""ConnectionsService's List methods page through services.kit.paging (AIP-158): ListConnectionTypes serves
the catalog in the seed's order page by page, and every list's page token is valid only with the request it
was issued for (its parent, its filters); a token replayed with other parameters, or forged, is INVALID_ARGUMENT
on page_token."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Callable

import grpc
import pytest
import pytest_asyncio

from remotesupport.connections.v1 import connections_pb2 as cp
from tests.helpers import expect_error
from tests.integration.connections.world import HOUR, World, build_world
from tests.unit.catalog_data import CONNECTION_TYPES

pytestmark = pytest.mark.asyncio(loop_scope="module")
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(suite) -> World:
    """The shared world, with two of everything: systems, set-ups of its system, windows and incidents."""
    world = await build_world(suite)
    world.second_system = await world.new_system()
    await world.set_up(world.second_system)
    await world.set_up(world.system, "GOTOASSIST")
    await world.open(start=4 * HOUR)
    await world.new_incident()
    return world


def _tampered(token: str, cursor: object) -> str:
    """`token` (as the service issued it) with its cursor replaced: what a caller could forge."""
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body["a"] = cursor
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Listing:
    """A List method, how to ask it for page one, and the same request with another parent or filter."""

    method: str
    items: str  # the response's repeated field
    first: Callable[[World], object]  # the request of page one (page_size 1)
    other: Callable[[World], object]  # the same with another parent or filter
    forged: tuple  # cursors a caller could forge: wrong kinds, out of range


_TIME_CURSORS = ([1, "x"], ["not a time", "x"], ["10000-01-01T00:00:00+00:00", "x"], ["2031-03-01T12:00:00+00:00"],
                 ["2031-03-01T12:00:00+00:00", 7])
LISTINGS = [
    Listing("ListConnectionTypes", "connection_types",
            lambda w: cp.ListConnectionTypesRequest(page_size=1),
            lambda w: cp.ListConnectionTypesRequest(page_size=1, category=cp.CONNECTION_CATEGORY_SAP_GUI),
            ([5], [None], ["NOPE"], ["x" * 2000])),
    Listing("ListSystems", "systems",
            lambda w: cp.ListSystemsRequest(parent=f"customers/{w.customer}", page_size=1),
            lambda w: cp.ListSystemsRequest(parent=f"customers/{w.customer}", page_size=1, query="ERP"),
            ([7], [["7001"]], ["7001", "7002"], ["x" * 2000])),
    Listing("ListConnectionSetups", "connection_setups",
            lambda w: cp.ListConnectionSetupsRequest(parent=w.system, page_size=1),
            lambda w: cp.ListConnectionSetupsRequest(parent=w.second_system, page_size=1),
            ([1], [True], [{"code": "SSH"}])),
    Listing("ListConnections", "connections",
            lambda w: cp.ListConnectionsRequest(parent=w.system, page_size=1),
            lambda w: cp.ListConnectionsRequest(parent=w.system, page_size=1, state=cp.CONNECTION_STATE_OPEN),
            _TIME_CURSORS),
    Listing("ListIncidents", "incidents",
            lambda w: cp.ListIncidentsRequest(parent=f"customers/{w.customer}", page_size=1),
            lambda w: cp.ListIncidentsRequest(parent=f"customers/{w.customer}", page_size=1,
                                              status=cp.INCIDENT_STATUS_NEW),
            _TIME_CURSORS),
]
BY_METHOD = {listing.method: listing for listing in LISTINGS}


async def _page_one_token(world: World, listing: Listing) -> str:
    token = (await world.call(listing.method, listing.first(world), "member")).next_page_token
    assert token, f"{listing.method} has more than one item, so page one of size 1 has a next page"
    return token


async def test_list_connection_types_pages_the_catalog_in_the_seeds_order(world):
    pages, token = [], ""
    while True:
        page = await world.call("ListConnectionTypes", cp.ListConnectionTypesRequest(
            page_size=10, page_token=token), "member")
        pages.append([t.code for t in page.connection_types])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [10, 10, 10, 3]
    assert [code for p in pages for code in p] == [t.code for t in CONNECTION_TYPES]
    everything = await world.call("ListConnectionTypes", cp.ListConnectionTypesRequest(), "member")
    assert len(everything.connection_types) == 33 and not everything.next_page_token, "the default page is all"


async def test_list_connection_types_pages_within_a_category(world):
    request = cp.ListConnectionTypesRequest(category=cp.CONNECTION_CATEGORY_APPLICATION_SHARING_OS, page_size=5)
    first = await world.call("ListConnectionTypes", request, "member")
    request.page_token = first.next_page_token
    rest = await world.call("ListConnectionTypes", request, "member")
    assert not rest.next_page_token
    assert [t.code for t in [*first.connection_types, *rest.connection_types]] == [
        t.code for t in CONNECTION_TYPES if t.category == "APPLICATION_SHARING_OS"]


@pytest.mark.parametrize("method", BY_METHOD)
async def test_a_page_token_continues_its_own_request(world, method):
    listing = BY_METHOD[method]
    request = listing.first(world)
    request.page_token = await _page_one_token(world, listing)
    request.page_size = 1000  # the page size is not part of the request's scope
    rest = await world.call(method, request, "member")
    assert len(getattr(rest, listing.items)) >= 1 and not rest.next_page_token


@pytest.mark.parametrize("method", BY_METHOD)
async def test_a_page_token_replayed_with_another_parent_or_filter_is_invalid_argument(world, method):
    listing = BY_METHOD[method]
    request = listing.other(world)
    request.page_token = await _page_one_token(world, listing)
    await expect_error(world.call(method, request, "member"), INVALID, "INVALID_ARGUMENT", field="page_token")


@pytest.mark.parametrize("method,cursor", [(listing.method, cursor) for listing in LISTINGS
                                           for cursor in listing.forged])
async def test_a_forged_cursor_is_invalid_argument(world, method, cursor):
    listing = BY_METHOD[method]
    request = listing.first(world)
    request.page_token = _tampered(await _page_one_token(world, listing), cursor)
    await expect_error(world.call(method, request, "member"), INVALID, "INVALID_ARGUMENT", field="page_token")


async def test_a_connection_type_token_names_a_type_of_its_category(world):
    """A cursor naming a type of the catalog, but of another category than the request's, was never issued."""
    request = cp.ListConnectionTypesRequest(category=cp.CONNECTION_CATEGORY_FURTHER, page_size=1)
    token = (await world.call("ListConnectionTypes", request, "member")).next_page_token
    request.page_token = _tampered(token, ["R3_SUPPORT"])
    await expect_error(world.call("ListConnectionTypes", request, "member"), INVALID, "INVALID_ARGUMENT",
                       field="page_token")
