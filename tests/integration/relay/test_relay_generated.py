"""Generated streams for the relay's three methods (hypothesis): first messages of every kind with arbitrary
fields, then arbitrary follow-ups, with and without a token, and bytes that are not the message at all. The
relay answers each with a status that names the problem: never INTERNAL or UNKNOWN, and it keeps serving.
The relay's own answers are read from its request counter (the interceptor counts every call's code): a client
that writes after the relay has answered sees a local "Internal error from Core", which is not the relay's."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remotesupport.connections.v1 import relay_pb2 as rp
from services.kit import metrics

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUITE_SERVICES = ("authz", "connections", "relay")
BAD = ("INTERNAL", "UNKNOWN")
METHODS = {"AttachConnector": rp.AttachConnectorRequest, "OpenTunnel": rp.OpenTunnelRequest,
           "AcceptTunnel": rp.AcceptTunnelRequest}

text = st.one_of(st.text(max_size=80), st.sampled_from(["customers/1/systems/2/connections/abc",
                                                          "customers/1/incidents/x", "", "\n", "a" * 400]))
hello = st.builds(rp.ConnectorHello, connector_file=st.binary(max_size=300), instance_id=text)
tunnel_start = st.builds(rp.OpenTunnelStart, connection=text, incident=text)
accept_start = st.builds(rp.AcceptTunnelStart, session=text, dial_key=text, connected=st.booleans(), problem=text)
first = {
    "AttachConnector": st.builds(lambda h: rp.AttachConnectorRequest(hello=h), hello),
    "OpenTunnel": st.one_of(st.builds(lambda s: rp.OpenTunnelRequest(start=s), tunnel_start),
                            st.builds(lambda d: rp.OpenTunnelRequest(data=d), st.binary(max_size=50)),
                            st.just(rp.OpenTunnelRequest(close_write=True)), st.just(rp.OpenTunnelRequest())),
    "AcceptTunnel": st.one_of(st.builds(lambda s: rp.AcceptTunnelRequest(start=s), accept_start),
                              st.builds(lambda d: rp.AcceptTunnelRequest(data=d), st.binary(max_size=50)),
                              st.just(rp.AcceptTunnelRequest())),
}


async def _answer(channel, method: str, messages: list, token: str | None, raw: bytes | None = None
                  ) -> grpc.StatusCode:
    request_type = METHODS[method]
    serializer = (lambda b: b) if raw is not None else request_type.SerializeToString
    call = channel.stream_stream(f"/remotesupport.connections.v1.RelayService/{method}",
                                 request_serializer=serializer,
                                 response_deserializer=lambda b: b)(
        metadata=(("authorization", f"Bearer {token}"),) if token else (), timeout=5)
    try:
        for message in ([raw] if raw is not None else messages):
            if call.done():  # the relay answered already: a write now would fail on this side, not the relay's
                break
            await call.write(message)
        if not call.done():
            await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass
    except (grpc.RpcError, asyncio.InvalidStateError):
        pass
    return await call.code()


def _served(method: str) -> dict[str, float]:
    """The relay's answers to `method` so far, by code."""
    path = f"/remotesupport.connections.v1.RelayService/{method}"
    out: dict[str, float] = {}
    for family in metrics.REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("method") == path:
                out[sample.labels["code"]] = out.get(sample.labels["code"], 0) + sample.value
    return out


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_generated_streams_are_answered_without_internal_errors(world, method):
    seen: list[grpc.StatusCode] = []
    before = _served(method)
    loop = asyncio.get_running_loop()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(head=first[method], rest=st.lists(first[method], max_size=2), with_token=st.booleans(),
           raw=st.one_of(st.none(), st.binary(max_size=40)))
    def case(head, rest, with_token, raw):
        token = world.tokens["engineer"] if with_token else None
        future = asyncio.run_coroutine_threadsafe(
            _answer(world.relay_channel, method, [head, *rest], token, raw), loop)
        seen.append(future.result(30))

    await asyncio.to_thread(case)
    after = _served(method)
    answered = {code: after.get(code, 0) - before.get(code, 0) for code in after}
    assert sum(answered.values()) >= 60, answered
    assert not [code for code in BAD if answered.get(code)], answered
    line = await world.new_line()  # still serving
    await world.attached(line)
    assert (await world.tunnel(line).open()).session
