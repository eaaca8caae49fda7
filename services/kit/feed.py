"""The event feed: the one way a service serves `WatchEvents` over its own events.

A service's events are a per-customer sequence without gaps, written in the transaction of the change they
describe, under a per-customer lock held to the commit (the depot's hash-chained log; the connections service's
event table). So positions commit in their order, an event exists if and only if its change committed, and a
reader that remembers the last position it saw misses nothing and sees nothing twice: the sequence is the
transactional outbox, and the feed is a reader of it.

`Feed.serve` runs one watch: the caller may open it (`rules.watch` on the customer, decided by authz), then
every batch of new events is decided again, event by event (`rules.read` on the event's customer, installation,
system and incident: the same rules as the service's lists), so a revoked token ends the stream at the next
batch and a revoked grant hides the next events. A watch without a cursor starts at the feed's end (what
happened before is in the service's lists and log). With nothing new, a heartbeat (the cursor, no events) is sent
every `heartbeat_s`, after deciding the watch again."""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
from dataclasses import dataclass
from typing import Awaitable, Protocol, Sequence, TypeVar

from remotesupport.common.v1 import events_pb2
from services.kit import auth, names
from services.kit.auth import Resource
from services.kit.clock import as_utc
from services.kit.errors import InvalidArgument, ResourceExhausted
from services.kit.paging import INT, PageTokens
from services.kit.principals import CUSTOMER_USER, SERVICE_ACCOUNT
from services.kit.validate import Violations, to_timestamp

CURSORS = PageTokens(INT)
TYPE_NUMBER = {v.name.removeprefix("EVENT_TYPE_"): v.number for v in events_pb2.EventType.DESCRIPTOR.values
               if v.number}
T = TypeVar("T")
# The event types the depot writes (its log; names without the prefix); every other type is the connections
# service's.
DEPOT_TYPES = frozenset(n for n in TYPE_NUMBER if n.startswith("LOGON_DATA_")) | {
    "RESTRICTED_VIEW_CHANGED", "KEY_ROTATED", "WEBHOOK_DELIVERY_FAILED"}
BATCH = 200  # events read, decided and sent at a time (one CheckBulk of at most as many distinct resources)


@dataclass(frozen=True)
class FeedEvent:
    """One stored event as the feed reads it; `type` is an EventType name without its prefix."""

    position: int
    type: str
    actor: str
    time: dt.datetime
    system: str = ""  # "customers/{c}/systems/{s}"
    resource: str = ""
    incident: str = ""  # "customers/{c}/incidents/{i}"
    scope_incident: str = ""  # the incident an assigned engineer must process to see it ("": any of the system)
    actor_only: bool = False  # a support engineer sees it only if it is the actor (its own tunnel sessions)
    detail: str = ""
    log_sequence: int = 0
    chain_hash: str = ""


class Source(Protocol):
    """A service's stored events of one customer (its store implements it)."""

    async def events_after(self, customer: str, position: int, limit: int) -> Sequence[FeedEvent]: ...

    async def last_position(self, customer: str) -> int: ...


@dataclass(frozen=True)
class Rules:
    watch: str  # the permission to open a watch of a customer
    read: str   # the permission to see one event (on its customer, installation, system, incident)


class Notifier:
    """Wakes this process's watchers when it committed new events; events written by another process (the
    relay, another replica) are found by polling. A reader takes a `ticket()` before it reads and waits on that
    ticket after, so a commit made while it was reading wakes it at once (none is missed)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    @staticmethod
    async def wait(ticket: asyncio.Event, timeout: float) -> None:
        """Until `ticket` is woken (at once if it was since it was taken), or `timeout` seconds. Not wait_for: on
        Python 3.11 it can swallow a cancellation that meets the wake-up, and a reader cancelled at its stop would
        then run on (and its stop wait for ever)."""
        waiter = asyncio.ensure_future(ticket.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()


@dataclass(frozen=True)
class Watch:
    customer: str  # customer number
    types: frozenset[str]  # empty: all
    after: int | None  # None: from the end of the feed


def parse(source: str, request) -> Watch:
    """The WatchEventsRequest's customer, type filter and cursor (one of `source`'s feed of that customer);
    INVALID_ARGUMENT naming the field."""
    parts = names.parse("customer", request.parent, "parent")
    v = Violations()
    for i, number in enumerate(request.types):
        v.enum(f"types[{i}]", number, events_pb2.EventType)
    v.raise_if_any()
    types = frozenset(events_pb2.EventType.Name(n).removeprefix("EVENT_TYPE_") for n in request.types)
    cursor = CURSORS.read(request.cursor, _scope(source, request.parent), "cursor")
    return Watch(parts["customer"], types, cursor[0] if cursor else None)


def _scope(source: str, parent: str) -> dict:
    return {"parent": parent, "feed": f"{source} events"}


def cursor_for(source: str, customer: str, position: int) -> str:
    return CURSORS.issue([position], _scope(source, names.customer(customer)))


def to_proto(source: str, customer: str, event: FeedEvent) -> events_pb2.Event:
    return events_pb2.Event(
        id=f"{source}/customers/{customer}/events/{event.position}", type=TYPE_NUMBER[event.type], source=source,
        position=event.position, customer=names.customer(customer), system=event.system, actor=event.actor,
        time=to_timestamp(as_utc(event.time)), resource=event.resource, incident=event.incident, detail=event.detail,
        log_sequence=event.log_sequence, chain_hash=event.chain_hash)


class Feed:
    """Serves WatchEvents of one service (`source`, e.g. "depot") over its `events` (a Source). At most
    `max_watches` watches are open in this process and `max_per_user` of one principal (RESOURCE_EXHAUSTED)."""

    def __init__(self, source: str, events: Source, rules: Rules, notifier: Notifier, response_type, *,
                 poll_s: float = 0.25, heartbeat_s: float = 15.0, max_watches: int = 200,
                 max_per_user: int = 8) -> None:
        self.source, self.events, self.rules, self.notifier = source, events, rules, notifier
        self.response_type = response_type
        self.poll_s, self.heartbeat_s = poll_s, heartbeat_s
        self.max_watches, self.max_per_user = max_watches, max_per_user
        self._open: collections.Counter[str] = collections.Counter()

    async def serve(self, request, context) -> None:
        watch = parse(self.source, request)
        caller = auth.current()
        await self._may_watch(caller, watch.customer)
        user = caller.subject.user
        if sum(self._open.values()) >= self.max_watches:
            raise ResourceExhausted(f"this {self.source} server has {self.max_watches} watches open, its most; "
                                    "retry later, or close a watch")
        if self._open[user] >= self.max_per_user and caller.subject.kind != SERVICE_ACCOUNT:  # the depot's
            # webhook follower keeps one watch per customer with an endpoint
            raise ResourceExhausted(f"{user} has {self.max_per_user} watches of the {self.source} feed open, the "
                                    "most one principal may; close one first")
        self._open[user] += 1
        try:
            await self._serve(watch, caller, context)
        finally:
            self._open[user] -= 1
            if not self._open[user]:
                del self._open[user]

    async def _serve(self, watch: Watch, caller: auth.AuthContext, context) -> None:
        customer = watch.customer
        last = await to_the_end(self.events.last_position(customer))
        position = last if watch.after is None else watch.after
        if position > last:
            raise InvalidArgument("cursor", f"is ahead of the feed of {names.customer(customer)} (it was not "
                                            "issued by this suite's database)")
        await context.write(self.response_type(cursor=cursor_for(self.source, customer, position)))  # open
        beat = asyncio.get_running_loop().time()
        while True:
            ticket = self.notifier.ticket()  # before reading: a commit from here on wakes the wait below
            rows = await to_the_end(self.events.events_after(customer, position, BATCH))
            if rows:
                position = rows[-1].position
                shown = await self._visible(caller, customer, [r for r in rows if not watch.types
                                                               or r.type in watch.types])
                if shown:
                    await context.write(self.response_type(
                        events=[to_proto(self.source, customer, e) for e in shown],
                        cursor=cursor_for(self.source, customer, position)))
                    beat = asyncio.get_running_loop().time()
                if len(rows) == BATCH:
                    continue
            now = asyncio.get_running_loop().time()
            if now - beat >= self.heartbeat_s:
                await self._may_watch(caller, customer)  # a revoked token or membership ends the watch
                await context.write(self.response_type(cursor=cursor_for(self.source, customer, position)))
                beat = now
            await self.notifier.wait(ticket, min(self.poll_s, max(0.0, beat + self.heartbeat_s - now)))

    async def _may_watch(self, caller: auth.AuthContext, customer: str) -> None:
        decision, = await caller.decide_bulk([(self.rules.watch, Resource(customer=names.customer(customer)))])
        decision.raise_unless_allowed()

    async def _visible(self, caller: auth.AuthContext, customer: str, rows: list[FeedEvent]) -> list[FeedEvent]:
        """The rows the caller may see now: one CheckBulk for the batch's distinct resources; an `actor_only`
        event is an engineer's only if it is the actor (as the sessions list shows an engineer its own)."""
        if not rows:
            return []
        resources = {r: _resource(customer, r) for r in rows}
        distinct = list(dict.fromkeys(resources.values()))
        decisions = await caller.decide_bulk([(self.rules.read, res) for res in distinct])
        allowed = {res for res, decision in zip(distinct, decisions) if decision.allowed}
        subject = caller.subject
        return [r for r in rows if resources[r] in allowed
                and (not r.actor_only or subject.kind in (CUSTOMER_USER, SERVICE_ACCOUNT) or r.actor == subject.user)]


_finishing: set[asyncio.Task] = set()  # reads whose watch was cancelled meanwhile, until they end


async def to_the_end(read: Awaitable[T]) -> T:
    """`read` (of the database) run to its end even if the watch is cancelled meanwhile (its client went away):
    cancelled inside a statement, its pooled connection would be thrown away half-reset (SQLAlchemy logs an
    error for it). The cancellation still ends the watch at once; the read finishes on its own."""
    task = asyncio.ensure_future(read)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _finishing.add(task)
        task.add_done_callback(_finished)
        raise


def _finished(task: asyncio.Task) -> None:
    _finishing.discard(task)
    if not task.cancelled():
        task.exception()  # a read nobody awaits any more: its failure, if any, is not news


def _resource(customer: str, event: FeedEvent) -> Resource:
    return Resource(customer=names.customer(customer), system=event.system, incident=event.scope_incident)
