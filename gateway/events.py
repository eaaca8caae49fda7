"""WatchEvents at the gateway: the depot's and the connections service's feeds of one customer as one stream.

Each feed is opened as the caller (its service decides what the caller sees, event by event), and the gateway
passes their responses on as they come: each source's events keep their order, and the gateway's cursor holds
both sources' cursors, so a watch resumed from it misses nothing and repeats nothing of either. A type filter
is split between the sources; a source none of whose types is asked for is not opened, and without a type filter
a source the caller may not watch (the depot's, for a member without EDIT_MY or EDIT_ALL) is left out. The
feeds travel on connections of their own (`stubs`), so watches never crowd the pass-through's calls."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass

import grpc

from remotesupport.common.v1 import events_pb2
from remotesupport.connections.v1 import connections_pb2 as cpb
from remotesupport.depot.v1 import depot_pb2 as dpb
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from services.kit import auth, clients, feed, names
from services.kit import permissions as P
from services.kit.auth import Resource
from services.kit.errors import DependencyUnavailable, DomainError, InvalidArgument
from services.kit.paging import MAX_TOKEN_LENGTH
from services.kit.validate import Violations

# The types each source writes (the rest of EventType is the connections service's).
DEPOT_TYPES = frozenset(f"EVENT_TYPE_{n}" for n in feed.DEPOT_TYPES)
_NOT_OURS = "is not a cursor of this feed: pass the cursor of a response of a watch of the same customer"


@dataclass(frozen=True)
class _Source:
    name: str
    request_type: type
    types: list[int]
    cursor: str


def _sources(request: gpb.WatchEventsRequest) -> list[_Source]:
    names.parse("customer", request.parent, "parent")
    v = Violations()
    for i, number in enumerate(request.types):
        v.enum(f"types[{i}]", number, events_pb2.EventType)
    v.raise_if_any()
    cursors = _read_cursor(request.cursor)
    depot = [t for t in request.types if events_pb2.EventType.Name(t) in DEPOT_TYPES]
    connections = [t for t in request.types if events_pb2.EventType.Name(t) not in DEPOT_TYPES]
    out = []
    for name, request_type, types in (("depot", dpb.WatchEventsRequest, depot),
                                      ("connections", cpb.WatchEventsRequest, connections)):
        if types or not request.types:
            out.append(_Source(name, request_type, types, cursors.get(name, "")))
    return out


def _read_cursor(cursor: str) -> dict[str, str]:
    if not cursor:
        return {}
    if len(cursor) > 2 * MAX_TOKEN_LENGTH:
        raise InvalidArgument("cursor", _NOT_OURS)
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise InvalidArgument("cursor", _NOT_OURS) from None
    if not isinstance(body, dict) or not set(body) <= {"depot", "connections"} \
            or not all(isinstance(v, str) for v in body.values()):
        raise InvalidArgument("cursor", _NOT_OURS)
    return body


def _may_drop(error: Exception, request: gpb.WatchEventsRequest, others: set[str]) -> bool:
    """Whether a source that refused to open may be left out of the watch: the caller may not watch it
    (PERMISSION_DENIED), asked for no type of it in particular, and another source remains."""
    return (isinstance(error, DomainError) and error.code == grpc.StatusCode.PERMISSION_DENIED and bool(others)
            and not request.types)


def _cursor(cursors: dict[str, str]) -> str:
    raw = json.dumps(dict(sorted(cursors.items())), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class MergedFeed:
    """Serves RemoteSupportService.WatchEvents over the two services' WatchEvents (`stubs`: name -> stub)."""

    def __init__(self, stubs: dict) -> None:
        self.stubs = stubs

    async def serve(self, request: gpb.WatchEventsRequest, context) -> None:
        sources = {s.name: s for s in _sources(request)}
        decision, = await auth.current().decide_bulk([(P.GATEWAY_EVENTS_WATCH, Resource(customer=request.parent))])
        decision.raise_unless_allowed()
        cursors = {s.name: s.cursor for s in sources.values() if s.cursor}
        queue: asyncio.Queue = asyncio.Queue(maxsize=64)
        readers = [asyncio.create_task(self._read(s, request.parent, queue)) for s in sources.values()]
        try:
            opened: set[str] = set()
            pending: list = []  # events of a source that opened before the others did
            while True:
                name, response, error = await queue.get()
                if error is not None:
                    if name in opened or not _may_drop(error, request, set(sources) - {name}):
                        raise error
                    del sources[name]  # a feed the caller may not watch (the depot's, without EDIT_*): left out
                    cursors.pop(name, None)
                else:
                    cursors[name] = response.cursor
                    opened.add(name)
                    pending.extend(response.events)
                if len(opened) < len(sources):
                    continue  # the watch is open once every source's is
                await context.write(gpb.WatchEventsResponse(events=pending, cursor=_cursor(cursors)))
                pending = []
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _read(self, source: _Source, parent: str, queue: asyncio.Queue) -> None:
        request = source.request_type(parent=parent, types=source.types, cursor=source.cursor)
        try:
            async for response in clients.stream(self.stubs[source.name].WatchEvents, request, service=source.name):
                await queue.put((source.name, response, None))
        except Exception as error:  # noqa: BLE001 - the source's end ends the watch, with its status
            await queue.put((source.name, None, error))
            return
        await queue.put((source.name, None, DependencyUnavailable(f"the {source.name} service ended its feed")))
