"""Splicing one session: the engineer's OpenTunnel stream and the connector's AcceptTunnel stream, each pumped
by its own handler through the session's two bounded queues, bytes unchanged. A half-close travels as
`close_write`; the session is over when both directions are closed, or at once when it is cut."""
from __future__ import annotations

import asyncio
import contextlib

from remotesupport.connections.v1 import relay_pb2
from services.connections.relay.model import CHUNK_BYTES, EndReason, SessionEnded, TargetUnreachable
from services.connections.relay.registry import CLOSE_WRITE, Live
from services.kit.errors import InvalidArgument


async def _until_over(live: Live, *pumps: asyncio.Task) -> None:
    """Run `pumps` until the session is finished or cut; a pump's error is raised (after the others stop)."""
    waiters = {asyncio.create_task(live.finished.wait()), asyncio.create_task(live.cut_event.wait())}
    pending = {*pumps, *waiters}
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in waiters:
                    return
                if task.exception() is not None:
                    raise task.exception()
    finally:
        for task in (*pumps, *waiters):
            task.cancel()
        for task in (*pumps, *waiters):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# --- the two sides -------------------------------------------------------------------------------------------


async def engineer_side(live: Live, requests, context, dial_timeout_s: float) -> None:
    """After admission: wait for the connector, confirm `admitted`, then pump until the session is over.
    A cut or a refused dial ends the call with its status."""
    try:
        answer = await asyncio.wait_for(asyncio.shield(live.accepted), dial_timeout_s)
    except asyncio.TimeoutError:
        live.cut(EndReason.TARGET_UNREACHABLE, f"the connector did not answer within {dial_timeout_s:g} s")
        raise TargetUnreachable(live.cut_detail) from None
    if live.cut_reason is not None:
        raise _ended(live)
    if answer is not True:
        live.cut(EndReason.TARGET_UNREACHABLE, str(answer))
        raise TargetUnreachable(f"the customer's connector did not connect to {live.target}: {answer}")
    await context.write(relay_pb2.OpenTunnelResponse(admitted=relay_pb2.TunnelAdmitted(
        session=live.name, target=live.target)))
    await _until_over(live, asyncio.create_task(_pump_in(requests, live.to_connector, live.count_up)),
                      asyncio.create_task(_pump_out(live, live.to_engineer, context, relay_pb2.OpenTunnelResponse,
                                                    EndReason.TARGET_CLOSED)))
    if live.cut_reason is not None:
        raise _ended(live)


def _ended(live: Live) -> SessionEnded:
    if live.cut_reason is EndReason.TARGET_UNREACHABLE:
        return TargetUnreachable(live.cut_detail)
    return SessionEnded(f"the relay ended the session ({live.cut_reason.value}): {live.cut_detail}")


async def _pump_in(requests, queue, count) -> None:
    """One side's requests onto the session's queue for the other side: data (counted by `count`), then
    CLOSE_WRITE when the side half-closes (a close_write message, or the end of its stream)."""
    async for message in requests:
        kind = message.WhichOneof("kind")
        if kind == "data":
            if len(message.data) > CHUNK_BYTES:  # bounds what a session holds in its queues (8 per direction)
                raise InvalidArgument("data", f"carries at most {CHUNK_BYTES} bytes per message")
            count(len(message.data))
            await queue.put(message.data)
        elif kind == "close_write":
            break
        else:
            raise InvalidArgument("start", "is only the first message of a tunnel")
    await queue.put(CLOSE_WRITE)


async def _pump_out(live: Live, queue, context, response, side: EndReason) -> None:
    """The session's queue out to one side's stream as `response` messages; CLOSE_WRITE closes `side`."""
    while True:
        item = await queue.get()
        if item is CLOSE_WRITE:
            await context.write(response(close_write=True))
            live.closed(side)
            return
        await context.write(response(data=item))


async def connector_side(live: Live, requests, context) -> None:
    """After the connector answered the dial with `connected`: pump until the session is over."""
    await _until_over(live, asyncio.create_task(_pump_in(requests, live.to_engineer, live.count_down)),
                      asyncio.create_task(_pump_out(live, live.to_connector, context, relay_pb2.AcceptTunnelResponse,
                                                    EndReason.CLIENT_CLOSED)))
