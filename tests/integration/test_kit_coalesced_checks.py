"""Coalesced authz consultations against the real authz service (in-process, SQLite and PostgreSQL): the checks
of many concurrent calls, for many subjects, travel in few CheckBulk requests, and each is decided exactly as it
is when asked alone; a logout decides the next call; authz away refuses every call waiting together."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from remotesupport.authz.v1 import authz_pb2 as pb
from services.kit import auth, metrics
from services.kit import permissions as P
from services.kit.clients import TokenFile, channel
from services.kit.errors import AuthzUnavailable

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz",)
CHECK, BULK = "/remotesupport.authz.v1.AuthzService/Check", "/remotesupport.authz.v1.AuthzService/CheckBulk"


def served(method: str) -> float:
    return metrics.REQUESTS.labels(method=method, code="OK")._value.get()


def authorizer(suite, coalesce_s: float, address: str | None = None) -> auth.RemoteAuthorizer:
    return auth.RemoteAuthorizer(channel(address or suite.addr["authz"]),
                                 TokenFile(suite.var / "secrets" / "depot.token"), 2.0, coalesce_s)


def outcome(decision: auth.Decision) -> tuple:
    return decision.allowed, decision.authenticated, decision.subject.user if decision.subject else ""


async def people(suite):
    customer = await suite.new_customer()
    editors = [await suite.new_user(customer, ["EDIT_MY_LOGIN_DATA"]) for _ in range(3)]
    plain = [await suite.new_user(customer) for _ in range(2)]
    engineer = await suite.new_engineer()
    return customer, editors + plain + [engineer]


def entry(customer: str, owner: str) -> auth.Resource:
    return auth.Resource(customer=f"customers/{customer}", installation="20012345",
                         system=f"customers/{customer}/systems/7", owner=owner)


async def test_many_subjects_asking_at_once_travel_together_and_are_decided_each_for_its_own(suite):
    customer, principals = await people(suite)
    asks = [(token, permission, entry(customer, owner))
            for _, token in principals for permission in (P.LOGON_READ, P.LOGON_REVEAL)
            for owner, _ in principals[:2]]
    asks.append(("rs_not-a-token", P.LOGON_READ, entry(customer, principals[0][0])))
    alone = authorizer(suite, 0)
    expected = [outcome(await alone.check(*ask)) for ask in asks]
    assert {allowed for allowed, _, _ in expected} == {True, False}  # the mix is real
    together = authorizer(suite, 0.05)
    checks, bulks = served(CHECK), served(BULK)
    got = await asyncio.gather(*(together.check(*ask) for ask in asks))
    assert [outcome(d) for d in got] == expected
    assert served(CHECK) - checks + served(BULK) - bulks < len(asks) / 4  # a few requests carried them all
    assert served(BULK) > bulks


async def test_one_calls_bulk_check_beside_others_keeps_its_order_and_subject(suite):
    customer, principals = await people(suite)
    (owner, owner_token), (other, other_token) = principals[0], principals[3]
    mine = [(P.LOGON_READ, entry(customer, owner)), (P.LOGON_REVEAL, entry(customer, owner)),
            (P.LOGON_REVEAL, entry(customer, other))]
    alone = authorizer(suite, 0)
    expected = [outcome(d) for d in await alone.check_bulk(owner_token, mine)]
    together = authorizer(suite, 0.05)
    results = await asyncio.gather(together.check_bulk(owner_token, mine),
                                   *(together.check(other_token, p, r) for p, r in mine),
                                   together.check_bulk(owner_token, mine))
    assert [outcome(d) for d in results[0]] == expected == [outcome(d) for d in results[-1]]
    assert [outcome(d) for d in results[1:-1]] == [outcome(await alone.check(other_token, p, r)) for p, r in mine]


async def test_a_logout_decides_the_very_next_call_among_companions(suite):
    customer, principals = await people(suite)
    (owner, token) = principals[0]
    together = authorizer(suite, 0.05)
    resource = entry(customer, owner)
    before = await asyncio.gather(*(together.check(token, P.LOGON_REVEAL, resource) for _ in range(10)))
    assert all(d.allowed for d in before)
    await suite.stub("authz").Logout(pb.LogoutRequest(), metadata=suite.md(token))
    after = await asyncio.gather(*(together.check(t, P.LOGON_REVEAL, resource)
                                   for t in [token] * 10 + [principals[1][1]]))
    assert [d.authenticated for d in after] == [False] * 10 + [True]  # nothing reused: each decided fresh


async def test_authz_away_refuses_every_call_waiting_together():
    together = auth.RemoteAuthorizer(channel("127.0.0.1:1"), lambda: "rs_service", 0.3, 0.05)
    results = await asyncio.gather(*(together.check(f"rs_t{i}", P.LOGON_READ, auth.Resource()) for i in range(20)),
                                   return_exceptions=True)
    assert all(isinstance(r, AuthzUnavailable) and r.code == grpc.StatusCode.UNAVAILABLE for r in results)
    assert len({id(r) for r in results}) == 20
